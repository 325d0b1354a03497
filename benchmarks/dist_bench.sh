#!/usr/bin/env bash
# CPU scaling of data-parallel training: build/dist_bench with 1 rank and with 2 ranks of 1
# thread each (docs/DISTRIBUTED.md), and the images/s ratio np=2 / np=1 (target >= 1.8x).
# Usage: benchmarks/dist_bench.sh [build dir] [dist_bench flags...]
#   e.g. benchmarks/dist_bench.sh build --model resnet20 --batch 32 --steps 10 --repeats 3
set -euo pipefail
build=${1:-build}
shift || true
run=(mpirun --oversubscribe --allow-run-as-root --bind-to none -x OMP_NUM_THREADS=1)
export OMP_NUM_THREADS=1
out1=$("${run[@]}" -np 1 "$build/dist_bench" --max-mb 0 "$@")
echo "$out1"
echo
out2=$("${run[@]}" -np 2 "$build/dist_bench" "$@")
echo "$out2"
ips() { echo "$1" | sed -n "s/^RESULT ranks=[0-9]* overlap=$2 images_per_second=\([0-9.]*\).*/\1/p"; }
one=$(ips "$out1" 1)
two_on=$(ips "$out2" 1)
two_off=$(ips "$out2" 0)
echo
awk -v a="$one" -v b="$two_on" -v c="$two_off" 'BEGIN {
  printf "scaling, images/s: 1 rank %s, 2 ranks %s (overlap) / %s (no overlap): %.2fx / %.2fx\n", a, b, c, b / a, c / a }'
