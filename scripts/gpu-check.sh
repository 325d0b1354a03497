#!/usr/bin/env bash
# The whole GPU verification in one call on the device machine (see docs/GPU.md):
#   1. unpack CIFAR-10 from the carried JPEG archive,
#   2. configure and build Release for sm_90 against the carried Debian headers (.gpu/prefix),
#   3. run the whole test suite, CUDA tests included,
#   4. compute-sanitizer memcheck and racecheck on a short subset of the CUDA tests,
#   5. train ResNet-18 for one epoch on real CIFAR-10,
#   6. print a summary table (and copy logs to $OUT when set).
# Usage on the device machine, from the repository root:  bash scripts/gpu-check.sh
# Prepare here first:  ../shared/tools/pack-for-device.sh catch2 libfmt-dev libfmt9 libcli11-dev \
#                      nlohmann-json3-dev libstb-dev libopenblas-dev libopenblas0-pthread libopenblas-pthread-dev libopenblas-openmp-dev libopenblas0-openmp
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/minidl-gpu-check}
mkdir -p "$OUT"
LOG="$OUT/gpu-check.log"
: > "$LOG"
PREFIX=$PWD/.gpu/prefix
export CMAKE_PREFIX_PATH="$PREFIX:$PREFIX/lib/x86_64-linux-gnu/cmake:${CMAKE_PREFIX_PATH:-}"
export LD_LIBRARY_PATH="$PREFIX/lib/x86_64-linux-gnu:$PREFIX/lib/x86_64-linux-gnu/openblas-pthread:${LD_LIBRARY_PATH:-}"
export CPATH="$PREFIX/include:$PREFIX/include/x86_64-linux-gnu:${CPATH:-}"
export LIBRARY_PATH="$PREFIX/lib/x86_64-linux-gnu:${LIBRARY_PATH:-}"
export PATH="/usr/local/cuda/bin:$PATH"
declare -A result
step() {  # step NAME COMMAND...: runs, logs, records pass/fail and seconds
  local name=$1; shift
  local t0=$(date +%s)
  echo "=== $name: $*" | tee -a "$LOG"
  if "$@" >>"$LOG" 2>&1; then result[$name]="ok ($(( $(date +%s) - t0 )) s)"
  else result[$name]="FAILED (rc $?, $(( $(date +%s) - t0 )) s; see $LOG)"; fi
  tail -n 5 "$LOG"
}

{
  echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1
  nvcc --version | tail -1
} | tee -a "$LOG"

CIFAR=/tmp/cifar/cifar-10-batches-bin
[ -f "$CIFAR/test_batch.bin" ] || step data python3 .gpu/data/cifar10_from_jpeg.py .gpu/data/cifar10-jpeg.tar.gz "$CIFAR"
export MINIDL_CIFAR10_DIR=$CIFAR

CUDNN_ARGS=()
if ! ls /usr/local/cuda/include/cudnn.h >/dev/null 2>&1; then
  CUDNN_DIR=$(python3 -c 'import nvidia.cudnn, os; print(os.path.dirname(nvidia.cudnn.__file__))' 2>/dev/null)
  [ -n "$CUDNN_DIR" ] && CUDNN_ARGS=(-DCUDNN_ROOT="$CUDNN_DIR")
fi
step configure cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DMINIDL_CUDA=ON \
  -DMINIDL_CUDA_ARCH=90 "${CUDNN_ARGS[@]}"
step build cmake --build build-gpu -j 16
step tests ctest --test-dir build-gpu --output-on-failure -j 8 --timeout 600
grep -E "tests passed|tests failed|Skipped" "$LOG" | tail -3

# Sanitizers on a short subset: one test per op family, small shapes.
SUBSET='[sanitize]'
step memcheck compute-sanitizer --tool memcheck --error-exitcode 1 build-gpu/tests/minidl_cuda_tests "$SUBSET"
step racecheck compute-sanitizer --tool racecheck --error-exitcode 1 build-gpu/tests/minidl_cuda_tests "$SUBSET"

step train-resnet18 build-gpu/train --model resnet18 --data "$CIFAR" --epochs 1 --batch-size 128 \
  --lr 0.1 --momentum 0.9 --wd 5e-4 --device cuda --out "$OUT/train-resnet18"

echo
echo "==== minidl gpu-check summary"
for k in data configure build tests memcheck racecheck train-resnet18; do
  [ -n "${result[$k]:-}" ] && printf '%-16s %s\n' "$k" "${result[$k]}"
done | tee -a "$LOG"
grep -E "^epoch|best test" "$LOG" | tail -3
for k in "${!result[@]}"; do [[ ${result[$k]} == ok* ]] || exit 1; done
