#!/usr/bin/env bash
# The whole GPU verification in one call on the lent device machine (docs/GPU.md):
#   data       unpack CIFAR-10 from the carried JPEG archive                      (limit 120 s)
#   configure  Release, CUDA for sm_90 only, no BLAS, against the carried .gpu/prefix   (90 s)
#   build      cmake --build -j$(nproc)                                              (300 s)
#   tests      the whole suite, CUDA tests included: ctest --timeout 120 per test    (240 s)
#   train      ResNet-18, 1 epoch on the first 10000 training images, cuda           (120 s)
#   dist1      data-parallel, the 1-rank NCCL path: minidl_dist_tests "[nccl]"        (30 s)
#   dist2      data-parallel, 2 ranks host-staged on the one GPU (NCCL refuses two ranks on
#              one device): mpirun -np 2 minidl_dist_tests "[cuda]" and train, 8 steps   (75 s)
#              Both need Open MPI on the device machine (the configure finds it); without it
#              they are reported n/a.
#   tcgemm     bench_kernels --tc-gemm: tensor-core GEMM vs cublasGemmEx, bf16/fp16  (60 s)
#   bench      bench_train ResNet-18 on cuda at fp32, bf16, fp16, and bf16/fp16 again with
#              --channels-last (20 steps each), and pytorch_reference.py --throughput beside
#              it (fp32 eager; bf16/fp16 autocast with channels_last) when the device has
#              torch with CUDA (nothing is installed there), else "n/a"; a table in the
#              summary                                                                   (130 s)
#   determinism  train --deterministic twice, same seed, ResNet-18 on 2048 images, then cmp
#              of the two metrics.csv without their time columns (issue 10)             (60 s)
#   memcheck   compute-sanitizer memcheck --report-api-errors no, [sanitize] tests  (150 s)
#   racecheck  compute-sanitizer racecheck, minidl's own kernels only (kns=minidl)   (120 s)
# The sanitizer steps run with MINIDL_CUDA_NO_CACHE=1 (exact-size allocations, freed after a
# device sync), so memcheck sees an access a few bytes past a tensor.
# Every step runs under `timeout`, cut further so that the whole run ends inside --budget seconds
# (default 560: the device tool stops a command at 600 s); a step that no time is left for is
# reported as skipped. The limits are ceilings for a hung step, not expected times: they add up
# to 1495 s, so on a slow build the budget, not the limits, ends the run, and the last steps
# (the sanitizers) are the ones skipped; rerun them with --steps on the warm machine. The summary table is printed whatever happens (EXIT trap) and written, after
# every step, to $OUT/summary.txt (commit it as docs/gpu-runs/<date>-<commit>.txt); the whole
# console goes to $OUT/gpu-check.log. $OUT defaults to /tmp/minidl-gpu-check.
#
# Here, before the call:   bash scripts/pack-gpu.sh        (fills .gpu/, prints the carry size)
#                          bash scripts/gpu-check.sh --dry-run
# The call:  command: MINIDL_COMMIT=<short hash> bash scripts/gpu-check.sh     carry: [".gpu"]
#
# Options:
#   --dry-run          check, on this machine, everything the real run uses: the carried prefix
#                      and the headers the sources include from it, the carry size, the data
#                      archive and converter, the tools, and a configure-only run of the exact
#                      cmake command against the carried prefix (system prefixes excluded)
#   --pack-to DIR      (with --dry-run) first pack into DIR with scripts/pack-gpu.sh and check that;
#                      exits 77 when packing is impossible here (the CTest check uses this)
#   --carry-size       print the carry size and fail above 60 MiB; nothing else
#   --gpu-dir DIR      the packed directory (default ./.gpu)
#   --steps a,b,...    run only these steps (e.g. train,memcheck,racecheck on a warm machine)
#   --budget SECONDS   overall time limit (default 560)
# Environment: MINIDL_COMMIT (the tree on the device has no .git), MINIDL_CUDA_ARCH (90),
#   MINIDL_TRAIN_SUBSET (10000; 0 = a full epoch), MINIDL_JOBS (nproc), OUT, MINIDL_GPU_BUILD_DIR
#   (build-gpu), MINIDL_GPU_CIFAR_DIR (/tmp/cifar/cifar-10-batches-bin).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
START=$(date +%s)

DRY=0 CARRY_ONLY=0 PACK_TO="" STEPS="" BUDGET=560
GPU_DIR=$ROOT/.gpu
while [ $# -gt 0 ]; do
  case $1 in
    --dry-run) DRY=1; shift ;;
    --carry-size) CARRY_ONLY=1; shift ;;
    --pack-to) PACK_TO=$2; shift 2 ;;
    --gpu-dir) GPU_DIR=$(cd "$2" 2>/dev/null && pwd || echo "$2"); shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --budget) BUDGET=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -uo pipefail/{/^#/p}' "$0"; exit 0 ;;
    *) echo "gpu-check.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

ALL_STEPS="data configure build tests train dist1 dist2 tcgemm bench determinism memcheck racecheck"
LIMIT_MIB=60
ARCH_TRIPLE=x86_64-linux-gnu
CUDA_ARCH=${MINIDL_CUDA_ARCH:-90}
JOBS=${MINIDL_JOBS:-$(nproc)}
TRAIN_SUBSET=${MINIDL_TRAIN_SUBSET:-10000}
BUILD=${MINIDL_GPU_BUILD_DIR:-$ROOT/build-gpu}
CIFAR=${MINIDL_GPU_CIFAR_DIR:-/tmp/cifar/cifar-10-batches-bin}
SANITIZE_TESTS='[sanitize]'
BENCH_STEPS=20  # timed steps per bench run (5 untimed first): ResNet-18 at batch 128 is ~10-50 ms a step
DET_SUBSET=2048 # determinism: 16 steps of 128, a whole epoch so that metrics.csv gets its row

# ---------------------------------------------------------------- bench and determinism helpers
# (exported: the steps run them under `timeout bash -c`)
# The columns of metrics.csv that hold times: they differ between two identical runs.
TIME_COLUMNS="epoch_seconds images_per_second"
# FILE: the CSV without its time columns (chosen by the header's names, not positions).
metrics_without_times() {
  awk -F, -v drop="$TIME_COLUMNS" '
    BEGIN { n = split(drop, d, " "); for (i = 1; i <= n; i++) skip[d[i]] = 1 }
    NR == 1 { for (i = 1; i <= NF; i++) keep[i] = !($i in skip) }
    { o = ""; sep = ""; for (i = 1; i <= NF; i++) if (keep[i]) { o = o sep $i; sep = "," }; print o }' "$1"
}
# A B: 0 when two metrics.csv hold the same header and at least one epoch row, and agree byte for
# byte outside the time columns; otherwise says why and returns 1.
same_metrics() {
  local f c
  for f in "$1" "$2"; do
    [ "$(wc -l < "$f" 2>/dev/null || echo 0)" -ge 2 ] || { echo "determinism: no epoch row in $f"; return 1; }
  done
  # A renamed time column would make two equal runs differ. (grep -c, not -q: an early exit could
  # kill tr with SIGPIPE.)
  for c in $TIME_COLUMNS; do
    [ "$(head -1 "$1" | tr , '\n' | grep -cx "$c")" = 1 ] || { echo "determinism: no column $c in $1 (update TIME_COLUMNS)"; return 1; }
  done
  if cmp <(metrics_without_times "$1") <(metrics_without_times "$2") >/dev/null; then
    echo "determinism: pass: $(($(wc -l < "$1") - 1)) epoch row(s) identical without $TIME_COLUMNS"
  else
    echo "determinism: FAIL: the two runs' metrics.csv differ (without $TIME_COLUMNS):"
    diff <(metrics_without_times "$1") <(metrics_without_times "$2") | head -n 6
    return 1
  fi
}
# Two deterministic runs with the same seed, then the comparison.
determinism_run() {
  local base=/tmp/minidl-gpu-check-det-$START r
  for r in 1 2; do
    rm -rf "$base-$r"
    "$BUILD/train" --model resnet18 --data "$CIFAR" --epochs 1 --subset "$DET_SUBSET" \
      --test-subset 1000 --batch-size 128 --lr 0.1 --momentum 0.9 --wd 5e-4 --seed 7 \
      --deterministic --device cuda --out "$base-$r" || { echo "determinism: run $r failed"; return 1; }
  done
  same_metrics "$base-1/metrics.csv" "$base-2/metrics.csv"
}
# ResNet-18 training steps at each precision, minidl then PyTorch (only if the device machine has
# torch with CUDA: nothing can be installed there). Both print a RESULT line; bench_table reads them.
bench_run() {
  local p rc=0
  local cl
  # NCHW at each precision, then bf16/fp16 channels-last: the layout of PyTorch's AMP rows
  for p in fp32 bf16 fp16 bf16:cl fp16:cl; do
    cl=""; [ "${p#*:}" = cl ] && cl=--channels-last
    "$BUILD/bench_train" --device cuda --model resnet18 --batch-size 128 --precision "${p%:*}" $cl \
      --steps "$BENCH_STEPS" --warmup-steps 5 || { echo "bench: bench_train --precision ${p%:*} $cl failed"; rc=1; }
  done
  if ! python3 -c 'import torch' 2>/dev/null; then
    echo "bench: pytorch n/a (no torch on the device)"
  elif ! python3 -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "bench: pytorch n/a (torch on the device, but torch.cuda.is_available() is false)"
  else
    # fp32 eager without TF32 (as bench_train's default), NCHW; bf16/fp16 under torch.autocast
    # with channels_last, the AMP recipe the fast anchors use (issue 20)
    echo "bench: pytorch fp32 is eager NCHW without TF32; bf16/fp16 are torch.autocast + channels_last"
    for p in fp32 bf16 fp16; do
      python3 benchmarks/pytorch_reference.py --throughput --device cuda --model resnet18 \
        --batch-size 128 --precision "$p" --steps "$BENCH_STEPS" --warmup-steps 5 \
        $([ "$p" = fp32 ] || echo --channels-last) \
        || { echo "bench: pytorch_reference.py --precision $p failed"; rc=1; }
    done
  fi
  return $rc
}
# FILE (the log): the bench table from its cuda resnet18 RESULT lines: median step, images/s, the
# speed-up over the same framework's fp32, and for minidl the ratio to PyTorch at that precision
# (PyTorch's step time / minidl's: above 1, minidl is faster; PyTorch's bf16/fp16 rows are its
# AMP recipe, channels_last, and both minidl layouts are put beside them). A row's precision gets
# "-cl" when it ran channels-last (channels_last=1 in its RESULT line).
bench_table() {
  awk '
    /^RESULT framework=/ {
      delete v
      for (i = 2; i <= NF; i++) { eq = index($i, "="); v[substr($i, 1, eq - 1)] = substr($i, eq + 1) }
      if (v["device"] != "cuda" || v["model"] != "resnet18" || !("median_step_ms" in v)) next
      p = v["precision"] (v["channels_last"] == 1 ? "-cl" : "")
      ms[v["framework"], p] = v["median_step_ms"]; ips[v["framework"], p] = v["images_per_s"]
      torch_ms[v["precision"]] = v["framework"] == "pytorch" ? v["median_step_ms"] : torch_ms[v["precision"]]
      any = 1
    }
    END {
      if (!any) exit
      printf "bench: %-8s %-7s %9s %9s %8s %9s\n", "ResNet18", "prec", "step ms", "images/s", "vs fp32", "vs torch"
      split("minidl pytorch", fw, " "); split("fp32 bf16 fp16 bf16-cl fp16-cl", pr, " ")
      for (a = 1; a <= 2; a++) for (b = 1; b <= 5; b++) {
        f = fw[a]; p = pr[b]; base = p; sub(/-cl$/, "", base)
        if (!((f, p) in ms)) continue
        up = ((f, "fp32") in ms) && ms[f, p] > 0 ? sprintf("%.2fx", ms[f, "fp32"] / ms[f, p]) : "-"
        vt = (f == "minidl" && torch_ms[base] > 0 && ms[f, p] > 0) ? sprintf("%.2fx", torch_ms[base] / ms[f, p]) : "-"
        printf "bench: %-8s %-7s %9.2f %9.0f %8s %9s\n", f, p, ms[f, p], ips[f, p], up, vt
      }
    }' "$1"
}
export TIME_COLUMNS BENCH_STEPS DET_SUBSET BUILD CIFAR START
export -f metrics_without_times same_metrics determinism_run bench_run

# ---------------------------------------------------------------- carry size
# What travels: the files git would copy (tracked, and untracked but not ignored) plus the carried
# directory. Without git (on the device) only the carried directory can be measured.
carry_size() {
  local tree=0 gpu=0 total
  if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    tree=$(git -C "$ROOT" ls-files -z -co --exclude-standard | (cd "$ROOT" && xargs -0 -r stat -c %s -- 2>/dev/null) |
           awk '{s += $1} END {print s + 0}')
  fi
  [ -d "$GPU_DIR" ] && gpu=$(find "$GPU_DIR" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')
  total=$((tree + gpu))
  awk -v t="$tree" -v g="$gpu" -v s="$total" -v lim="$LIMIT_MIB" -v d="$GPU_DIR" 'BEGIN {
    printf "carry: working tree %.1f MiB + %s %.1f MiB = %.1f MiB (device limit 64 MiB; refused here above %d MiB)\n",
           t / 1048576, d, g / 1048576, s / 1048576, lim }'
  if [ "$total" -gt $((LIMIT_MIB * 1048576)) ]; then
    echo "carry: REFUSED: over $LIMIT_MIB MiB; the device call could not start" >&2
    return 1
  fi
}
if [ "$CARRY_ONLY" = 1 ]; then carry_size; exit $?; fi

for st in ${STEPS//,/ }; do
  [[ " $ALL_STEPS " == *" $st "* ]] || { echo "gpu-check.sh: unknown step $st (steps: $ALL_STEPS)" >&2; exit 2; }
done
if [ "$DRY" = 1 ] && [ -n "$PACK_TO" ]; then
  mkdir -p "$PACK_TO"
  bash "$ROOT/scripts/pack-gpu.sh" --dest "$PACK_TO/.gpu"
  rc=$?
  if [ $rc = 3 ]; then echo "SKIPPED: cannot pack here (see above)"; exit 77; fi
  [ $rc = 0 ] || exit $rc
  GPU_DIR=$(cd "$PACK_TO/.gpu" && pwd)
  BUILD=$PACK_TO/build-dry-run
fi

# ---------------------------------------------------------------- environment
PREFIX=$GPU_DIR/prefix
DATA=$GPU_DIR/data
BLAS=OFF
OPENBLAS_DIR=$PREFIX/lib/$ARCH_TRIPLE/openblas-openmp
if compgen -G "$OPENBLAS_DIR/libopenblas.so*" >/dev/null; then BLAS=ON; fi
setup_env() {
  export PATH="$PATH:/usr/local/cuda/bin"
  export CMAKE_PREFIX_PATH="$PREFIX:$PREFIX/lib/$ARCH_TRIPLE/cmake${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
  # CLI11, nlohmann-json and stb have no CMake target here: the compiler finds them on CPATH.
  export CPATH="$PREFIX/include:$PREFIX/include/$ARCH_TRIPLE${CPATH:+:$CPATH}"
  export LIBRARY_PATH="$PREFIX/lib/$ARCH_TRIPLE${LIBRARY_PATH:+:$LIBRARY_PATH}"
  local ld="$PREFIX/lib/$ARCH_TRIPLE"
  [ "$BLAS" = ON ] && ld="$ld:$OPENBLAS_DIR"
  # cuDNN: the toolkit's, else the pip wheel's (headers in include/, libcudnn.so.9 and the
  # engine libraries it loads at run time in lib/).
  CUDNN_ARGS=()
  CUDNN_DIR=""
  if [ ! -f /usr/local/cuda/include/cudnn.h ]; then
    CUDNN_DIR=$(python3 -c 'import nvidia.cudnn as m; print(list(m.__path__)[0])' 2>/dev/null || true)
    if [ -n "$CUDNN_DIR" ]; then
      CUDNN_ARGS=(-DCUDNN_ROOT="$CUDNN_DIR")
      ld="$ld:$CUDNN_DIR/lib"
    fi
  fi
  export LD_LIBRARY_PATH="$ld${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  # No oneDNN on the device machine (and the CPU vendor path is not what this run checks).
  CMAKE_ARGS=(-G Ninja -DCMAKE_BUILD_TYPE=Release -DMINIDL_CUDA=ON -DMINIDL_CUDA_ARCH="$CUDA_ARCH" -DMINIDL_DNNL=OFF
              -DMINIDL_BLAS="$BLAS" "${CUDNN_ARGS[@]}")
}
setup_env

# ---------------------------------------------------------------- dry run
if [ "$DRY" = 1 ]; then
  fails=0
  ok() { printf '  ok    %s\n' "$*"; }
  bad() { printf '  FAIL  %s\n' "$*"; fails=$((fails + 1)); }
  note() { printf '  note  %s\n' "$*"; }
  echo "gpu-check dry run: $GPU_DIR"
  carry_size && ok "carry size" || bad "carry size"
  [ -d "$PREFIX/include" ] && ok "prefix $PREFIX" || bad "no $PREFIX/include (run scripts/pack-gpu.sh)"
  # Every third-party header the sources include must be in the carried prefix.
  for h in $(grep -rhoE '#include <(CLI|nlohmann|stb|catch2|fmt)/[^>]+>' core kernels layers models \
               optim data io engine apps benchmarks tests | sed -E 's/#include <(.*)>/\1/' | sort -u); do
    [ -f "$PREFIX/include/$h" ] && ok "header $h" || bad "header $h not in $PREFIX/include"
  done
  for f in lib/cmake/Catch2/Catch2Config.cmake lib/libCatch2WithMain.a \
           lib/$ARCH_TRIPLE/cmake/fmt/fmt-config.cmake; do
    [ -e "$PREFIX/$f" ] && ok "$f" || bad "$f missing from the prefix"
  done
  [ "$BLAS" = ON ] && note "OpenBLAS carried: building with it ($OPENBLAS_DIR)" \
                   || note "no OpenBLAS carried: -DMINIDL_BLAS=OFF (built-in CPU GEMM)"
  # (grep -c reads the whole listing: with -q, tar would die of SIGPIPE and fail the pipeline)
  if [ -f "$DATA/cifar10-jpeg.tar.gz" ] && [ "$(tar -tzf "$DATA/cifar10-jpeg.tar.gz" 2>/dev/null |
       grep -cE '^(train|test)/[a-z]+/[^/]+\.jpg$')" = 60000 ]; then
    ok "data archive $DATA/cifar10-jpeg.tar.gz (60000 JPEGs under train/ and test/)"
  else bad "data archive $DATA/cifar10-jpeg.tar.gz missing or unreadable"; fi
  if [ -f "$DATA/cifar10_from_jpeg.py" ] && python3 -c "import ast,sys; ast.parse(open(sys.argv[1]).read())" "$DATA/cifar10_from_jpeg.py"; then
    ok "converter $DATA/cifar10_from_jpeg.py parses"
  else bad "converter $DATA/cifar10_from_jpeg.py missing or not valid Python"; fi
  for t in cmake ninja python3 timeout git nvcc; do
    command -v "$t" >/dev/null && ok "tool $t" || bad "tool $t not found here"
  done
  for t in compute-sanitizer nvidia-smi; do
    command -v "$t" >/dev/null && ok "tool $t" || note "tool $t: on the device machine only, not checked here"
  done
  python3 -c 'import numpy, PIL' 2>/dev/null && ok "python3 numpy and Pillow (converter)" \
    || note "python3 numpy/Pillow: not here; the device machine has them"
  [ -n "$CUDNN_DIR" ] && note "cuDNN from the pip wheel: $CUDNN_DIR" \
                      || note "cuDNN: /usr/local/cuda here; the device run takes the pip wheel's when the toolkit has none"
  # The sanitizer subset and the train flags this script passes must exist.
  grep -rq '\[sanitize\]' tests/ops tests/cuda && ok "tests tagged $SANITIZE_TESTS" || bad "no test tagged $SANITIZE_TESTS"
  grep -q 'TEST_CASE(.*train mode.*\[sanitize\]' tests/ops/batchnorm_test.cpp \
    && ok "train-mode batchnorm is in $SANITIZE_TESTS" || bad "train-mode batchnorm not in $SANITIZE_TESTS"
  grep -q '"\[dist\]\[nccl\]' tests/dist/dist_test.cpp && ok "a test tagged [nccl] (dist1)" \
    || bad "no test tagged [nccl] in tests/dist/dist_test.cpp (dist1)"
  grep -q 'MINIDL_DIST_GPU' dist/comm.cpp && ok "MINIDL_DIST_GPU=host (dist2)" \
    || bad "dist/comm.cpp does not read MINIDL_DIST_GPU (dist2)"
  for flag in --model --data --epochs --subset --test-subset --batch-size --device --out --max-steps; do
    grep -q "\"$flag[\",]" engine/cli.cpp && ok "train flag $flag" || bad "train flag $flag not in engine/cli.cpp"
  done
  for flag in --seed --deterministic; do
    grep -q "\"$flag[\",]" engine/cli.cpp && ok "train flag $flag (determinism)" || bad "train flag $flag not in engine/cli.cpp"
  done
  grep -q '"--channels-last"' benchmarks/pytorch_reference.py && ok "pytorch_reference.py flag --channels-last" \
    || bad "pytorch_reference.py flag --channels-last missing (bench)"
  for flag in --model --batch-size --device --precision --channels-last --steps --warmup-steps; do
    grep -q -- "$flag" benchmarks/bench_train.cpp && ok "bench_train flag $flag" || bad "bench_train flag $flag not in benchmarks/bench_train.cpp"
    grep -q "\"$flag\"" benchmarks/pytorch_reference.py && ok "pytorch_reference.py flag $flag" \
      || bad "pytorch_reference.py flag $flag missing (bench)"
  done
  grep -q '"--throughput"' benchmarks/pytorch_reference.py && ok "pytorch_reference.py --throughput" \
    || bad "pytorch_reference.py has no --throughput (bench)"
  for c in $TIME_COLUMNS; do
    grep -q "$c" engine/metrics.cpp && ok "metrics.csv time column $c (left out of the determinism cmp)" \
      || bad "no column $c in engine/metrics.cpp: update TIME_COLUMNS (determinism)"
  done
  # The determinism comparison and the bench table on made-up files: equal but for the times
  # must pass, a loss differing in its last digit, a missing row or a missing time column must fail.
  t=$(mktemp -d)
  hdr=epoch,lr,train_loss,train_acc,val_loss,val_acc,test_loss,test_acc,epoch_seconds,images_per_second,val_top5,test_top5,resumed_at_step
  printf '%s\n1,0.1,2.283693552017212,13.671875,,,2.281960153579712,8,0.6099,498.7,,61,0\n' "$hdr" > "$t/a"
  printf '%s\n1,0.1,2.283693552017212,13.671875,,,2.281960153579712,8,0.7312,416.0,,61,0\n' "$hdr" > "$t/b"
  printf '%s\n1,0.1,2.283693552017213,13.671875,,,2.281960153579712,8,0.6099,498.7,,61,0\n' "$hdr" > "$t/c"
  printf '%s\n' "$hdr" > "$t/d"
  sed 's/epoch_seconds/epoch_s/' "$t/a" > "$t/e"
  same_metrics "$t/a" "$t/b" >/dev/null && ok "determinism cmp: equal runs with other times pass" \
    || bad "determinism cmp: equal runs with other times fail"
  fooled=""
  # (two header-only files, and two equal files with a renamed time column, would pass a bare cmp)
  for x in a:c d:d e:e; do same_metrics "$t/${x%:*}" "$t/${x#*:}" >/dev/null && fooled="$fooled $x"; done
  [ -z "$fooled" ] && ok "determinism cmp: a different loss, no epoch row, a renamed time column fail" \
    || bad "determinism cmp: passed on a bad case ($fooled)"
  # minidl 20/10/8 ms (bf16 channels-last 5), PyTorch twice that (its bf16/fp16 channels-last);
  # another model's and device's lines are ignored
  for r in minidl:fp32:20:0 minidl:bf16:10:0 minidl:fp16:8:0 minidl:bf16:5:1 pytorch:fp32:40:0 \
           pytorch:bf16:20:1 pytorch:fp16:16:1 minidl:fp32:1:0:resnet20 minidl:bf16:1:0:resnet18:cpu; do
    IFS=: read -r f p ms cl m d <<< "$r"
    echo "RESULT framework=$f model=${m:-resnet18} device=${d:-cuda} kernels=cudnn precision=$p channels_last=$cl batch=128 median_step_ms=$ms images_per_s=1000.00"
  done > "$t/log2"
  bt=$(bench_table "$t/log2")
  [[ $bt == *"minidl   bf16        10.00      1000    2.00x     2.00x"* && $bt == *"pytorch  fp16-cl     16.00"* \
     && $bt == *"minidl   bf16-cl      5.00      1000    4.00x     4.00x"* ]] \
    && ok "bench table from RESULT lines" || { bad "bench table from RESULT lines:"; echo "$bt" | sed 's/^/        /'; }
  rm -rf "$t"
  # The exact configure of the real run, with the system prefixes excluded from CMake's searches,
  # so that the carried prefix alone must supply the packages.
  rm -rf "$BUILD.dry"
  DRYLOG=${TMPDIR:-/tmp}/minidl-gpu-check-dry-run.$$.log
  echo "  configure: cmake -S . -B $BUILD.dry ${CMAKE_ARGS[*]} -DCMAKE_FIND_USE_CMAKE_SYSTEM_PATH=OFF"
  if timeout 300 cmake -S . -B "$BUILD.dry" "${CMAKE_ARGS[@]}" -DCMAKE_FIND_USE_CMAKE_SYSTEM_PATH=OFF \
       > "$DRYLOG" 2>&1; then
    ok "configure-only against the carried prefix (log: $DRYLOG)"
    for v in Catch2_DIR fmt_DIR; do
      d=$(sed -n "s/^$v:[A-Z]*=//p" "$BUILD.dry/CMakeCache.txt")
      [[ $d == "$PREFIX"* ]] && ok "$v=$d" || bad "$v=$d is not in the carried prefix"
    done
    for target in tests/minidl_cuda_tests train bench_train; do
      # (grep -c, not -q: an early exit would kill ninja with SIGPIPE and fail the pipeline)
      [ "$(ninja -C "$BUILD.dry" -t targets all 2>/dev/null | grep -c "^$target:")" = 1 ] \
        && ok "target $target" || bad "no target $target"
    done
    grep -q "^MINIDL_BLAS:BOOL=$BLAS" "$BUILD.dry/CMakeCache.txt" && ok "MINIDL_BLAS=$BLAS" || bad "MINIDL_BLAS not $BLAS"
  else
    bad "configure-only failed:"; tail -n 15 "$DRYLOG" | sed 's/^/        /'
  fi
  rm -rf "$BUILD.dry"
  bash -n "$0" && ok "script syntax" || bad "script syntax"
  echo "dry run: $fails problem(s)"
  [ "$fails" = 0 ]
  exit $?
fi

# ---------------------------------------------------------------- the real run
OUT=${OUT:-/tmp/minidl-gpu-check}
mkdir -p "$OUT"
LOG=$OUT/gpu-check.log
SUMMARY=$OUT/summary.txt
: > "$LOG"
RESERVE=15  # seconds kept for the summary
declare -A result
order=()
blocked=""  # set when a step the later ones need failed

header() {
  echo "minidl gpu-check"
  echo "date:    $(date -u +%Y-%m-%dT%H:%MZ)"
  local commit=${MINIDL_COMMIT:-}
  if [ -z "$commit" ]; then
    if commit=$(git rev-parse --short HEAD 2>/dev/null); then
      git diff --quiet HEAD 2>/dev/null || commit="$commit (with uncommitted changes)"
    else commit="unknown (no .git here: pass MINIDL_COMMIT)"; fi
  fi
  echo "commit:  $commit"
  echo "device:  $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -1)"
  echo "nvcc:    $(nvcc --version 2>&1 | tail -1)"
  echo "cuDNN:   ${CUDNN_DIR:-/usr/local/cuda}"
  echo "cmake:   ${CMAKE_ARGS[*]}"
  echo "host:    $(nproc) cores, budget $BUDGET s"
}
HEADER=$(header)

write_summary() {
  {
    echo "$HEADER"
    echo
    printf '%-12s %-9s %6s %6s  %s\n' step result seconds limit detail
    for k in "${order[@]}"; do printf '%-12s %s\n' "$k" "${result[$k]}"; done
    echo
    grep -E '^[0-9]+% tests passed|tests failed out of|^The following tests' "$LOG" | tail -2
    grep -E '^epoch ' "$LOG" | tail -1
    grep -E '^(bf16|fp16) +[0-9]+ ' "$LOG" | sed 's/^/tcgemm: /'
    bench_table "$LOG"
    grep -E '^bench: ' "$LOG"
    grep -E '^determinism: ' "$LOG" | tail -1
    grep -E '^=+ ERROR SUMMARY' "$LOG" | sed 's/^=* //' | tail -2
    echo "total: $(( $(date +%s) - START )) s"
  } > "$SUMMARY.tmp" && mv "$SUMMARY.tmp" "$SUMMARY"
}
finish() {
  write_summary
  echo
  echo "==== minidl gpu-check summary ($SUMMARY)"
  cat "$SUMMARY"
}
trap finish EXIT
trap 'exit 143' TERM INT  # so that the EXIT trap runs when the call is stopped

wanted() { [ -z "$STEPS" ] || [[ ",$STEPS," == *",$1,"* ]]; }

# step NAME LIMIT [needs-build] -- COMMAND...
step() {
  local name=$1 limit=$2 needs=$3; shift 4
  wanted "$name" || return 0
  order+=("$name")
  local left=$(( BUDGET - ($(date +%s) - START) - RESERVE ))
  if [ -n "$needs" ] && [ -n "$blocked" ]; then
    result[$name]=$(printf '%-9s %6s %6s  %s' skipped - "$limit" "$blocked failed")
    write_summary; return 0
  fi
  if [ "$left" -lt 20 ]; then
    result[$name]=$(printf '%-9s %6s %6s  %s' skipped - "$limit" "no time left in the $BUDGET s budget")
    write_summary; return 0
  fi
  [ "$left" -lt "$limit" ] && limit=$left
  echo "=== [$(( $(date +%s) - START )) s] $name (limit $limit s): $*" | tee -a "$LOG"
  local t0=$(date +%s) rc
  timeout -k 10 "$limit" "$@" >> "$LOG" 2>&1
  rc=$?
  local dt=$(( $(date +%s) - t0 )) detail=""
  if [ $rc = 0 ]; then
    result[$name]=$(printf '%-9s %6s %6s' ok "$dt" "$limit")
  else
    local what=FAILED
    if [ $rc = 124 ] || [ $rc = 137 ]; then what=TIMEOUT; fi
    detail="rc $rc"
    # compute-sanitizer refuses some virtual machines (gVisor: "Device not supported").
    if [[ $name == *check ]] && [ "$(tail -n 50 "$LOG" | grep -c 'Device not supported')" != 0 ]; then
      what=n/a; detail="compute-sanitizer: Device not supported on this machine"
    fi
    result[$name]=$(printf '%-9s %6s %6s  %s' "$what" "$dt" "$limit" "$detail")
    case $name in configure|build) blocked=$name ;; esac
  fi
  tail -n 4 "$LOG"
  write_summary
}

echo "$HEADER" | tee -a "$LOG"
[ -d "$PREFIX" ] || echo "warning: no $PREFIX (pack it with scripts/pack-gpu.sh and carry .gpu)" | tee -a "$LOG"

if [ -f "$CIFAR/test_batch.bin" ]; then
  wanted data && { order+=(data); result[data]=$(printf '%-9s %6s %6s  %s' ok 0 - "already in $CIFAR"); }
else
  # Whatever --steps says: the tests and the train step need the data.
  wanted_steps=$STEPS; [ -n "$STEPS" ] && STEPS="$STEPS,data"
  step data 120 "" -- python3 "$DATA/cifar10_from_jpeg.py" "$DATA/cifar10-jpeg.tar.gz" "$CIFAR"
  STEPS=$wanted_steps
fi
export MINIDL_CIFAR10_DIR=$CIFAR
step configure 90 "" -- cmake -S . -B "$BUILD" "${CMAKE_ARGS[@]}"
step build 300 needs -- cmake --build "$BUILD" -j "$JOBS"
# Several test processes at once, each with a few OpenMP threads (the CPU references), rather than
# every process spinning up all cores.
OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} step tests 240 needs -- \
  ctest --test-dir "$BUILD" --output-on-failure -j "$(( JOBS / 2 > 0 ? JOBS / 2 : 1 ))" --timeout 120
step train 120 needs -- "$BUILD/train" --model resnet18 --data "$CIFAR" --epochs 1 \
  --subset "$TRAIN_SUBSET" --test-subset 2000 --batch-size 128 --lr 0.1 --momentum 0.9 --wd 5e-4 \
  --device cuda --out "/tmp/minidl-gpu-check-train-$START"
# Data-parallel on the one GPU (docs/DISTRIBUTED.md): the NCCL path with one rank (a
# communicator of one, ncclAllReduce on the communication stream), then two ranks sharing cuda:0
# on the host-staged path (MINIDL_DIST_GPU=host): the GPU bucket test, whose streams and events
# really run concurrently here (cudasim runs them in order), and a few training steps.
if wanted dist1 || wanted dist2; then
  if [ -x "$BUILD/tests/minidl_dist_tests" ] && command -v mpirun >/dev/null; then
    step dist1 30 needs -- "$BUILD/tests/minidl_dist_tests" "[nccl]"
    mpi2=(mpirun -np 2 --oversubscribe --allow-run-as-root --bind-to none -x MINIDL_DIST_GPU=host
          -x OMP_NUM_THREADS=2)
    step dist2 75 needs -- bash -c "${mpi2[*]} $BUILD/tests/minidl_dist_tests '[cuda]' && \
      ${mpi2[*]} $BUILD/train --model resnet20 --data $CIFAR --epochs 1 --subset 2048 \
      --test-subset 500 --batch-size 64 --max-steps 8 --device cuda:0 \
      --out /tmp/minidl-gpu-check-dist-$START"
  else
    for s in dist1 dist2; do
      wanted $s || continue
      order+=("$s")
      result[$s]=$(printf '%-9s %6s %6s  %s' n/a - - "no Open MPI here (mpirun, libopenmpi-dev)")
    done
    write_summary
  fi
fi
# The tensor-core GEMM against cublasGemmEx (bf16 and fp16, checked against float64 first); the
# table goes to the log, its rows to the summary.
step tcgemm 60 needs -- "$BUILD/bench_kernels" --device cuda --tc-gemm --gemm-size 8192
# After tcgemm and before the sanitizers: both are short (expected ~60 s and ~30 s on an H100),
# and the sanitizers, the longest steps, are the ones the budget cuts first on a slow build.
step bench 130 needs -- bash -c bench_run
step determinism 60 needs -- bash -c determinism_run
# --report-api-errors no: cuDNN's algorithm probing (cudnnFind*, heuristics) makes CUDA API calls
# that fail by design (unsupported configurations, out-of-memory probes); reported, they would
# flood the log and fail the step though no kernel misbehaved. Kernel memory errors still count.
MINIDL_CUDA_NO_CACHE=1 step memcheck 150 needs -- compute-sanitizer --tool memcheck \
  --report-api-errors no --error-exitcode 1 "$BUILD/tests/minidl_cuda_tests" "$SANITIZE_TESTS"
# Races only in minidl's hand-written kernels (all in namespace minidl): cuDNN's and cuBLAS's
# kernels run uninstrumented, which also keeps this step short.
MINIDL_CUDA_NO_CACHE=1 step racecheck 120 needs -- compute-sanitizer --tool racecheck \
  --kernel-name kns=minidl --error-exitcode 1 "$BUILD/tests/minidl_cuda_tests" "$SANITIZE_TESTS"

# 0: every step ok; 1: a step failed or timed out; 3: none failed, but some could not run.
status=0
for k in "${order[@]}"; do
  case ${result[$k]} in
    ok*) ;;
    FAILED*|TIMEOUT*) status=1 ;;
    *) [ $status = 0 ] && status=3 ;;
  esac
done
exit $status
