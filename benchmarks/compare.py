#!/usr/bin/env python3
"""Side-by-side tables from minidl's and PyTorch's benchmark outputs.

Every ratio is a TIME ratio, "minidl / reference": below 1 minidl is faster, above 1 it is slower.

  compare.py kernels KERNELS.csv        bench_kernels: each op and shape with the median of every
                                        backend and its ratio to the op's vendor backend (vs_ref:
                                        cuda-vendor, else cuda-cublas; cpu-fast on the CPU); then
                                        per op the geometric mean of the ratios
  compare.py ops-cpu TORCH_OPS.csv      pytorch_ops_cpu.py output: minidl/torch per op (geomean)
  compare.py train FILE...              RESULT lines of bench_train and pytorch_reference.py
                                        --throughput (logs or their CSVs): images/s, step-time
                                        ratio minidl/torch, peak memory, per model and device
  compare.py metrics MINIDL.csv TORCH.csv
                                        two metrics.csv files (minidl train --out DIR and
                                        pytorch_reference.py --train --out DIR): per-epoch test
                                        accuracy side by side, best accuracy, time per epoch
  compare.py run-train --build DIR [--model M] [--device D] [--batch-size N] [--kernels a,b]
                      [--cpu-kernels a,b] [--precisions fp32,bf16] [--repeats R]
                                        runs bench_train (each kernel path: --kernels on a GPU,
                                        --cpu-kernels on the CPU) and pytorch_reference.py
                                        --throughput with the same settings, R interleaved rounds,
                                        saves the logs (--logs DIR) and prints the train table
                                        (medians over the rounds)

--markdown prints the tables as Markdown (for docs/BENCHMARKS.md).
"""
import argparse
import csv
import math
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def geomean(xs):
    xs = [x for x in xs if x and x > 0 and math.isfinite(x)]
    return math.exp(sum(map(math.log, xs)) / len(xs)) if xs else float("nan")


def num(s):
    try:
        return float(s)
    except (TypeError, ValueError):
        return float("nan")


def fmt(v, spec=".3g"):
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def table(headers, rows, markdown):
    rows = [[str(c) for c in r] for r in rows]
    if markdown:
        out = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
        out += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(out)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    numeric = lambda c: c == "-" or c.replace(".", "", 1).replace("e-", "", 1).lstrip("-").isdigit()
    line = lambda r: "  ".join(c.rjust(w) if numeric(c) else c.ljust(w) for c, w in zip(r, widths))
    return "\n".join([line(headers)] + [line(r) for r in rows])


# ---------------------------------------------------------------- kernels

def backend_of(r, default=""):
    """The row's backend (kernels/backend.h); CSVs from before the op table have `path` instead
    (handwritten, cublas, cudnn; onednn on the CPU)."""
    return r.get("backend") or r.get("path") or default


def cmd_kernels(args):
    with open(args.csv, newline="") as f:
        rows = list(csv.DictReader(f))
    ceilings = [r for r in rows if r["op"].startswith("ceiling_")]
    rows = [r for r in rows if not r["op"].startswith("ceiling_")]
    for c in ceilings:
        rate = f"{num(c['gflops']):.0f} GFLOP/s" if c["gflops"] else f"{num(c['gbps']):.0f} GB/s"
        print(f"{'- ' if args.markdown else ''}{c['op']}: {rate} ({c['shape']}, median {c['median_ms']} ms)")
    if ceilings and args.markdown:
        print()
    paths = []  # the backends, in order of appearance
    for r in rows:
        if backend_of(r) not in paths:
            paths.append(backend_of(r))
    by_case = {}
    for r in rows:
        by_case.setdefault((r["op"], r["shape"]), {})[backend_of(r)] = r
    headers = ["op", "shape"] + [f"{p} ms" for p in paths] + [f"{p}/ref" for p in paths] + ["check"]
    out, ratios = [], {}
    for (op, shape), byp in by_case.items():
        ms = [num(byp[p]["median_ms"]) if p in byp else float("nan") for p in paths]
        vs = [num(byp[p]["vs_ref"]) if p in byp else float("nan") for p in paths]
        for p, v in zip(paths, vs):
            ratios.setdefault((op, p), []).append(v)
        checks = ",".join(sorted({byp[p]["check"] or "-" for p in byp}))
        out.append([op, shape] + [fmt(v, ".4g") for v in ms] + [fmt(v, ".2f") for v in vs] + [checks])
    print(table(headers, out, args.markdown))
    print()
    summary = []
    for op in dict.fromkeys(op for op, _ in by_case):
        summary.append([op, str(sum(1 for o, _ in by_case if o == op))] +
                       [fmt(geomean(ratios.get((op, p), [])), ".2f") for p in paths])
    print(table(["op", "shapes"] + [f"geomean {p}/ref" for p in paths], summary, args.markdown))


# ---------------------------------------------------------------- ops-cpu

def cmd_ops_cpu(args):
    with open(args.csv, newline="") as f:
        rows = list(csv.DictReader(f))
    ops = {}
    for r in rows:
        ops.setdefault((r["op"], backend_of(r, "cpu")), []).append(r)
    out = []
    for (op, path), rs in ops.items():
        m = sum(num(r["minidl_ms"]) for r in rs)
        t = sum(num(r["torch_ms"]) for r in rs)
        rat = [num(r["minidl_over_torch"]) for r in rs]
        out.append([op, path, len(rs), fmt(m, ".4g"), fmt(t, ".4g"), fmt(geomean(rat), ".2f"),
                    fmt(min(rat), ".2f"), fmt(max(rat), ".2f")])
    print(table(["op", "minidl backend", "shapes", "minidl ms (sum)", "torch ms (sum)", "minidl/torch geomean",
                 "best", "worst"], out, args.markdown))


# ---------------------------------------------------------------- train

def parse_results(paths):
    """RESULT key=value lines from logs, or rows of bench_train/pytorch_reference CSVs."""
    results = []
    for p in paths:
        with open(p, newline="") as f:
            text = f.read()
        if text.startswith("framework,"):
            for r in csv.DictReader(text.splitlines()):
                r["batch"] = r.get("batch")
                results.append(r)
            continue
        for line in text.splitlines():
            if line.startswith("RESULT "):
                results.append(dict(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv))
    return [r for r in results if r.get("mode", "throughput") == "throughput"]


def median(xs):
    xs = sorted(x for x in xs if math.isfinite(x))
    if not xs:
        return float("nan")
    m = len(xs) // 2
    return xs[m] if len(xs) % 2 else 0.5 * (xs[m - 1] + xs[m])


def cmd_train(args):
    """One row per (model, device, batch, data, minidl kernels). Repeated runs of the same setting
    (run-train --repeats) are summarised by the median of their median step times, for minidl and
    PyTorch alike; `runs` says how many there were."""
    results = parse_results(args.files)
    if not results:
        sys.exit("compare.py train: no RESULT lines found")
    groups = {}
    for r in results:
        # precision (--precision; fp32 in logs from before it existed): minidl bf16 is compared with
        # torch under autocast to bf16, never with another precision; "-cl" marks a channels-last
        # run (--channels-last, channels_last=1), compared with channels-last runs only.
        precision = r.get("precision", "fp32") + ("-cl" if r.get("channels_last") == "1" else "")
        groups.setdefault((r["model"], r["device"], r["batch"], r.get("data", "synthetic"),
                           precision), []).append(r)
    out = []
    for (model, device, batch, data, precision), rs in groups.items():
        torch_r = [r for r in rs if r["framework"] == "pytorch"]
        t = median([num(r["median_step_ms"]) for r in torch_r])
        t_rss = median([num(r.get("peak_rss_mib")) for r in torch_r])
        t_mem = median([num(r.get("peak_mem_mib")) for r in torch_r])
        by_kernels = {}
        for r in rs:
            if r["framework"] == "minidl":
                k = r["kernels"] + (" +tf32" if r.get("tf32") == "1" else "")
                by_kernels.setdefault(k, []).append(r)
        for k, mr in by_kernels.items():
            m = median([num(r["median_step_ms"]) for r in mr])
            out.append([model, device, batch, data, precision, k, f"{len(mr)}/{len(torch_r)}",
                        fmt(float(batch) / (m * 1e-3), ".1f"),
                        fmt(float(batch) / (t * 1e-3), ".1f") if torch_r else "-",
                        fmt(m / t, ".2f"), fmt(m, ".4g"), fmt(t, ".4g"),
                        fmt(median([num(r.get("peak_mem_mib")) for r in mr]), ".0f"), fmt(t_mem, ".0f"),
                        fmt(median([num(r.get("peak_rss_mib")) for r in mr]), ".0f"), fmt(t_rss, ".0f")])
        if not by_kernels:
            out.append([model, device, batch, data, precision, "-", f"0/{len(torch_r)}", "-",
                        fmt(float(batch) / (t * 1e-3), ".1f"), "-", "-", fmt(t, ".4g"), "-",
                        fmt(t_mem, ".0f"), "-", fmt(t_rss, ".0f")])
    print(table(["model", "device", "batch", "data", "precision", "minidl kernels", "runs minidl/torch",
                 "minidl img/s",
                 "torch img/s", "minidl/torch time", "minidl step ms", "torch step ms",
                 "minidl peak tensor MiB", "torch peak tensor MiB", "minidl peak RSS MiB",
                 "torch peak RSS MiB"], out, args.markdown))


# ---------------------------------------------------------------- metrics

def cmd_metrics(args):
    def read(p):
        with open(p, newline="") as f:
            return {int(r["epoch"]): r for r in csv.DictReader(f)}
    a, b = read(args.minidl), read(args.torch)
    out = []
    for e in sorted(set(a) | set(b)):
        ra, rb = a.get(e), b.get(e)
        out.append([e, fmt(num(ra["test_acc"]), ".2f") if ra else "-", fmt(num(rb["test_acc"]), ".2f") if rb else "-",
                    fmt(num(ra["train_loss"]), ".4f") if ra else "-", fmt(num(rb["train_loss"]), ".4f") if rb else "-",
                    fmt(num(ra["epoch_seconds"]), ".1f") if ra else "-", fmt(num(rb["epoch_seconds"]), ".1f") if rb else "-"])
    print(table(["epoch", "minidl test acc %", "torch test acc %", "minidl train loss", "torch train loss",
                 "minidl epoch s", "torch epoch s"], out, args.markdown))
    best = lambda d: max((num(r["test_acc"]), e) for e, r in d.items()) if d else (float("nan"), -1)
    (ba, ea), (bb, eb) = best(a), best(b)
    print(f"\nbest test accuracy: minidl {ba:.2f}% (epoch {ea}), torch {bb:.2f}% (epoch {eb})")


# ---------------------------------------------------------------- run-train

def cmd_run_train(args):
    """bench_train for each kernel path and pytorch_reference.py --throughput, `--repeats` rounds,
    interleaved (every path once per round) so that a load change on a shared machine hits all of
    them alike; the table takes medians over the rounds."""
    os.makedirs(args.logs, exist_ok=True)
    common = ["--model", args.model, "--device", args.device, "--batch-size", str(args.batch_size),
              "--steps", str(args.steps), "--warmup-steps", str(args.warmup_steps)]
    if args.threads:
        common += ["--threads", str(args.threads)]
    logs = []

    def run(cmd, log):
        print("$ " + " ".join(cmd), flush=True)
        with open(log, "w") as f:
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            f.write(p.stdout)
        tail = [l for l in p.stdout.splitlines() if l.startswith(("RESULT", "step ms", "throughput"))]
        print("\n".join(tail) if p.returncode == 0 else p.stdout[-3000:], flush=True)
        logs.append(log)

    cpu = args.device == "cpu"
    paths = args.cpu_kernels.split(",") if cpu else args.kernels.split(",")
    flag = "--cpu-kernels" if cpu else "--kernels"
    dev = args.device.replace(":", "")
    for rep in range(args.repeats):
        for prec in args.precisions.split(","):
            pc = ["--precision", prec]
            for k in paths:
                run([os.path.join(args.build, "bench_train"), *common, *pc, flag, k],
                    os.path.join(args.logs,
                                 f"minidl-{args.model}-b{args.batch_size}-{dev}-{k}-{prec}-{rep}.log"))
            run([sys.executable, os.path.join(HERE, "pytorch_reference.py"), "--throughput", *common, *pc],
                os.path.join(args.logs, f"torch-{args.model}-b{args.batch_size}-{dev}-{prec}-{rep}.log"))
    args.files = logs
    print()
    cmd_train(args)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--markdown", action="store_true", help="print Markdown tables")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("kernels", parents=[common])
    p.add_argument("csv")
    p = sub.add_parser("ops-cpu", parents=[common])
    p.add_argument("csv")
    p = sub.add_parser("train", parents=[common])
    p.add_argument("files", nargs="+")
    p = sub.add_parser("metrics", parents=[common])
    p.add_argument("minidl")
    p.add_argument("torch")
    p = sub.add_parser("run-train", parents=[common])
    p.add_argument("--build", required=True, help="build directory holding bench_train")
    p.add_argument("--model", default="resnet18")
    p.add_argument("--device", default="cuda")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup-steps", type=int, default=5)
    p.add_argument("--kernels", default="cudnn,handwritten", help="minidl kernel paths (GPU)")
    p.add_argument("--cpu-kernels", default="onednn,handwritten", help="minidl kernel paths (CPU)")
    p.add_argument("--repeats", type=int, default=1, help="interleaved rounds; medians over them")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--precisions", default="fp32",
                   help="comma-separated --precision values, each for minidl and torch (autocast)")
    p.add_argument("--logs", default="out/bench-logs")
    args = ap.parse_args()
    {"kernels": cmd_kernels, "ops-cpu": cmd_ops_cpu, "train": cmd_train, "metrics": cmd_metrics,
     "run-train": cmd_run_train}[args.cmd](args)


if __name__ == "__main__":
    main()
