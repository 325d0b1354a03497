#!/usr/bin/env python3
"""Runs minidl's ONNX exports in onnxruntime and compares them with minidl's own logits.

For each model (default: resnet18, resnet50, alexnet) it trains a few steps on CIFAR-10 (so that
the BatchNorm running statistics and weights are not at their initial values), evaluates the
checkpoint with `train --evaluate --dump-logits` on the first --test-images test images, exports it
with `export`, runs the ONNX file in onnxruntime (CPU) on the same images normalised with the
checkpoint's constants (read from the ONNX metadata), and prints the max abs difference of the
logits, the max relative to the largest |logit|, and the top-1 agreement.

Outside CI: needs PyPI onnxruntime and numpy (pip install onnxruntime numpy).
Usage: scripts/onnx_check.py [--build build] [--data DIR] [--models resnet18,resnet50,alexnet]
                             [--steps 10] [--test-images 1000] [--work /tmp/minidl-onnx-check]
"""
import argparse, json, os, struct, subprocess, sys, time

import numpy as np
import onnxruntime as ort


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    types = {"F32": np.float32, "I32": np.int32, "I64": np.int64, "F64": np.float64}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        a, b = h["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype=types[h["dtype"]]).reshape(h["shape"])
    return out


def cifar_test_images(data_dir, n):
    raw = np.fromfile(os.path.join(data_dir, "test_batch.bin"), dtype=np.uint8).reshape(-1, 3073)
    return raw[:n, 1:].reshape(n, 3, 32, 32), raw[:n, 0].astype(np.int64)


def run(cmd):
    t = time.time()
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stdout[-3000:]}")
    return time.time() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--data", default="../shared/data/cifar-10-batches-bin")
    ap.add_argument("--models", default="resnet18,resnet50,alexnet")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--test-images", type=int, default=1000)
    ap.add_argument("--work", default="/tmp/minidl-onnx-check")
    a = ap.parse_args()
    images, labels = cifar_test_images(a.data, a.test_images)
    rows = []
    for model in a.models.split(","):
        w = os.path.join(a.work, model)
        os.makedirs(w, exist_ok=True)
        run([f"{a.build}/train", "--model", model, "--data", a.data, "--subset", "2048",
             "--batch-size", "32", "--epochs", "1", "--max-steps", str(a.steps), "--device", "cpu",
             "--lr", "0.01", "--out", os.path.join(w, "run"), "--overwrite"])
        ckpt = os.path.join(w, "run", "last.safetensors")
        logits_path = os.path.join(w, "logits.safetensors")
        run([f"{a.build}/train", "--evaluate", "--checkpoint", ckpt, "--data", a.data,
             "--test-subset", str(a.test_images), "--dump-logits", logits_path, "--device", "cpu",
             "--out", os.path.join(w, "eval"), "--overwrite"])
        onnx_path = os.path.join(w, "model.onnx")
        run([f"{a.build}/export", "--checkpoint", ckpt, "--out", onnx_path])
        ref = read_safetensors(logits_path)["logits"].astype(np.float64)

        sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
        meta = sess.get_modelmeta().custom_metadata_map
        mean = np.array(json.loads(meta["norm_mean"]), dtype=np.float32).reshape(1, 3, 1, 1)
        std = np.array(json.loads(meta["norm_std"]), dtype=np.float32).reshape(1, 3, 1, 1)
        # As minidl's augment pass: (v / 255 - mean) / std in float32.
        x = ((images.astype(np.float32) / np.float32(255)) - mean) / std
        got = np.concatenate([sess.run(["logits"], {"input": x[i:i + 250]})[0]
                              for i in range(0, len(x), 250)]).astype(np.float64)
        diff = np.abs(got - ref)
        agree = float(np.mean(got.argmax(1) == ref.argmax(1)) * 100)
        rows.append((model, len(x), diff.max(), diff.max() / np.abs(ref).max(), agree,
                     float(np.mean(ref.argmax(1) == labels) * 100)))
    print(f"onnxruntime {ort.__version__}, {a.test_images} CIFAR-10 test images, checkpoints after "
          f"{a.steps} SGD steps")
    print(f"{'model':<10} {'images':>6} {'max |diff|':>11} {'rel. to max|logit|':>19} "
          f"{'top-1 agreement':>16} {'minidl acc':>10}")
    for m, n, d, r, ag, acc in rows:
        print(f"{m:<10} {n:>6} {d:>11.3g} {r:>19.3g} {ag:>15.2f}% {acc:>9.2f}%")
    bad = [m for m, n, d, r, ag, acc in rows if r > 1e-4 or ag < 99.0]
    if bad:
        sys.exit(f"mismatch: {', '.join(bad)}")


if __name__ == "__main__":
    main()
