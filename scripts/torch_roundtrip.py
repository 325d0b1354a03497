#!/usr/bin/env python3
"""Load a minidl checkpoint into torchvision's ResNet, and write a state_dict minidl loads back.

minidl's ResNet-18..152 use torchvision's parameter names, and its checkpoints store
BatchNorm's num_batches_tracked as int64, as torch does, so the model tensors of a checkpoint are a
state_dict that `load_state_dict(strict=True)` takes as it is (the "optimizer.*" entries are
minidl's flat optimizer buffers and are dropped). minidl's default stem for CIFAR is a 3x3
stride-1 convolution without max-pool; torchvision's is the ImageNet stem, so the script swaps it
unless the run used --imagenet-stem.

    pip install torch torchvision safetensors
    python3 scripts/torch_roundtrip.py runs/x/best.safetensors --out runs/x/from_torch.safetensors
    build/train --evaluate --checkpoint runs/x/from_torch.safetensors --out runs/x-torch-eval

The file written back holds torch's state_dict (metadata "format": "pt") plus the run's
configuration from the original checkpoint, so `train --evaluate` rebuilds the same model and
normalisation; a state_dict without that metadata loads too, with --model given on the command
line. Not run by CI (the C++ tests never need PyTorch).
"""
import argparse
import json
import sys

try:
    import torch
    import torchvision
    from safetensors.torch import load_file, save_file
    from safetensors import safe_open
except ImportError as e:
    sys.exit(f"torch_roundtrip: {e}; install with `pip install torch torchvision safetensors`")


def build(model: str, num_classes: int, imagenet_stem: bool) -> torch.nn.Module:
    m = getattr(torchvision.models, model)(num_classes=num_classes)
    if not imagenet_stem:  # minidl's CIFAR stem
        m.conv1 = torch.nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        m.maxpool = torch.nn.Identity()
    return m


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", help="a minidl checkpoint (.safetensors)")
    ap.add_argument("--out", required=True, help="where to write the state_dict for minidl")
    ap.add_argument("--model", help="resnet18/34/50/101/152 (default: the checkpoint's)")
    args = ap.parse_args()

    with safe_open(args.checkpoint, framework="pt") as f:
        meta = f.metadata() or {}
    run = json.loads(meta.get("config_json") or "{}")
    cfg = run.get("config", {})
    model_name = args.model or cfg.get("model") or meta.get("model_name")
    if model_name not in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152"):
        sys.exit(f"torch_roundtrip: model {model_name!r} has no torchvision twin "
                 "(resnet18/34/50/101/152 do); give --model")
    dataset_classes = 100 if cfg.get("dataset") == "cifar100" else 10
    num_classes = cfg.get("num-classes") or dataset_classes

    state = {k: v for k, v in load_file(args.checkpoint).items() if not k.startswith("optimizer.")}
    net = build(model_name, num_classes, bool(cfg.get("imagenet-stem", False)))
    net.load_state_dict(state, strict=True)  # every name, shape and dtype must match
    print(f"{args.checkpoint}: {len(state)} tensors loaded into torchvision.models.{model_name} "
          f"({sum(p.numel() for p in net.parameters()):,} parameters)")

    # A forward pass in eval mode, normalised as the run was, on one random image: just a check
    # that the model runs. (Evaluate the file with `train --evaluate` for real numbers.)
    net.eval()
    with torch.no_grad():
        logits = net(torch.rand(1, 3, 32, 32))
    print(f"forward of a random 32x32 image: logits {tuple(logits.shape)}")

    # Back: torch's own state_dict, as safetensors.torch writes it (num_batches_tracked in int64).
    sd = {k: v.contiguous() for k, v in net.state_dict().items()}
    out_meta = {"format": "pt"}
    if meta.get("config_json"):
        out_meta["config_json"] = meta["config_json"]  # model, data and normalisation for minidl
    save_file(sd, args.out, metadata=out_meta)
    print(f"wrote {args.out}: {len(sd)} tensors "
          f"(evaluate with: build/train --evaluate --checkpoint {args.out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
