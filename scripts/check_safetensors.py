#!/usr/bin/env python3
"""Open a minidl checkpoint (or any .safetensors file) with the reference `safetensors` package and
print its metadata and every tensor's name, dtype and shape.

This is the interoperability check for io/safetensors.cpp: if the reference reader accepts the file,
`safetensors.torch.load_file(path)` gives a state_dict that PyTorch can load (the model tensors
carry torch's state_dict names; the "optimizer.*" entries are minidl's flat optimizer buffers).

    pip install safetensors numpy
    python3 scripts/check_safetensors.py runs/resnet20/last.safetensors
"""
import argparse
import sys

try:
    import numpy as np
    from safetensors import safe_open
except ImportError as e:  # the C++ build and tests never need this script
    sys.exit(f"check_safetensors: {e}; install with `pip install safetensors numpy`")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path", help="a .safetensors file")
    ap.add_argument("--values", action="store_true", help="also print min/max/mean of each tensor")
    args = ap.parse_args()

    with safe_open(args.path, framework="numpy") as f:
        meta = f.metadata() or {}
        names = list(f.keys())
        print(f"{args.path}: {len(names)} tensors, {len(meta)} metadata entries")
        for k in sorted(meta):
            v = meta[k]
            print(f"  meta {k} = {v if len(v) <= 80 else v[:77] + '...'}")
        total = 0
        for name in names:
            t = f.get_tensor(name)
            total += t.nbytes
            line = f"  {name:<40} {str(t.dtype):<8} {tuple(t.shape)}"
            if args.values and t.size:
                x = t.astype(np.float64)
                line += f"  min {x.min():.6g} max {x.max():.6g} mean {x.mean():.6g}"
            print(line)
        print(f"  {total} bytes of tensor data")
    return 0


if __name__ == "__main__":
    sys.exit(main())
