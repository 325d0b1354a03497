#!/usr/bin/env python3
"""Times PyTorch's CPU ops at the shapes of a bench_kernels CPU run, for minidl/torch ratios.

Reads the CSV written by `bench_kernels --device cpu --csv PATH` and, for every row, times the ATen
op that PyTorch's autograd runs for the same computation, the same way bench_kernels times minidl:
warm-up (at least 3 runs and 50 ms), then repeats (as many as fit in 1 s, 5 to 50, or --repeats),
each preceded by a write of twice the last-level cache so no repeat finds its inputs cached; fresh
uniform random inputs; median, min, p10, p90. Prints a table and writes a CSV with the ratio
minidl median / torch median (above 1: minidl is slower).

  build/bench_kernels --device cpu --batch 8 --shapes resnet18 --csv /tmp/minidl_cpu.csv
  python3 benchmarks/pytorch_ops_cpu.py /tmp/minidl_cpu.csv --csv /tmp/torch_cpu.csv

Op by op (minidl op -> torch):
  conv2d_fwd           F.conv2d
  conv2d_bwd_data      aten.convolution_backward, output_mask (True, False, False)
  conv2d_bwd_weight    aten.convolution_backward, output_mask (False, True, False)
  linear_fwd / _bwd    F.linear / dx = dy w, dw = dy^T x, db = sum dy (what AddmmBackward runs)
  gemm                 torch.mm
  batchnorm_*          aten.native_batch_norm (training / eval), aten.native_batch_norm_backward
  relu_fwd / _bwd      torch.relu / aten.threshold_backward
  maxpool_*            aten.max_pool2d_with_indices / aten.max_pool2d_with_indices_backward
  avgpool_*            F.avg_pool2d / aten.avg_pool2d_backward
  global_avgpool_*     F.adaptive_avg_pool2d(x, 1) / aten._adaptive_avg_pool2d_backward
  dropout_fwd / _bwd   aten.native_dropout (p 0.5, train) / aten.native_dropout_backward
  softmax_xent_fwd     log_softmax + nll_loss (F.cross_entropy)
  softmax_xent_bwd     aten.nll_loss_backward + aten._log_softmax_backward_data
  sgd_update           torch.optim.SGD(momentum 0.9, weight_decay 5e-4).step() on one flat tensor
  adam_update          torch.optim.Adam(weight_decay 5e-4).step() on one flat tensor
  augment              crop + flip + normalise of a uint8 batch (pytorch_reference.augment_normalize)
  add                  a + b
"""
import argparse
import csv
import math
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pytorch_reference import augment_normalize  # noqa: E402

aten = torch.ops.aten


def llc_bytes():
    try:
        v = os.sysconf("SC_LEVEL3_CACHE_SIZE")
        if v > 0:
            return v
    except (ValueError, OSError):
        pass
    return 32 << 20


FLUSH = None


def flush():
    """Write twice the last-level cache (torch fills in parallel, evicting every core's caches)."""
    global FLUSH
    if FLUSH is None:
        FLUSH = torch.empty(2 * llc_bytes(), dtype=torch.uint8)
        FLUSH.counter = 0
    FLUSH.counter = (FLUSH.counter + 1) % 256
    FLUSH.fill_(FLUSH.counter)


def time_op(run, repeats):
    warm, spent, last = 0, 0.0, 0.0
    while warm < 3 or (spent < 50.0 and warm < 50):
        flush()
        a = time.perf_counter()
        run()
        last = (time.perf_counter() - a) * 1e3
        spent += last
        warm += 1
    reps = repeats or min(max(int(1000.0 / max(last, 1e-3)), 5), 50)
    ms = []
    for _ in range(reps):
        flush()
        a = time.perf_counter()
        run()
        ms.append((time.perf_counter() - a) * 1e3)
    ms.sort()
    q = statistics.quantiles(ms, n=10, method="inclusive") if len(ms) > 1 else ms * 9
    return {"median": statistics.median(ms), "min": ms[0], "p10": q[0], "p90": q[-1], "count": reps}


def rand(*shape, lo=-1.0, hi=1.0):
    return torch.rand(*shape) * (hi - lo) + lo


def make(op, p):
    """A zero-argument function running the torch equivalent of `op` with parameters `p`."""
    g = p.get
    if op.startswith("conv2d"):
        N, C, H, W, K, R, s, pad = g("N"), g("C"), g("H"), g("W"), g("K"), g("R"), g("stride"), g("pad")
        P, Q = (H + 2 * pad - R) // s + 1, (W + 2 * pad - R) // s + 1
        x, w = rand(N, C, H, W), rand(K, C, R, R)
        b = rand(K) if g("bias") else None
        if op == "conv2d_fwd":
            return lambda: F.conv2d(x, w, b, s, pad)
        dy = rand(N, K, P, Q)
        mask = [True, False, False] if op == "conv2d_bwd_data" else [False, True, False]
        return lambda: aten.convolution_backward(dy, x, w, None, [s, s], [pad, pad], [1, 1], False,
                                                 [0, 0], 1, mask)
    if op.startswith("linear"):
        N, i, o = g("N"), g("in"), g("out")
        x, w, b, dy = rand(N, i), rand(o, i), rand(o), rand(N, o)
        if op == "linear_fwd":
            return lambda: F.linear(x, w, b)
        return lambda: (dy.mm(w), dy.t().mm(x), dy.sum(0))
    if op == "gemm":
        a, b = rand(g("M"), g("K")), rand(g("K"), g("N"))
        return lambda: torch.mm(a, b)
    if op.startswith("batchnorm"):
        N, C, H, W = g("N"), g("C"), g("H"), g("W")
        x, gamma, beta = rand(N, C, H, W), rand(C, lo=0.5, hi=1.5), rand(C)
        rm, rv = rand(C, lo=-0.5, hi=0.5), rand(C, lo=0.5, hi=1.5)
        if op == "batchnorm_train_fwd":
            return lambda: aten.native_batch_norm(x, gamma, beta, rm, rv, True, 0.1, 1e-5)
        if op == "batchnorm_eval_fwd":
            return lambda: aten.native_batch_norm(x, gamma, beta, rm, rv, False, 0.1, 1e-5)
        _, sm, si = aten.native_batch_norm(x, gamma, beta, rm, rv, True, 0.1, 1e-5)
        dy = rand(N, C, H, W)
        return lambda: aten.native_batch_norm_backward(dy, x, gamma, rm, rv, sm, si, True, 1e-5,
                                                       [True, True, True])
    if op.startswith("relu"):
        x = rand(g("N"), g("C"), g("H"), g("W"))
        if op == "relu_fwd":
            return lambda: torch.relu(x)
        y, dy = torch.relu(x), rand(*x.shape)
        return lambda: aten.threshold_backward(dy, y, 0)
    if op.startswith("maxpool") or op.startswith("avgpool"):
        N, C, H, W, k, s, pad = g("N"), g("C"), g("H"), g("W"), g("k"), g("s"), g("p")
        x = rand(N, C, H, W)
        if op == "maxpool_fwd":
            return lambda: aten.max_pool2d_with_indices(x, [k, k], [s, s], [pad, pad])
        if op == "avgpool_fwd":
            return lambda: F.avg_pool2d(x, k, s, pad)
        y, idx = aten.max_pool2d_with_indices(x, [k, k], [s, s], [pad, pad])
        dy = rand(*y.shape)
        if op == "maxpool_bwd":
            return lambda: aten.max_pool2d_with_indices_backward(dy, x, [k, k], [s, s], [pad, pad],
                                                                 [1, 1], False, idx)
        return lambda: aten.avg_pool2d_backward(dy, x, [k, k], [s, s], [pad, pad], False, True, None)
    if op.startswith("global_avgpool"):
        x = rand(g("N"), g("C"), g("H"), g("W"))
        if op == "global_avgpool_fwd":
            return lambda: F.adaptive_avg_pool2d(x, 1)
        dy = rand(g("N"), g("C"), 1, 1)
        return lambda: aten._adaptive_avg_pool2d_backward(dy, x)
    if op.startswith("dropout"):
        x = rand(g("N"), g("F"))
        if op == "dropout_fwd":
            return lambda: aten.native_dropout(x, 0.5, True)
        _, mask = aten.native_dropout(x, 0.5, True)
        dy = rand(*x.shape)
        return lambda: aten.native_dropout_backward(dy, mask, 2.0)
    if op.startswith("softmax_xent"):
        N, K = g("N"), g("K")
        z, t = rand(N, K, lo=-3.0, hi=3.0), torch.randint(0, K, (N,))
        if op == "softmax_xent_fwd":
            return lambda: F.nll_loss(F.log_softmax(z, 1), t)
        logp = F.log_softmax(z, 1)
        total = torch.tensor(float(N))
        gout = torch.tensor(1.0)
        return lambda: aten._log_softmax_backward_data(
            aten.nll_loss_backward(gout, logp, t, None, 1, -100, total), logp, 1, torch.float32)
    if op in ("sgd_update", "adam_update"):
        param = torch.nn.Parameter(rand(g("n")))
        param.grad = rand(g("n"))
        opt = (torch.optim.SGD([param], lr=0.1, momentum=0.9, weight_decay=5e-4) if op == "sgd_update"
               else torch.optim.Adam([param], lr=1e-3, weight_decay=5e-4))
        opt.step()  # creates the state (momentum buffer, moments), as after minidl's first step
        return opt.step
    if op == "augment":
        N = g("N")
        images = torch.randint(0, 256, (2 * N, 3, 32, 32), dtype=torch.uint8)
        idx = torch.randint(0, 2 * N, (N,))
        mean, std = torch.tensor([0.4914, 0.4822, 0.4465]), torch.tensor([0.2470, 0.2435, 0.2616])
        gen = torch.Generator().manual_seed(0)
        return lambda: augment_normalize(images[idx], mean, std, True, gen)
    if op == "add":
        a, b = rand(g("N"), g("C"), g("H"), g("W")), rand(g("N"), g("C"), g("H"), g("W"))
        return lambda: a + b
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("minidl_csv", help="CSV from bench_kernels --device cpu --csv")
    ap.add_argument("--csv", default="", help="write the comparison here")
    ap.add_argument("--repeats", type=int, default=0, help="timed repeats (default: fit 1 s, 5..50)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's default)")
    ap.add_argument("--ops", default="", help="only ops containing one of these comma-separated names")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    with open(args.minidl_csv, newline="") as f:
        rows = [r for r in csv.DictReader(f) if not r["op"].startswith("ceiling_")]
    if not rows:
        sys.exit(f"pytorch_ops_cpu: {args.minidl_csv} holds no op rows")
    if any(r["device"] != "cpu" for r in rows):
        sys.exit(f"pytorch_ops_cpu: {args.minidl_csv} is not from a CPU run (--device cpu)")
    filters = [s for s in args.ops.split(",") if s]
    if filters:
        rows = [r for r in rows if any(s in r["op"] for s in filters)]

    print(f"# pytorch_ops_cpu: torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.2f}, against {args.minidl_csv}")
    print(f"# date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}   command: {' '.join(sys.argv)}")
    fmt = "{:<36} {:<30} {:>10} {:>10} {:>10} {:>10} {:>12}"
    print(fmt.format("op", "shape", "minidl_ms", "torch_ms", "torch_p10", "torch_p90", "minidl/torch"))
    out, by_op, timed = [], {}, {}
    for r in rows:
        params = {k: int(v) for k, v in (kv.split("=") for kv in r["params"].split(";") if kv)}
        run = make(r["op"], params)
        if run is None or not r["median_ms"]:
            continue
        # A shape that minidl ran on several CPU backends (cpu-reference and cpu-fast for the
        # convolutions) is timed in torch once and compared with each backend.
        key = (r["op"], r["params"])
        if key not in timed:
            timed[key] = time_op(run, args.repeats)
        t = timed[key]
        # `backend` since the op table (kernels/backend.h); older CSVs have `path` (onednn,
        # handwritten).
        backend = r.get("backend") or r.get("path") or "cpu"
        m = float(r["median_ms"])
        ratio = m / t["median"]
        by_op.setdefault((r["op"], backend), []).append(ratio)
        print(fmt.format(r["op"] + " " + backend, r["shape"], f"{m:.4g}", f"{t['median']:.4g}", f"{t['p10']:.4g}",
                         f"{t['p90']:.4g}", f"{ratio:.2f}"))
        sys.stdout.flush()
        out.append({"op": r["op"], "backend": backend, "shape": r["shape"], "params": r["params"], "models": r["models"],
                    "minidl_ms": f"{m:.6g}", "torch_ms": f"{t['median']:.6g}", "torch_min_ms": f"{t['min']:.6g}",
                    "torch_p10_ms": f"{t['p10']:.6g}", "torch_p90_ms": f"{t['p90']:.6g}",
                    "torch_repeats": t["count"], "minidl_over_torch": f"{ratio:.4g}"})
    print("\n# per op: geometric mean of minidl/torch over the shapes (above 1: minidl slower)")
    for (op, backend), rs in by_op.items():
        print(f"{op:<20} {backend:<16} {len(rs):>3} shapes  {math.exp(sum(map(math.log, rs)) / len(rs)):.2f}")
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(out[0].keys()))
            w.writeheader()
            w.writerows(out)


if __name__ == "__main__":
    main()
