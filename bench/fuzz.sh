#!/usr/bin/env bash
# Every Go fuzz target of the module, found by `go test -list '^Fuzz'`, run
# for FUZZTIME each (go test -fuzz takes one target at a time), then a table:
# package, target, executions, new interesting inputs, and ok or CRASH with
# the failing input the fuzzer wrote under the package's testdata/fuzz
# (`go test` then runs it as a seed until the bug is fixed). All targets
# run; the script exits 1 if any crashed or failed. Each target's output is
# kept in out/fuzz/.
#
#   bench/fuzz.sh                            # FUZZTIME=10s each
#   FUZZTIME=2m bench/fuzz.sh ./launch ./record  # some packages, longer
set -uo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-10s}
# The fuzzer minimizes each new interesting input (and a crasher) for up to
# this long, 60 s by default, counting no executions meanwhile: bounded, a
# target's run stays near FUZZTIME and its executions mean something.
FUZZMINIMIZETIME=${FUZZMINIMIZETIME:-1s}
pkgs=("$@")
[ ${#pkgs[@]} -gt 0 ] || pkgs=(./...)
logs=out/fuzz
mkdir -p "$logs"
trap 'echo "fuzz: interrupted" >&2; exit 130' INT TERM

# go test -list prints a package's matching names, then its "ok" line.
targets=() broken=() names=()
while IFS= read -r line; do
  case $line in
  Fuzz*) names+=("$line") ;;
  "ok "*)
    pkg=$(awk '{print $2}' <<<"$line")
    for t in ${names[@]+"${names[@]}"}; do targets+=("$pkg $t"); done
    names=()
    ;;
  "FAIL"*[a-z]*/*) broken+=("$(awk '{print $2}' <<<"$line")"); names=() ;;
  esac
done < <("$GO" test -list '^Fuzz' "${pkgs[@]}" 2>&1)
if [ ${#targets[@]} -eq 0 ] && [ ${#broken[@]} -eq 0 ]; then
  echo "fuzz: no fuzz targets in ${pkgs[*]}" >&2
  exit 1
fi

module=$("$GO" list -m)
rows=() failed=0
for entry in ${targets[@]+"${targets[@]}"}; do
  read -r pkg t <<<"$entry"
  short=${pkg#"$module"/}
  log="$logs/${short//\//_}.$t.log"
  echo "fuzz: $short $t ($FUZZTIME)"
  "$GO" test "$pkg" -run '^$' -fuzz "^$t\$" -fuzztime "$FUZZTIME" -fuzzminimizetime "$FUZZMINIMIZETIME" >"$log" 2>&1
  rc=$?
  execs=$(grep -o 'execs: [0-9]*' "$log" | tail -n 1 | awk '{print $2}')
  newin=$(grep -o 'new interesting: [0-9]*' "$log" | tail -n 1 | awk '{print $3}')
  result=ok
  crash=$(grep -o 'Failing input written to [^ ]*' "$log" | tail -n 1 | awk '{print $5}')
  stored=$(grep -o 'failure while testing seed corpus entry: [^ ]*' "$log" | tail -n 1 | awk '{print $7}')
  if [ $rc -ne 0 ] && [ -z "$crash" ] && [ -z "$stored" ] &&
    [ "$(sed -n '/^--- FAIL/,/^FAIL$/p' "$log" | sed -n 2p)" = "    context deadline exceeded" ]; then
    # Go before 1.27 may fail a target this way as -fuzztime runs out
    # (go.dev/issue/75804): no input failed, so it is no crash.
    result="ok (Go's fuzztime race, go.dev/issue/75804)"
  elif [ $rc -ne 0 ]; then
    failed=1
    if [ -n "$crash" ]; then
      result="CRASH $short/$crash"
    elif [ -n "$stored" ]; then
      result="CRASH $short/testdata/fuzz/$stored (a stored input)"
    elif grep -q '\[build failed\]' "$log"; then
      result="FAIL (does not build; see $log)"
    else
      result="FAIL (exit $rc; see $log)"
    fi
    if grep -q '^--- FAIL' "$log"; then sed -n '/^--- FAIL/,$p' "$log"; else cat "$log"; fi | head -n 30
  elif [ -z "$execs" ]; then
    # FUZZTIME ran out while the corpus (seeds, testdata/fuzz and the
    # cache's inputs) was still being replayed.
    result="ok (replayed $(grep -o 'baseline coverage: [0-9/]*' "$log" | tail -n 1 | awk '{print $3}') corpus inputs; no new ones tried)"
  fi
  rows+=("$short|$t|${execs:--}|${newin:--}|$result")
done
for pkg in ${broken[@]+"${broken[@]}"}; do
  failed=1
  rows+=("${pkg#"$module"/}|?|-|-|FAIL (does not build; its targets did not run)")
done

echo
printf '%-20s %-20s %12s %8s  %s\n' package target executions new result
for row in "${rows[@]}"; do
  IFS='|' read -r p t e n r <<<"$row"
  printf '%-20s %-20s %12s %8s  %s\n' "$p" "$t" "$e" "$n" "$r"
done
exit $failed
