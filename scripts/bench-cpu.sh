#!/usr/bin/env bash
# The CPU benchmark against PyTorch on the same machine, in one call (issue 9's tables):
#   1. ops: bench_kernels at the ResNet-18 layer shapes (batch 8) on both CPU backends (the
#      convolutions on cpu-fast = oneDNN and cpu-reference, every other op on cpu-reference),
#      each checked against the float64 reference, then pytorch_ops_cpu.py timing PyTorch's ops
#      at the same shapes, and the per-op ratio table;
#   2. train: for each model and batch, bench_train on every CPU path and
#      pytorch_reference.py --throughput, ROUNDS interleaved rounds (medians over rounds, so a load
#      change from other users of a shared machine hits every path alike), and the step table with
#      peak tensor memory and peak resident set of both frameworks.
# Everything goes to $OUT (default out/bench-cpu): bench.log, the CSVs and logs, summary.md.
#
#   scripts/bench-cpu.sh                 # both stages, build in build/
#   scripts/bench-cpu.sh train           # only the step table
# BUILD (build), MODELS ("resnet20 resnet18 alexnet"), BATCHES ("32 128"), ROUNDS (3), STEPS (5),
# WARMUP (2), PRECISIONS (fp32; fp32,bf16 adds the autocast runs), CPU_PATHS (onednn,handwritten: bench_train's --cpu-kernels names, which
# bench_kernels also takes for cpu-fast,cpu-reference) shorten or change a run. PyTorch must be installed
# (pip install torch); nothing else here needs it.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
OUT=${OUT:-$root/out/bench-cpu}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/bench.log") 2>&1
stages=${*:-ops train}
build=${BUILD:-$root/build}
models=${MODELS:-resnet20 resnet18 alexnet}
batches=${BATCHES:-32 128}
rounds=${ROUNDS:-3}
steps=${STEPS:-5}
warmup=${WARMUP:-2}
paths=${CPU_PATHS:-onednn,handwritten}
precisions=${PRECISIONS:-fp32}  # e.g. fp32,bf16: each for minidl and for torch (torch.autocast)
say() { echo; echo "=== $(date -u '+%Y-%m-%d %H:%M:%S UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg): $*"; }

say "machine"
lscpu | grep -E 'Model name|^CPU\(s\)|Thread|L3' || true
echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo "${MINIDL_COMMIT:-unknown}")$(git diff --quiet 2>/dev/null || echo ' (+ uncommitted changes)')"
python3 -c 'import torch; print("torch", torch.__version__, "threads", torch.get_num_threads(), "capability", torch.backends.cpu.get_cpu_capability())' 2>/dev/null \
  || { echo "bench-cpu: PyTorch is not installed (pip install torch)"; exit 1; }

for stage in $stages; do
  case $stage in
    ops)
      say "ops: bench_kernels --device cpu (both CPU backends), then PyTorch at the same shapes"
      "$build/bench_kernels" --device cpu --batch 8 --shapes resnet18 --seed 1 --cpu-kernels "$paths" \
        --csv "$OUT/minidl_ops.csv"
      python3 benchmarks/pytorch_ops_cpu.py "$OUT/minidl_ops.csv" --csv "$OUT/torch_ops.csv"
      python3 benchmarks/compare.py ops-cpu --markdown "$OUT/torch_ops.csv" | tee "$OUT/ops.md"
      ;;
    train)
      for model in $models; do
        for batch in $batches; do
          say "train: $model batch $batch, $rounds interleaved rounds"
          python3 benchmarks/compare.py run-train --build "$build" --device cpu --model "$model" \
            --batch-size "$batch" --steps "$steps" --warmup-steps "$warmup" --cpu-kernels "$paths" \
            --precisions "$precisions" --repeats "$rounds" --logs "$OUT/logs" --markdown
        done
      done
      say "train: all models"
      python3 benchmarks/compare.py train --markdown "$OUT"/logs/*.log | tee "$OUT/train.md"
      ;;
    *) echo "bench-cpu: unknown stage '$stage' (expected ops, train)"; exit 2 ;;
  esac
done
{ echo "# CPU benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"; echo
  [ -f "$OUT/ops.md" ] && { echo "## ops"; echo; cat "$OUT/ops.md"; echo; }
  [ -f "$OUT/train.md" ] && { echo "## train"; echo; cat "$OUT/train.md"; }; } > "$OUT/summary.md"
say "done: $OUT/summary.md"
