#!/usr/bin/env bash
# The whole GPU benchmark in one call on the device machine (an H100; ~8 minutes):
#   1. build minidl Release for sm_90 (tests off: this call measures, scripts/test.sh tests);
#   2. bench_kernels: the ceilings (device-to-device copy bandwidth, cuBLAS SGEMM fp32 and TF32 at
#      8192^3), then every op on every CUDA backend of the op table (cuda-handwritten, cuda-cublas,
#      cuda-vendor; kernels/backend.h) at the ResNet-18, ResNet-50 and AlexNet layer shapes with
#      batch 128, each checked against the float64 CPU reference and then timed;
#   3. bench_train for resnet18, resnet50 and alexnet on the cudnn and handwritten paths, and
#      pytorch_reference.py --throughput for the same models and settings (batch 128, fp32);
#   4. the ratio tables (benchmarks/compare.py), also as Markdown for docs/BENCHMARKS.md.
# Everything goes to $OUT (default out/bench-gpu): bench.log (the whole console), kernels.csv,
# train.csv (minidl and PyTorch rows), summary.md (the tables).
#
# Before the call, on the development machine (the device machine reaches no package registry):
#   ../shared/tools/pack-for-device.sh catch2 libfmt-dev libfmt9 libcli11-dev nlohmann-json3-dev \
#       libstb-dev libopenblas-dev libopenblas0-pthread libopenblas-pthread-dev \
#       libopenblas-openmp-dev libopenblas0-openmp libgfortran5
# then run with carry [".gpu"]:   MINIDL_COMMIT=<git rev-parse --short HEAD> scripts/bench-gpu.sh
# (the copy of the tree on the device machine has no .git, so the commit is passed in).
#
# Stages can be picked: scripts/bench-gpu.sh build kernels train   (default: all three).
# BENCH_SHAPES (default all), BENCH_BATCH (128), TRAIN_STEPS (20), TRAIN_MODELS
# ("resnet18 resnet50 alexnet") and TRAIN_KERNELS ("cudnn handwritten") shorten a run.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
OUT=${OUT:-$root/out/bench-gpu}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/bench.log") 2>&1
stages=${*:-build kernels train}
build=$root/build-bench
shapes=${BENCH_SHAPES:-all}
batch=${BENCH_BATCH:-128}
steps=${TRAIN_STEPS:-20}
models=${TRAIN_MODELS:-resnet18 resnet50 alexnet}
kernel_paths=${TRAIN_KERNELS:-cudnn handwritten}
start=$(date +%s)
elapsed() { echo $(( $(date +%s) - start )); }
say() { echo; echo "=== [$(elapsed) s] $*"; }

say "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader || true
nproc
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())' || true
export MINIDL_COMMIT=${MINIDL_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
echo "commit: $MINIDL_COMMIT"

# Header-only and small dependencies packed by pack-for-device.sh.
cmake_args=(-DCMAKE_BUILD_TYPE=Release -DMINIDL_CUDA=ON -DMINIDL_CUDA_ARCH=90 -DMINIDL_BUILD_TESTS=OFF)
prefix=$root/.gpu/prefix
if [ -d "$prefix" ]; then
  export CMAKE_PREFIX_PATH=$prefix:$prefix/lib/x86_64-linux-gnu/cmake${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}
  # FindBLAS looks for libopenblas.so in the LD_LIBRARY_PATH directories too.
  export LD_LIBRARY_PATH=$prefix/lib/x86_64-linux-gnu:$prefix/lib/x86_64-linux-gnu/openblas-openmp:$prefix/lib/x86_64-linux-gnu/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  # Header-only libraries the library's sources include without a CMake target (CLI11, json).
  export CPATH=$prefix/include:$prefix/include/x86_64-linux-gnu${CPATH:+:$CPATH}
  export LIBRARY_PATH=$prefix/lib/x86_64-linux-gnu${LIBRARY_PATH:+:$LIBRARY_PATH}
  # CMakeLists.txt finds the OpenMP build of OpenBLAS under the prefix by itself; the pthread
  # build's header needs pointing at when only that one was packed.
  cblas=$prefix/include/x86_64-linux-gnu/openblas-pthread
  if [ ! -d "$prefix/lib/x86_64-linux-gnu/openblas-openmp" ] && [ -f "$cblas/cblas.h" ]; then
    cmake_args+=(-DCBLAS_INCLUDE_DIR="$cblas")
  fi
fi
# cuDNN: the toolkit's, else the one PyTorch's wheels bring (nvidia-cudnn-cu13). The wheel has only
# libcudnn.so.9, so a folder with the unversioned link CMake's find_library wants is made in /tmp.
if ! ls /usr/local/cuda/include/cudnn.h /usr/include/cudnn.h /usr/include/x86_64-linux-gnu/cudnn.h >/dev/null 2>&1; then
  wheel=$(python3 -c 'import nvidia.cudnn, os; print(os.path.dirname(nvidia.cudnn.__file__))' 2>/dev/null || true)
  if [ -n "$wheel" ] && [ -f "$wheel/include/cudnn.h" ]; then
    mkdir -p /tmp/cudnn/lib
    ln -sf "$wheel/include" /tmp/cudnn/include
    ln -sf "$wheel/lib/libcudnn.so.9" /tmp/cudnn/lib/libcudnn.so
    cmake_args+=(-DCUDNN_ROOT=/tmp/cudnn)
    export LD_LIBRARY_PATH=$wheel/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    echo "cuDNN from the Python wheel: $wheel"
  fi
fi
export PATH=$PATH:/usr/local/cuda/bin

if [[ " $stages " == *" build "* ]]; then
  say "build (Release, sm_90)"
  cmake -S . -B "$build" -G Ninja "${cmake_args[@]}" || { echo "configure failed"; exit 1; }
  cmake --build "$build" -j "$(nproc)" --target bench_kernels bench_train || { echo "build failed"; exit 1; }
fi

if [[ " $stages " == *" kernels "* ]]; then
  say "bench_kernels --shapes $shapes --batch $batch"
  # --dtypes: the memory-bound ops' bfloat16/float16 rows beside float32 (issue 20: >= 80% of
  # the copy bandwidth, read as roof%)
  "$build/bench_kernels" --device cuda --shapes "$shapes" --batch "$batch" \
    --dtypes fp32,bf16,fp16 --csv "$OUT/kernels.csv"
  echo "bench_kernels exit code $? (1: some check failed or an op raised an error; see the rows)"
fi

if [[ " $stages " == *" train "* ]]; then
  for m in $models; do
    for k in $kernel_paths; do
      say "bench_train --model $m --kernels $k --batch-size $batch"
      "$build/bench_train" --device cuda --model "$m" --kernels "$k" --batch-size "$batch" \
        --steps "$steps" --warmup-steps 5 --csv "$OUT/train.csv"
    done
    say "pytorch_reference.py --throughput --model $m --batch-size $batch"
    PYTHONUNBUFFERED=1 python3 benchmarks/pytorch_reference.py --throughput --device cuda --model "$m" \
      --batch-size "$batch" --steps "$steps" --warmup-steps 5 --csv "$OUT/train.csv"
  done
fi

say "tables"
{
  echo "# GPU benchmark summary ($(date -u '+%Y-%m-%d %H:%M UTC'), commit $MINIDL_COMMIT)"
  echo
  echo "device: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null)"
  echo
  if [ -f "$OUT/kernels.csv" ]; then
    echo "## Kernels (median ms per backend, backend/vendor time ratio)"
    echo
    python3 benchmarks/compare.py kernels "$OUT/kernels.csv" --markdown
    echo
  fi
  if [ -f "$OUT/train.csv" ]; then
    echo "## Training throughput (batch $batch, synthetic CIFAR-shaped data, fp32)"
    echo
    python3 benchmarks/compare.py train "$OUT/train.csv" --markdown
  fi
} > "$OUT/summary.md"
[ -f "$OUT/train.csv" ] && python3 benchmarks/compare.py train "$OUT/train.csv"
say "done; files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
