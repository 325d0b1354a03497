#!/usr/bin/env bash
# CPU scaling of data-parallel training: build/dist_bench with 1 rank and with 2 ranks of 1
# thread each (docs/DISTRIBUTED.md), run in interleaved rounds (1 rank, 2 ranks, 1 rank, ...) so
# that a change in the machine's load hits both alike, and the images/s ratio np=2 / np=1 of each
# round (target >= 1.8x), the median over the rounds. The first 2-rank round also prints the
# all-reduce bandwidth table. About 2 minutes for the command below on an idle 2-core machine.
# Usage: benchmarks/dist_bench.sh [build dir] [dist_bench flags...]
#   e.g. benchmarks/dist_bench.sh build --model resnet20 --batch 32 --steps 10 --warmup 2 --repeats 3
# --repeats R is the number of rounds here (each dist_bench runs one). BIND=core binds each rank
# to a core of its own instead of --bind-to none (to compare).
set -euo pipefail
build=${1:-build}
shift || true
rounds=3
max_mb=64
args=()
while [ $# -gt 0 ]; do
  case $1 in
    --repeats) rounds=$2; shift 2 ;;
    --max-mb) max_mb=$2; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
run=(mpirun --oversubscribe --allow-run-as-root --bind-to "${BIND:-none}" -x OMP_NUM_THREADS=1)
export OMP_NUM_THREADS=1
ips() { echo "$1" | sed -n "s/^RESULT ranks=[0-9]* mode=$2 images_per_second=\([0-9.]*\).*/\1/p"; }
exposed() { echo "$1" | sed -n "s/^RESULT ranks=[0-9]* mode=$2 .*exposed_ms=\([0-9.]*\).*/\1/p"; }
cpu() { echo "$1" | sed -n "s/^RESULT ranks=[0-9]* mode=$2 .*cpu_ms=\([0-9.]*\).*/\1/p"; }
modes="overlap overlap-spin small small-spin no-overlap"
table=""
for r in $(seq "$rounds"); do
  out1=$("${run[@]}" -np 1 "$build/dist_bench" "${args[@]}" --repeats 1 --max-mb 0)
  mb=0
  [ "$r" = 1 ] && mb=$max_mb
  out2=$("${run[@]}" -np 2 "$build/dist_bench" "${args[@]}" --repeats 1 --max-mb "$mb")
  echo "== round $r of $rounds: 1 rank"
  echo "$out1"
  echo "== round $r of $rounds: 2 ranks"
  echo "$out2"
  echo
  one=$(ips "$out1" overlap)
  for m in $modes; do
    table+="$m $one $(ips "$out2" "$m") $(exposed "$out2" "$m") $(cpu "$out1" overlap) $(cpu "$out2" "$m")"$'\n'
  done
done
echo "$table" | awk -v rounds="$rounds" '
  function median(a, n,   i, j, t) {
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  NF == 6 { n[$1]++; k = n[$1]; one[$1, k] = $2; two[$1, k] = $3; ex[$1, k] = $4; ratio[$1, k] = $3 / $2
            c1[$1, k] = $5; c2[$1, k] = $6; est[$1, k] = 2 * $5 / $6
            if (!($1 in seen)) { seen[$1] = 1; order[++m] = $1 } }
  END {
    printf "scaling, 2 ranks against 1 (1 thread each), median over %d interleaved rounds:\n", rounds
    printf "(CPU ms 1 / 2: CPU time per step of the 1-rank process / of the busiest of the 2 ranks, all threads;\n"
    printf " CPU-bound: 2 x CPU ms 1 / CPU ms 2, the ratio when each rank has a core to itself and waits cost nothing:\n"
    printf " an estimate that the machine'"'"'s load does not move, not a measurement of images/s)\n"
    printf "%-13s %12s %13s %7s %15s %9s %9s %10s\n", "mode (2 ranks)", "1 rank img/s", "2 ranks img/s", "ratio", "exposed ms/step", "CPU ms 1", "CPU ms 2", "CPU-bound"
    for (i = 1; i <= m; i++) {
      k = order[i]
      for (j = 1; j <= n[k]; j++) { a[j] = one[k, j]; b[j] = two[k, j]; c[j] = ratio[k, j]; d[j] = ex[k, j]
                                    e[j] = c1[k, j]; f[j] = c2[k, j]; g[j] = est[k, j] }
      printf "%-13s %12.1f %13.1f %6.2fx %15.2f %9.1f %9.1f %9.2fx\n", k, median(a, n[k]), median(b, n[k]), median(c, n[k]),
             median(d, n[k]), median(e, n[k]), median(f, n[k]), median(g, n[k])
    }
  }'
