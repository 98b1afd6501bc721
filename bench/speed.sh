#!/usr/bin/env bash
# Training throughput, measured side by side in one run on this machine:
# serket (three module processes and the integrator, talking over NATS) with
# OpenBLAS (its processes pinned to CPUs by package placement, as `serket
# train` does by default, and not: serket-openblas-unpinned) and with pure
# Go, and the PyTorch reference of the same model (bench/torch_mvae.py) in
# each configuration worth trying on two cores:
#
#   pytorch-1-thread          one process, 1 torch thread, 1 OpenBLAS thread
#   pytorch-1-thread-2-blas   one process, 1 torch thread, 2 OpenBLAS threads
#                             (what the reference's "1 thread" ran before:
#                             Debian's torch leaves OpenBLAS's threads alone)
#   pytorch-2-threads         one process, 2 torch threads, 2 OpenBLAS threads
#   pytorch-3-procs           one process per modality and the fusion in a
#                             fourth, as serket runs (1 thread each)
#   pytorch-3-procs-pinned    the same, each module process pinned to a CPU
#                             as serket's placement pins serket's (by flops:
#                             audio alone, vision and language together)
#   pytorch-3-procs-per-term  the same, each term decoded on its own as
#                             serket's modules do (the others decode all of
#                             a modality's terms in one batch)
#
# Both sides time the same thing: one epoch of the first ITEMS training
# items in a shuffled order, batch 100, each step loading its rows from
# data in memory (serket's modules from their shards, the reference from
# `serket bench export`'s arrays), from the first step to the last, with
# neither warm-up nor checkpoints nor evaluation inside (serket's
# samples_per_sec of the epoch in its metrics log; --checkpoint-every 0
# --checkpoint-interval 0 keeps its by-the-minute checkpoint out).
#
# The systems run in ROUNDS rounds, each running every system once in the
# order above, then the SGEMM ceiling (bench/sgemm.py): a system's figure
# is its median and range over the rounds, and its ratio to the best
# PyTorch configuration (the one of highest median) both as the ratio of
# medians and as the range of the ratios within a round. Before any of it,
# torch_mvae.py --check makes sure every mode of the reference trains
# exactly as the plain one-process step does. Not part of the tests: the
# machine is shared and noisy, so compare the ratios, and rerun.
#
# Both sides multiply matrices with the same OpenBLAS (Debian's torch links
# it too), under whatever OPENBLAS_CORETYPE the environment sets. Some
# machines set it (this project's sets Haswell, with OPENBLAS_L2_SIZE,
# because older OpenBLAS builds miscompute on its processor); BLAS=auto
# unsets both for every system of the run, so that OpenBLAS picks its
# kernels by itself (an AVX-512 one where the processor has it). The
# report's first line names the kernel that ran. Run the tests under the
# same setting before you trust its figures: `env -u OPENBLAS_CORETYPE -u
# OPENBLAS_L2_SIZE go test -tags openblas ./nn/... ./cmd/serket`.
#
#   bench/speed.sh                       # ITEMS=10000 ROUNDS=3: about 13 minutes on 2 cores
#   ITEMS=2000 ROUNDS=1 bench/speed.sh   # a quick look
#   BLAS=auto bench/speed.sh             # OpenBLAS's own choice of kernel
#   ITEMS=30000 SYSTEMS="serket-openblas pytorch-2-threads pytorch-3-procs-pinned" bench/speed.sh
#                                        # longer epochs, some systems only
#
# The runs' JSON lines and the report stay in OUT (default out/bench-speed).
set -euo pipefail
cd "$(dirname "$0")/.."
ITEMS=${ITEMS:-10000}
ROUNDS=${ROUNDS:-3}
OUT=${OUT:-out/bench-speed}
PY=${PY:-/usr/bin/python3}
case ${BLAS:-env} in
env) ;;
auto) unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE ;;
*) echo "bench: BLAS=$BLAS: want env (the environment's OPENBLAS_CORETYPE, the default) or auto" >&2; exit 2 ;;
esac
export PATH="$PATH:/usr/local/go/bin"
log() { echo "== $(date +%H:%M:%S) $*" >&2; }

"$PY" -c 'import torch, numpy' 2>/dev/null || { echo "bench: PyTorch missing: apt-get install python3-torch" >&2; exit 1; }
go build -tags openblas -o bin/serket ./cmd/serket
go build -o bin/serket-purego ./cmd/serket
bin/serket data prepare >/dev/null
mkdir -p "$OUT"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
log "export of the first $ITEMS items for the reference"
bin/serket bench export --out "$tmp/export" --limit "$ITEMS" --fractions 1 --log-level warn
log "the reference's check: every mode trains as the plain step"
"$PY" bench/torch_mvae.py --check --data "$tmp/export" --items "$ITEMS" 2>"$tmp/check.log" >"$OUT/check.json" || {
  cat "$tmp/check.log" "$OUT/check.json" >&2
  echo "bench: a faster mode of torch_mvae.py does not compute what its plain step does" >&2
  exit 1
}
"$PY" bench/torch_mvae.py --flops >"$OUT/flops.json"

results=$OUT/results.jsonl
: >"$results"
record() { # system round < one JSON line
  local line
  line=$(tail -n 1)
  printf '{"system":"%s","round":%d,"result":%s}\n' "$1" "$2" "$line" >>"$results"
}
chosen() { # system: whether SYSTEMS (default: all) names it
  [ -z "${SYSTEMS:-}" ] || [[ " $SYSTEMS " == *" $1 "* ]]
}
serket() { # system binary round [train flags…]
  local name=$1 bin=$2 round=$3
  shift 3
  chosen "$name" || return 0
  log "round $round: $name"
  "$bin" train --limit "$ITEMS" --epochs 1 --eval-items 0 --checkpoint-every 0 --checkpoint-interval 0 \
    --checkpoint-dir "$tmp/run" --log-level warn "$@" >/dev/null
  record "$name" "$round" <"$tmp/run/metrics.jsonl"
  rm -rf "$tmp/run"
}
torch() { # system round flags…
  local name=$1 round=$2
  shift 2
  chosen "$name" || return 0
  log "round $round: $name"
  "$PY" bench/torch_mvae.py --data "$tmp/export" --items "$ITEMS" "$@" | record "$name" "$round"
}
blas_core() { # the kernel OpenBLAS picks here, as it says when asked to
  OPENBLAS_VERBOSE=2 "$PY" -c 'import numpy; numpy.ones((64, 64), numpy.float32) @ numpy.ones((64, 64), numpy.float32)' 2>&1 |
    sed -n 's/^Core: //p' | head -n 1
}
{
  echo "# training throughput, $(date -u '+%Y-%m-%d %H:%M UTC'), $(git describe --always --dirty), ITEMS=$ITEMS ROUNDS=$ROUNDS${SYSTEMS:+ SYSTEMS=\"$SYSTEMS\"}, $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
  echo "# OpenBLAS kernel: $(blas_core) (OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE-unset}, OPENBLAS_L2_SIZE=${OPENBLAS_L2_SIZE-unset})"
  echo "# load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$tmp/head.txt"
for r in $(seq "$ROUNDS"); do
  serket serket-openblas bin/serket "$r"
  serket serket-openblas-unpinned bin/serket "$r" --pin-cpus=false
  serket serket-purego bin/serket-purego "$r"
  torch pytorch-1-thread "$r" --threads 1
  torch pytorch-1-thread-2-blas "$r" --threads 1 --blas-threads 2
  torch pytorch-2-threads "$r" --threads 2
  torch pytorch-3-procs "$r" --procs 3
  torch pytorch-3-procs-pinned "$r" --procs 3 --pin
  torch pytorch-3-procs-per-term "$r" --procs 3 --per-term
  log "round $r: SGEMM ceiling"
  "$PY" bench/sgemm.py --threads 2 | record sgemm "$r"
done
{
  cat "$tmp/head.txt"
  echo "# load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  "$PY" bench/speed_report.py "$results" "$OUT/flops.json" "$OUT/check.json"
} | tee "$OUT/report.txt"
