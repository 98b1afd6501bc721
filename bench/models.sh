#!/usr/bin/env bash
# The aggregations side by side (issue 16): each of poe, moe and mopoe
# trained by `serket train` (three module processes and the integrator,
# over NATS) on the same Fashion-MNIST-3 items for the same epochs, for
# every seed, then measured by one evaluator (`serket bench quality`,
# which fuses each run as it was trained). Each aggregation trains with the
# plan its paper uses: poe the cross plan (serket's best PoE, see
# docs/training.md), moe and mopoe the joint plan's strata (MMVAE, MoPoE).
# Not part of the tests: about EPOCHS × (1 + 1 + 2) minutes per seed.
#
#   bench/models.sh                       # EPOCHS=3 SEEDS="1 2"
#   EPOCHS=5 SEEDS="1 2 3" bench/models.sh
#
# Everything lands in OUT (default out/bench-models): each run's
# checkpoints and metrics, results.jsonl and report.txt (the table, the
# settings and the machine).
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${EPOCHS:-3}
SEEDS=${SEEDS:-1 2}
LAMBDA=${LAMBDA:-language=50}
LR=${LR:-0.001}
LIMIT=${LIMIT:-0}
OUT=${OUT:-out/bench-models}
MODELS=${MODELS:-poe:cross moe:joint mopoe:joint}
export PATH="$PATH:/usr/local/go/bin"

make -s build
bin/serket data prepare >/dev/null
mkdir -p "$OUT"
limit=()
[ "$LIMIT" -gt 0 ] && limit=(--limit "$LIMIT")
log() { echo "== $(date +%H:%M:%S) $*" >&2; }

runs=()
for seed in $SEEDS; do
  f="$OUT/pipeline-seed$seed.yaml"
  cat > "$f" <<YAML
modules:
  - {name: vision, args: [--lr, "$LR", --seed, "$seed"]}
  - {name: language, args: [--lr, "$LR", --seed, "$seed"]}
  - {name: audio, args: [--lr, "$LR", --seed, "$seed"]}
YAML
  for m in $MODELS; do
    agg=${m%%:*} plan=${m##*:}
    dir="$OUT/$agg-seed$seed"
    rm -rf "$dir"
    log "serket train --aggregation $agg --plan $plan --epochs $EPOCHS --seed $seed → $dir"
    bin/serket train "$f" --aggregation "$agg" --plan "$plan" --epochs "$EPOCHS" --lambda "$LAMBDA" "${limit[@]}" \
      --seed "$seed" --checkpoint-dir "$dir" --log-level warn
    runs+=("$agg-seed$seed=$dir")
  done
done

log "measuring"
{
  echo "serket bench models — $(date -u +%Y-%m-%d), $(git rev-parse --short HEAD)"
  echo "settings: epochs $EPOCHS, lambda $LAMBDA, lr $LR, batch 100, models $MODELS, seeds $SEEDS$( [ "$LIMIT" -gt 0 ] && echo ", first $LIMIT training items")"
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  bin/serket bench quality --save "$OUT/results.jsonl" "${runs[@]}" 2>/dev/null
} | tee "$OUT/report.txt"
