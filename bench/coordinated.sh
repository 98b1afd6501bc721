#!/usr/bin/env bash
# Coordinated training of a new module against joint training (issue 16):
# a robot's new sensor, touch (examples/custom-modality), joins a trained
# vision-language-audio pipeline.
#
#   joint        the four modules trained together for EPOCHS; its time is
#                the command's wall time
#   coordinated  the three trained together for EPOCHS first (they exist
#                already in the story: not timed), then touch alone against
#                them, frozen (serket train --freeze), for CEPOCHS; its time
#                is that second command's
#
# Both are measured by one evaluator (serket bench quality with the
# four-module pipeline): touch's coherence to and from every module. The
# frozen checkpoints' SHA-256 before and after the coordinated run are
# compared. Not part of the tests: about SEEDS × (EPOCHS × 4 + CEPOCHS × 2)
# minutes on 2 cores.
#
#   bench/coordinated.sh                  # EPOCHS=3 CEPOCHS=1 SEEDS="1 2"
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${EPOCHS:-3}
CEPOCHS=${CEPOCHS:-1}
SEEDS=${SEEDS:-1 2}
LR=${LR:-0.001}
LAMBDA=${LAMBDA:-language=50,touch=10}
OUT=${OUT:-out/bench-coordinated}
export PATH="$PATH:/usr/local/go/bin"

make -s build
go build -o bin/touch ./examples/custom-modality
bin/serket data prepare >/dev/null
[ -f data/fmnist3/touch.dat ] || bin/touch prepare >/dev/null
mkdir -p "$OUT"
log() { echo "== $(date +%H:%M:%S) $*" >&2; }
touch_bin=$(pwd)/bin/touch

# pipeline SEED MODULES… writes a pipeline file of those modules and
# prints its path.
pipeline() {
  local seed=$1 f="$OUT/pipeline-seed$1-$(($# - 1)).yaml"
  shift
  echo "modules:" >"$f"
  for m in "$@"; do
    if [ "$m" = touch ]; then
      echo "  - {name: touch, command: [$touch_bin], args: [--lr, \"$LR\", --seed, \"$seed\"]}" >>"$f"
    else
      echo "  - {name: $m, args: [--lr, \"$LR\", --seed, \"$seed\"]}" >>"$f"
    fi
  done
  echo "$f"
}

# timed FILE ARGS… runs serket train and prints its wall time in seconds.
timed() {
  local start end
  start=$(date +%s.%N)
  bin/serket train "$@" --plan cross --lambda "$LAMBDA" --log-level warn >&2
  end=$(date +%s.%N)
  awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f\n", b - a }'
}

runs=()
: >"$OUT/times.txt"
for seed in $SEEDS; do
  four=$(pipeline "$seed" vision language audio touch)
  three=$(pipeline "$seed" vision language audio)
  joint="$OUT/joint-seed$seed" coord="$OUT/coordinated-seed$seed"
  rm -rf "$joint" "$coord"
  log "joint: the four for $EPOCHS epochs (seed $seed)"
  tj=$(timed "$four" --epochs "$EPOCHS" --seed "$seed" --checkpoint-dir "$joint")
  log "the three for $EPOCHS epochs (seed $seed)"
  timed "$three" --epochs "$EPOCHS" --seed "$seed" --checkpoint-dir "$coord" >/dev/null
  before=$(cd "$coord" && sha256sum vision.ckpt language.ckpt audio.ckpt)
  log "coordinated: touch alone against the frozen three for $CEPOCHS epochs (seed $seed)"
  tc=$(timed "$four" --epochs "$CEPOCHS" --seed "$seed" --checkpoint-dir "$coord" --freeze vision,language,audio)
  after=$(cd "$coord" && sha256sum vision.ckpt language.ckpt audio.ckpt)
  same=no
  [ "$before" = "$after" ] && same=yes
  echo "seed $seed: joint $tj s, coordinated $tc s, ratio $(awk -v a="$tc" -v b="$tj" 'BEGIN { printf "%.3f", a / b }'), frozen checkpoints byte-identical: $same" | tee -a "$OUT/times.txt"
  runs+=("joint-seed$seed=$joint" "coordinated-seed$seed=$coord")
done

log "measuring"
{
  echo "serket bench coordinated — $(date -u +%Y-%m-%d), $(git rev-parse --short HEAD)"
  echo "settings: joint $EPOCHS epochs of four; coordinated touch $CEPOCHS epochs against the three trained $EPOCHS; lambda $LAMBDA, lr $LR, batch 100, cross plan, seeds $SEEDS"
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
  cat "$OUT/times.txt"
  echo
  bin/serket bench quality -f "$(pipeline 1 vision language audio touch)" --save "$OUT/results.jsonl" "${runs[@]}" 2>/dev/null
} | tee "$OUT/report.txt"
