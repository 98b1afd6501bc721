#!/usr/bin/env bash
# A module in Python against the same module in Go (issue 19): vision,
# language and the touch sensor of examples/custom-modality trained by
# serket train, the touch module being, by SYSTEM,
#
#   go      examples/custom-modality (bin/touch)
#   numpy   examples/python-touch/touch.py behind serket module exec
#   torch   examples/python-touch/touch_torch.py, PyTorch (python3-torch)
#
# every one named touch, with the same networks, data and seeds. Each
# system's runs are measured by one evaluator (serket bench quality with
# that system's pipeline; the judges are shared): every coherence between
# the three and the test ELBO, and each run's training wall time. Not part
# of the tests: about EPOCHS × 1 minute per run on 2 cores at LIMIT=10000.
#
#   bench/foreign.sh                          # SYSTEMS="go numpy torch" SEEDS="1 2 3" EPOCHS=3 LIMIT=10000
#   SYSTEMS="go numpy" SEEDS=1 bench/foreign.sh
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${EPOCHS:-3}
SEEDS=${SEEDS:-1 2 3}
SYSTEMS=${SYSTEMS:-go numpy torch}
LIMIT=${LIMIT:-10000}
LAMBDA=${LAMBDA:-language=50,touch=10}
OUT=${OUT:-out/bench-foreign}
export PATH="$PATH:/usr/local/go/bin"

make -s build
# The Go touch module with the BLAS the serket binary has, as make builds it.
tags=$(pkg-config --exists openblas 2>/dev/null && echo -tags=openblas || true)
go build $tags -o bin/touch ./examples/custom-modality
bin/serket data prepare >/dev/null
[ -f data/fmnist3/touch.dat ] || bin/touch prepare >/dev/null
mkdir -p "$OUT"
log() { echo "== $(date +%H:%M:%S) $*" >&2; }
limit=()
[ "$LIMIT" -gt 0 ] && limit=(--limit "$LIMIT")
py=$(for p in python3 /usr/bin/python3; do $p -c 'import numpy, msgpack' 2>/dev/null && { echo $p; break; }; done)
root=$(pwd)

# module SYSTEM SEED prints the pipeline line of the touch module.
module() {
  case $1 in
  go) echo "  - {name: touch, command: [$root/bin/touch], args: [--seed, \"$2\"]}" ;;
  numpy) echo "  - {name: touch, exec: [$py, $root/examples/python-touch/touch.py, --seed, \"$2\"]}" ;;
  torch) echo "  - {name: touch, exec: [$py, $root/examples/python-touch/touch_torch.py, --seed, \"$2\"]}" ;;
  *) echo "bench: unknown system $1 (want go, numpy or torch)" >&2; exit 2 ;;
  esac
}

# pipeline SYSTEM SEED writes the pipeline file of a run and prints its path.
pipeline() {
  local f="$OUT/pipeline-$1-seed$2.yaml"
  {
    echo "modules:"
    echo "  - {name: vision, args: [--seed, \"$2\"]}"
    echo "  - {name: language, args: [--seed, \"$2\"]}"
    module "$1" "$2"
  } >"$f"
  echo "$f"
}

: >"$OUT/times.txt"
for seed in $SEEDS; do
  for sys in $SYSTEMS; do
    dir="$OUT/$sys-seed$seed"
    rm -rf "$dir"
    log "$sys, seed $seed → $dir"
    start=$(date +%s.%N)
    bin/serket train "$(pipeline "$sys" "$seed")" --plan cross --lambda "$LAMBDA" --epochs "$EPOCHS" "${limit[@]}" \
      --seed "$seed" --checkpoint-dir "$dir" --log-level warn
    end=$(date +%s.%N)
    echo "$sys-seed$seed $(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }') s" | tee -a "$OUT/times.txt"
  done
done

log "measuring"
{
  echo "serket bench foreign — $(date -u +%Y-%m-%d), $(git rev-parse --short HEAD)"
  echo "settings: epochs $EPOCHS, plan cross, lambda $LAMBDA, batch 100, systems $SYSTEMS, seeds $SEEDS$( [ "$LIMIT" -gt 0 ] && echo ", first $LIMIT training items")"
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
  for sys in $SYSTEMS; do
    runs=()
    for seed in $SEEDS; do runs+=("$sys-seed$seed=$OUT/$sys-seed$seed"); done
    echo
    bin/serket bench quality -f "$(pipeline "$sys" 1)" --save "$OUT/results-$sys.jsonl" "${runs[@]}" 2>/dev/null
  done
  echo
  echo "training wall time:"
  sed 's/^/  /' "$OUT/times.txt"
  echo "test ELBO (nats per item, the integrator's after the last epoch):"
  for sys in $SYSTEMS; do
    for seed in $SEEDS; do
      printf '  %-16s %s\n' "$sys-seed$seed" "$(tail -1 "$OUT/$sys-seed$seed/metrics.jsonl" | sed -E 's/.*"test_elbo":([-0-9.]+).*/\1/')"
    done
  done
} | tee "$OUT/report.txt"
