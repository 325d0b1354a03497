#!/usr/bin/env bash
# Mutation check: do the tests catch realistic kernel bugs? Applies each planted bug ("mutant") of
# a catalogue (scripts/mutants.txt) to the source, one at a time; rebuilds incrementally; runs the
# suite that covers the file; reverts; prints one line per mutant and the kill rate.
#
#   kernels/*.cu, *.cuh -> build-sim/ (the emulator tree): minidl_cuda_tests (plus minidl_cuda_race_tests
#                     for mutants marked `race: yes`), then ctest --test-dir build-sim
#   anything else  -> build/ (the CPU tree): minidl_tests, then the CPU tests (ctest -R '^cpu\.')
#
# A mutant is killed when the build fails or a test fails. Each mutant may name a ctest regex
# (`tests:`) that is run first, so killed mutants die fast; a mutant that survives it runs the whole
# suite of its tree (--stop-on-failure). The catalogue's own `equivalent:` entries (no observable
# difference, explained there) are run too and reported apart: the kill rate counts the others.
# The file is restored after every mutant, also on Ctrl-C or a failure of this script (trap).
#
# Not part of CI (about 1-3 minutes per mutant on 2 cores). Both trees must be configured and built
# first (README, docs/GPU.md). Usage:
#   bash scripts/mutation-check.sh [-j N] [--only ID,ID] [--quick] [--catalogue FILE]
#     -j N      parallel ctest jobs and build jobs (default 2)
#     --only    run only these mutants
#     --quick   run only each mutant's `tests:` regex (no whole-suite run for survivors)
# Exit status: 0 when every non-equivalent mutant was killed, 1 otherwise, 2 on a usage or
# catalogue error.
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
catalogue="$root/scripts/mutants.txt"
jobs=2
only=""
quick=0
while [ $# -gt 0 ]; do
  case "$1" in
    -j) jobs="$2"; shift 2 ;;
    -j*) jobs="${1#-j}"; shift ;;
    --only) only="$2"; shift 2 ;;
    --quick) quick=1; shift ;;
    --catalogue) catalogue="$2"; shift 2 ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "mutation-check: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ -f "$catalogue" ] || { echo "mutation-check: no catalogue at $catalogue" >&2; exit 2; }

work=$(mktemp -d)
backup_of=""   # the file currently mutated (relative to root), restored by restore()
restore() {
  if [ -n "$backup_of" ]; then
    cp "$work/backup" "$root/$backup_of"
    backup_of=""
  fi
}
# Builds and tests run in their own process group, waited for with `wait`, which a trapped signal
# interrupts: Ctrl-C stops the whole group at once and restores the source. (Run in the
# foreground, ctest would catch the SIGINT itself and exit as if a test had failed.)
child=""
run() {
  setsid "$@" &
  child=$!
  wait "$child"
  local rc=$?
  child=""
  return $rc
}
on_interrupt() {
  [ -n "$child" ] && kill -TERM -- "-$child" 2>/dev/null
  echo
  echo "mutation-check: interrupted, source restored" >&2
  exit 130
}
trap 'restore; rm -rf "$work"' EXIT
trap on_interrupt INT TERM

# The catalogue as NUL-separated records: id file from to nth tests race equivalent note.
python3 - "$catalogue" > "$work/records" <<'EOF' || exit 2
import sys
path = sys.argv[1]
keys = ("file", "from", "to", "nth", "tests", "race", "equivalent", "note")
recs, cur = [], None
for n, line in enumerate(open(path, encoding="utf-8"), 1):
    line = line.rstrip("\n")
    if line.startswith("#") or not line.strip():
        continue
    if line.startswith("[") and line.endswith("]"):
        cur = {"id": line[1:-1]}
        recs.append(cur)
        continue
    key, sep, value = line.partition(":")
    if cur is None or not sep or key not in keys:
        sys.exit(f"{path}:{n}: expected '[id]' or one of {', '.join(keys)}: '{line}'")
    if value.startswith(" "):
        value = value[1:]
    if key in cur:  # a continued note
        cur[key] += " " + value
    else:
        cur[key] = value
ids = set()
for r in recs:
    for k in ("file", "from", "to", "note"):
        if k not in r:
            sys.exit(f"{path}: mutant [{r['id']}] has no '{k}:'")
    if r["id"] in ids:
        sys.exit(f"{path}: mutant [{r['id']}] appears twice")
    ids.add(r["id"])
    sys.stdout.write("\0".join([r["id"]] + [r.get(k, "") for k in keys]) + "\0")
EOF

# apply FILE FROM TO NTH: replaces the NTH occurrence (or the only one) of FROM in FILE.
apply_mutant() {
  python3 - "$@" <<'EOF'
import sys
path, old, new, nth = sys.argv[1:5]
text = open(path, encoding="utf-8").read()
count = text.count(old)
if nth:
    k = int(nth)
    if count < k:
        sys.exit(f"'{old}' occurs {count} times in {path}, fewer than nth = {k}")
elif count != 1:
    sys.exit(f"'{old}' occurs {count} times in {path} (must be exactly once, or give nth:)")
else:
    k = 1
at = -1
for _ in range(k):
    at = text.index(old, at + 1)
open(path, "w", encoding="utf-8").write(text[:at] + new + text[at + len(old):])
EOF
}

# The trees the selected mutants need: build-sim for kernels/*.cu, build for the rest.
need_sim=0 need_cpu=0
while IFS= read -r -d '' id && IFS= read -r -d '' file && for _ in 1 2 3 4 5 6 7; do
        IFS= read -r -d '' _; done; do
  if [ -n "$only" ] && [[ ",$only," != *",$id,"* ]]; then continue; fi
  if [[ "$file" == *.cu || "$file" == *.cuh ]]; then need_sim=1; else need_cpu=1; fi
done < "$work/records"
# Bring them up to date with the unmutated source first, so that a failure below is the mutant's
# and each rebuild is incremental.
build_unmutated() {
  local tree="$1"; shift
  [ -f "$root/$tree/build.ninja" ] || {
    echo "mutation-check: $root/$tree is not configured (docs/GPU.md: cmake -S . -B $tree -G Ninja ...)" >&2
    exit 2
  }
  echo "mutation-check: building $tree unmutated ($(date -u +%H:%M:%S))"
  run cmake --build "$root/$tree" -j "$jobs" --target "$@" > "$work/log" 2>&1 || {
    tail -30 "$work/log"
    echo "mutation-check: the unmutated source does not build in $tree" >&2
    exit 2
  }
}
[ "$need_cpu" = 1 ] && build_unmutated build minidl_tests
[ "$need_sim" = 1 ] && build_unmutated build-sim minidl_cuda_tests minidl_cuda_race_tests

printf '%-22s %-30s %-10s %6s  %s\n' "mutant" "file" "result" "secs" "killed by / note"
total=0 killed=0 survived=0 equivalent=0 errors=0
survivors=""
while IFS= read -r -d '' id && IFS= read -r -d '' file && IFS= read -r -d '' from &&
      IFS= read -r -d '' to && IFS= read -r -d '' nth && IFS= read -r -d '' tests &&
      IFS= read -r -d '' race && IFS= read -r -d '' equiv && IFS= read -r -d '' note; do
  if [ -n "$only" ] && [[ ",$only," != *",$id,"* ]]; then continue; fi
  start=$(date +%s)
  cp "$root/$file" "$work/backup"
  backup_of="$file"
  if ! err=$(apply_mutant "$root/$file" "$from" "$to" "$nth" 2>&1); then
    restore
    printf '%-22s %-30s %-10s %6s  %s\n' "$id" "$file" "ERROR" "-" "$err"
    errors=$((errors + 1))
    continue
  fi
  if [[ "$file" == *.cu || "$file" == *.cuh ]]; then
    tree="$root/build-sim"
    targets="minidl_cuda_tests"
    [ "$race" = "yes" ] && targets="$targets minidl_cuda_race_tests"
    # The race binary is only rebuilt for race mutants; elsewhere it still holds the unmutated
    # kernels, so its test is left out.
    exclude=$([ "$race" = "yes" ] && echo '^$' || echo '^cudasim\.race$')
    suite='^cudasim\.'
  else
    tree="$root/build"
    targets="minidl_tests"
    exclude='^$'
    suite='^cpu\.'
  fi
  result="" by=""
  # shellcheck disable=SC2086
  if ! run cmake --build "$tree" -j "$jobs" --target $targets > "$work/log" 2>&1; then
    result="killed" by="(does not build)"
  else
    for regex in ${tests:+"$tests"} "$suite"; do
      [ "$quick" = 1 ] && [ "$regex" = "$suite" ] && [ -n "$tests" ] && break
      if ! run ctest --test-dir "$tree" -j "$jobs" -R "$regex" -E "$exclude" --stop-on-failure \
          --timeout 600 > "$work/log" 2>&1; then
        result="killed"
        by=$(grep -E '\*\*\*Failed|\(Failed\)|Exception|Timeout|SEGFAULT|Not Run' "$work/log" |
               head -1 | sed -E 's/^ *[0-9]+\/[0-9]+ Test +#[0-9]+: //; s/ \.\.\.+.*//; s/ +/ /g')
        break
      fi
    done
    [ -z "$result" ] && result="survived"
  fi
  restore
  secs=$(( $(date +%s) - start ))
  total=$((total + 1))
  if [ "$result" = "survived" ] && [ -n "$equiv" ]; then
    result="equivalent" by="$equiv"
    equivalent=$((equivalent + 1))
  elif [ "$result" = "survived" ]; then
    survived=$((survived + 1))
    survivors="$survivors $id"
    by="$note"
  else
    killed=$((killed + 1))
  fi
  printf '%-22s %-30s %-10s %6s  %s\n' "$id" "$file" "$result" "$secs" "${by:0:90}"
done < "$work/records"

# Restored files have new time stamps: rebuild so that the trees match the source again.
[ "$need_cpu" = 1 ] && cmake --build "$root/build" -j "$jobs" --target minidl_tests > /dev/null 2>&1
[ "$need_sim" = 1 ] && cmake --build "$root/build-sim" -j "$jobs" --target minidl_cuda_tests \
  minidl_cuda_race_tests > /dev/null 2>&1

counted=$((killed + survived))
rate=$(awk -v k="$killed" -v c="$counted" 'BEGIN { printf "%.1f", c ? 100 * k / c : 0 }')
echo
echo "mutation-check: $total mutants run, $killed killed, $survived survived, $equivalent" \
     "equivalent (explained in the catalogue), $errors not applicable; kill rate $rate%" \
     "($killed of $counted non-equivalent)"
[ -n "$survivors" ] && echo "survivors:$survivors"
[ "$survived" -eq 0 ] && [ "$errors" -eq 0 ]
