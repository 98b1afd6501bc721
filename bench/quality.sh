#!/usr/bin/env bash
# Model quality, side by side in one run on this machine: serket (three
# module processes and the integrator, talking over NATS) and the PyTorch
# reference of the same networks and objective (bench/torch_quality.py),
# trained on the same Fashion-MNIST-3 items for the same epochs with the same
# settings, then measured by the same code (`serket bench quality`: the
# reference's weights are imported as checkpoints). Then serket again with
# only part of the training items paired (the rest have one modality each).
# Not part of the tests: it takes about EPOCHS × 9 minutes.
#
# The plan is cross by default: the MVAE plan (serket train's default, the
# paper's) scores each single-modality term on that modality only, so one
# modality learns to predict another slowly (after 3 epochs, 2026-11-25:
# an image named its class 0.50 of the time with mvae, 0.86 with cross, at
# the same test ELBO).
#
#   bench/quality.sh                  # EPOCHS=5 PLAN=cross FRACTIONS="0.1 0.01" SEEDS=1
#   SEEDS="1 2 3" FRACTIONS= bench/quality.sh   # both systems over three seeds (docs/training.md's table; about 1.5 h)
#   KEEP=1 SEEDS="1 2 3" FRACTIONS= bench/quality.sh   # the same, training only the runs OUT lacks
#   EPOCHS=1 FRACTIONS= bench/quality.sh   # a quick look
#
# Everything lands in OUT (default out/bench-quality): each run's checkpoints
# and metrics, results.jsonl, and report.txt (the table, the settings and the
# machine).
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${EPOCHS:-5}
PLAN=${PLAN:-cross}
LAMBDA=${LAMBDA:-language=50}
LR=${LR:-0.001}
FRACTIONS=${FRACTIONS-0.1 0.01}
SEEDS=${SEEDS:-1}
LIMIT=${LIMIT:-0}
OUT=${OUT:-out/bench-quality}
PY=${PY:-/usr/bin/python3}
export PATH="$PATH:/usr/local/go/bin"

"$PY" -c 'import torch, numpy' 2>/dev/null || { echo "bench: PyTorch missing: apt-get install python3-torch" >&2; exit 1; }
make -s build
bin/serket data prepare >/dev/null
mkdir -p "$OUT"
settings=(--epochs "$EPOCHS" --plan "$PLAN" --lambda "$LAMBDA")
limit=()
[ "$LIMIT" -gt 0 ] && limit=(--limit "$LIMIT")
log() { echo "== $(date +%H:%M:%S) $*" >&2; }

pipeline() { # seed → a pipeline file whose modules use LR and initialise from the seed
  local f="$OUT/pipeline-seed$1.yaml"
  cat > "$f" <<YAML
modules:
  - {name: vision, args: [--lr, "$LR", --seed, "$1"]}
  - {name: language, args: [--lr, "$LR", --seed, "$1"]}
  - {name: audio, args: [--lr, "$LR", --seed, "$1"]}
YAML
  echo "$f"
}

# KEEP=1 keeps a run already trained to EPOCHS in OUT (a serket run whose
# metrics have every epoch, a reference run imported as checkpoints), so
# that a bench cut short, or one given another seed, trains only what is
# missing. Keep only runs of the tree you measure.
done_serket() { [ "${KEEP:-0}" = 1 ] && [ -f "$1/metrics.jsonl" ] && [ "$(wc -l <"$1/metrics.jsonl")" -ge "$EPOCHS" ]; }
done_torch() { [ "${KEEP:-0}" = 1 ] && [ -f "$1/vision.ckpt" ] && [ -f "$1/language.ckpt" ] && [ -f "$1/audio.ckpt" ]; }

train_serket() { # dir seed [train flags…]
  local dir=$1 seed=$2; shift 2
  if done_serket "$dir"; then
    log "keeping $dir (KEEP=1)"
    return
  fi
  rm -rf "$dir"
  log "serket train ${settings[*]} --seed $seed $* → $dir"
  bin/serket train "$(pipeline "$seed")" "${settings[@]}" "${limit[@]}" --seed "$seed" --checkpoint-dir "$dir" --log-level warn "$@"
}

suffix() { [ "$1" = 1 ] || echo "-seed$1"; }

log "export for the reference"
fractions=${FRACTIONS// /,}
bin/serket bench export --out "$OUT/export" --fractions "${fractions:-1}" "${limit[@]}" --log-level warn

runs=()
for seed in $SEEDS; do
  sfx=$(suffix "$seed")
  train_serket "$OUT/serket$sfx" "$seed"
  if done_torch "$OUT/pytorch$sfx"; then
    log "keeping $OUT/pytorch$sfx (KEEP=1)"
  else
    log "PyTorch reference ${settings[*]} --seed $seed"
    OMP_WAIT_POLICY=PASSIVE "$PY" bench/torch_quality.py --data "$OUT/export" "${settings[@]}" --lr "$LR" --seed "$seed" \
      "${limit[@]}" --out "$OUT/pytorch$sfx-weights" > "$OUT/pytorch$sfx.json"
    bin/serket bench import --from "$OUT/pytorch$sfx-weights" --out "$OUT/pytorch$sfx" >/dev/null
  fi
  runs+=("serket$sfx=$OUT/serket$sfx" "pytorch$sfx=$OUT/pytorch$sfx")
done

first=${SEEDS%% *}
for f in $FRACTIONS; do
  train_serket "$OUT/serket-paired-$f" "$first" --paired-fraction "$f"
  runs+=("serket-$f-paired=$OUT/serket-paired-$f")
done

log "measuring"
{
  echo "serket bench quality — $(date -u +%Y-%m-%d), $(git rev-parse --short HEAD)"
  echo "settings: epochs $EPOCHS, plan $PLAN, lambda $LAMBDA, lr $LR, batch 100, KL annealed over 1 epoch, seeds $SEEDS$( [ "$LIMIT" -gt 0 ] && echo ", first $LIMIT training items")"
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  bin/serket bench quality --save "$OUT/results.jsonl" "${runs[@]}" 2>/dev/null
  echo
  echo "each system over its seeds (bench/quality_summary.py):"
  "$PY" bench/quality_summary.py "$OUT/results.jsonl"
} | tee "$OUT/report.txt"
