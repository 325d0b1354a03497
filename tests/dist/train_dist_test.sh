#!/usr/bin/env bash
# `mpirun -np 2 train` end to end on the CPU, 1 thread per rank (CTest: dist.train; a few seconds
# of training per part on the shared CIFAR-10 copy, skipped with 77 without it):
#   1. resume with another number of ranks: 2 ranks x 16 images with --sync-bn, stopped by
#      --max-steps in the middle of epoch 2, continued by one process x 32 (the same global
#      batch), equals one process x 32 run straight through (weights within the float32 bound
#      below); only rank 0 prints; a sharded --evaluate gives one process's accuracy;
#   2. SIGTERM to rank 1 stops both ranks at the same step, and rank 0 saves once;
#   3. a rank killed with SIGKILL makes the job exit non-zero within 60 s, naming the rank, with no
#      half-written checkpoint;
#   4. Ctrl-C to mpirun stops every rank and rank 0 saves once;
#   5. a rank stopped with SIGSTOP (alive, but hung) makes rank 0 end the job after
#      --dist-timeout, naming the collective, itself and rank 1, non-zero within 60 s;
#   6. --seeds 2 under mpirun: rank 0 alone prints and writes one seeds.json.
# Usage: train_dist_test.sh <train> <minidl_dist_tests> <work dir>
set -uo pipefail
train=$1
dist_tests=$2
work=$3
here=$(cd "$(dirname "$0")" && pwd)
data=${MINIDL_CIFAR10_DIR:-$here/../../../shared/data/cifar-10-batches-bin}
if [ ! -f "$data/data_batch_1.bin" ]; then
  echo "skipped: no CIFAR-10 at $data (set MINIDL_CIFAR10_DIR)"
  exit 77
fi
mpirun=(mpirun -np 2 --oversubscribe --allow-run-as-root --bind-to none -x OMP_NUM_THREADS=1)
export OMP_NUM_THREADS=1
common=(--model plain --data "$data" --subset 64 --test-subset 50 --no-augment --optimizer sgd
        --lr 0.05 --momentum 0.9 --wd 0 --schedule constant --seed 3 --device cpu)
fail() {
  echo "FAIL: $*"
  exit 1
}
rm -rf "$work"
mkdir -p "$work"
cd "$work" || exit 1

echo "== 1. 2 ranks x 16 (--sync-bn), stopped at step 3, resumed by 1 process x 32"
"${mpirun[@]}" "$train" "${common[@]}" --epochs 2 --batch-size 16 --sync-bn --max-steps 3 \
  --out a > a.log 2>&1 || { cat a.log; fail "the 2-rank run exited $?"; }
cat a.log
grep -q "data-parallel: 2 ranks, 16 images per rank per step" a.log || fail "no data-parallel line"
[ "$(grep -c '^optimizer:' a.log)" = 1 ] || fail "more than one rank printed"
"$train" --resume a/last.safetensors --batch-size 32 > a2.log 2>&1 || { cat a2.log; fail "resume"; }
cat a2.log
grep -q "continuing epoch 2 at step 2" a2.log || fail "the resume did not continue at step 2"
"$train" "${common[@]}" --epochs 2 --batch-size 32 --out c > c.log 2>&1 || { cat c.log; fail "1 process"; }
# The bound: the two runs take the same 4 steps on the same images and differ by float32 rounding
# in the order of the sums (tests/dist/dist_test.cpp, "[equivalence]": rounding amplified by at
# most ~1e3-1e4 over a few steps, 2^-24 x 1e4 = 6e-4); a wrong resume (a step repeated or skipped,
# another image order) moves the weights by a whole SGD step, > 1e-2 relative.
MINIDL_COMPARE_A=a/last.safetensors MINIDL_COMPARE_B=c/last.safetensors MINIDL_COMPARE_REL_L2=1e-3 \
  "$dist_tests" "[.compare]" || fail "resumed with another rank count != one process"
"${mpirun[@]}" "$train" --evaluate --checkpoint c/last.safetensors --out e2 > e2.log 2>&1 ||
  { cat e2.log; fail "sharded evaluate"; }
"$train" --evaluate --checkpoint c/last.safetensors --out e1 > e1.log 2>&1 || fail "evaluate"
acc1=$(grep -o '"test_accuracy": [0-9.e+-]*' e1/eval.json)
acc2=$(grep -o '"test_accuracy": [0-9.e+-]*' e2/eval.json)
echo "evaluate: 1 process $acc1, 2 ranks $acc2"
[ -n "$acc1" ] && [ "$acc1" = "$acc2" ] || fail "sharded evaluation: $acc2 != $acc1"

# The pid of rank $2 among the children of mpirun ($1), from /proc (no procps needed).
rank_pid() {
  for d in /proc/[0-9]*; do
    [ "$(awk '{print $4}' "$d/stat" 2>/dev/null)" = "$1" ] || continue
    if tr '\0' '\n' < "$d/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2"; then
      echo "${d#/proc/}"
      return
    fi
  done
}
# Starts a long 2-rank run in the background (its pid in $job; more flags after the directory)
# and waits until it trains.
start_long_run() {
  "${mpirun[@]}" "$train" "${common[@]}" --epochs 1000 --batch-size 8 --out "$1" "${@:2}" \
    > "$1.log" 2>&1 &
  job=$!
  for _ in $(seq 120); do
    grep -Eq "(^|[^0-9])2/1000 +0\.05 " "$1.log" 2>/dev/null && return  # epoch 2's row
    sleep 0.5
  done
  cat "$1.log"
  fail "the run in $1 did not reach epoch 2 in 60 s"
}
# Waits up to 60 s for the background job; its exit status in $rc.
wait_job() {
  for _ in $(seq 120); do
    kill -0 "$job" 2>/dev/null || break
    sleep 0.5
  done
  if kill -0 "$job" 2>/dev/null; then
    kill -KILL "$job"
    fail "the job still ran 60 s after $1"
  fi
  wait "$job"
  rc=$?
}

# A long run in $1 whose rank 1 gets signal $2; the job must end within 60 s, non-zero.
signal_rank1() {
  start_long_run "$1"
  pid=$(rank_pid "$job" 1)
  [ -n "$pid" ] || fail "rank 1 not found"
  kill "-$2" "$pid"
  wait_job "SIG$2 to rank 1"
  cat "$1.log"
  [ "$rc" != 0 ] || fail "mpirun exited 0 after SIG$2 to rank 1"
}
# Fails unless checkpoint $1 loads (is whole).
loads() {
  MINIDL_COMPARE_A=$1 MINIDL_COMPARE_B=$1 MINIDL_COMPARE_REL_L2=0 "$dist_tests" "[.compare]" \
    > /dev/null || fail "$1 does not load"
}

echo "== 2. SIGTERM to rank 1"
signal_rank1 s TERM
# Stopped in an epoch ("... saved s/last.safetensors") or after one ("... s/last.safetensors holds
# it"), once: only rank 0 prints and saves.
[ "$(grep -c 'interrupted (SIGTERM).*s/last.safetensors' s.log)" = 1 ] ||
  fail "rank 0 did not stop and save once on rank 1's SIGTERM"
loads s/last.safetensors

echo "== 3. SIGKILL to rank 1"
signal_rank1 k KILL
grep -Eq "rank 1( |$)" k.log || fail "the message does not name rank 1"
if [ -f k/last.safetensors ]; then loads k/last.safetensors; fi

echo "== 4. Ctrl-C to mpirun (Open MPI sends every rank SIGTERM)"
start_long_run i
kill -INT "$job"
wait_job "Ctrl-C to mpirun"
cat i.log
[ "$(grep -c 'interrupted (SIGTERM).*i/last.safetensors' i.log)" = 1 ] ||
  fail "the ranks did not stop and save once on Ctrl-C"
loads i/last.safetensors

echo "== 5. SIGSTOP to rank 1 (hung, not dead): --dist-timeout 10 ends the job"
start_long_run h --dist-timeout 10
pid=$(rank_pid "$job" 1)
[ -n "$pid" ] || fail "rank 1 not found"
trap 'kill -KILL "$pid" 2>/dev/null' EXIT  # never leave a stopped process behind
kill -STOP "$pid"
wait_job "SIGSTOP to rank 1"
kill -KILL "$pid" 2>/dev/null  # mpirun's abort has killed it already
trap - EXIT
cat h.log
[ "$rc" != 0 ] || fail "mpirun exited 0 after rank 1 hung"
grep -Eq "rank 0 of 2\): error: .* has waited [0-9]+ s .*--dist-timeout 10 s: rank 1 has not reached it" \
  h.log || fail "no message from rank 0 naming the collective, the timeout and rank 1"
if [ -f h/last.safetensors ]; then loads h/last.safetensors; fi

echo "== 6. --seeds 2 under mpirun: rank 0 alone prints and writes seeds.json"
"${mpirun[@]}" "$train" "${common[@]}" --epochs 1 --batch-size 16 --seeds 2 > sd.log 2>&1 ||
  { cat sd.log; fail "--seeds 2 under mpirun exited $?"; }
cat sd.log
[ "$(grep -c '^=== seed' sd.log)" = 2 ] || fail "more than rank 0 printed the seeds' headers"
[ "$(grep -c '^2 seeds (3\.\.4): final test accuracy' sd.log)" = 1 ] ||
  fail "not exactly one summary line"
[ "$(ls runs/*/seeds.json 2>/dev/null | wc -l)" = 1 ] || fail "not exactly one seeds.json: $(ls runs)"
echo "PASS"
