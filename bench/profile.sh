#!/usr/bin/env bash
# Where a training run's CPU time goes, by CPU and by process: it trains as
# bench/speed.sh does (one epoch of ITEMS items, no checkpoints, no
# evaluation), samples every CPU with perf for WINDOW seconds once WARMUP
# seconds have passed (past the start and the first placement), and prints
# each CPU's share by process (each module by name, the integrator, idle)
# and each process's busiest functions (bench/profile_report.py), with the
# run's samples/s. Not part of the tests; the figures move with the load.
#
#   bench/profile.sh                         # ITEMS=30000 WARMUP=10 WINDOW=8: about 35 s
#   BLAS=auto bench/profile.sh               # under OpenBLAS's own kernel (see bench/speed.sh)
#
# Needs perf (apt-get install linux-perf) and the right to sample every
# CPU (root, or kernel.perf_event_paranoid ≤ 0).
set -euo pipefail
cd "$(dirname "$0")/.."
ITEMS=${ITEMS:-30000}
WARMUP=${WARMUP:-10}
WINDOW=${WINDOW:-8}
PY=${PY:-/usr/bin/python3}
export PATH="$PATH:/usr/local/go/bin"
case ${BLAS:-env} in
env) ;;
auto) unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE ;;
*) echo "bench: BLAS=$BLAS: want env or auto" >&2; exit 2 ;;
esac
command -v perf >/dev/null || { echo "bench: perf missing: apt-get install linux-perf" >&2; exit 1; }
go build -tags openblas -o bin/serket ./cmd/serket
bin/serket data prepare >/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bin/serket train --limit "$ITEMS" --epochs 1 --eval-items 0 --checkpoint-every 0 --checkpoint-interval 0 \
  --checkpoint-dir "$tmp/run" --log-level warn >/dev/null 2>"$tmp/train.log" &
train=$!
sleep "$WARMUP" # the window starts after it: what is measured is the steady state
{
  echo "$train integrator"
  ps -eo pid=,args= | awk '$3 == "module" && $2 ~ /serket$/ {print $1, $4}'
} >"$tmp/procs"
perf record -F 999 -a -o "$tmp/perf.data" -- sleep "$WINDOW" 2>/dev/null
wait "$train" || { cat "$tmp/train.log" >&2; exit 1; }
echo "# where the CPU time goes, $(date -u '+%Y-%m-%d %H:%M UTC'), $(git describe --always --dirty), ITEMS=$ITEMS, ${WINDOW} s from ${WARMUP} s in, $(nproc) CPUs, OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE-unset}"
"$PY" -c 'import json, sys; print("# the run: %.0f samples/s" % json.loads(open(sys.argv[1]).read().splitlines()[-1])["samples_per_sec"])' "$tmp/run/metrics.jsonl"
echo
perf script -i "$tmp/perf.data" -F pid,cpu,ip,sym -G 2>/dev/null | "$PY" bench/profile_report.py "$tmp/procs"
