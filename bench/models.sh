#!/usr/bin/env bash
# The aggregations side by side (issue 16): each of poe, moe, mopoe and
# gpoe, with and without private latents, trained by `serket train` (three
# module processes and the integrator, over NATS) on the same
# Fashion-MNIST-3 items for the same epochs, for every seed, then measured
# by one evaluator (`serket bench quality`, which fuses each run as it was
# trained). Each aggregation trains with the plan its paper uses: poe and
# gpoe the cross plan (serket's best PoE, see docs/training.md), moe and
# mopoe the joint plan's strata (MMVAE, MoPoE). A model AGG:PLAN:P gives
# every module a private latent of P (--private P; MMVAE+'s design with
# moe).
# Not part of the tests: about EPOCHS × (1 + 1 + 2) minutes per seed.
#
#   bench/models.sh                       # EPOCHS=3 SEEDS="1 2"
#   EPOCHS=5 SEEDS="1 2 3" bench/models.sh
#   MODELS="poe:cross poe:cross:8" bench/models.sh
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
MODELS=${MODELS:-poe:cross moe:joint mopoe:joint gpoe:cross poe:cross:8 moe:joint:8}
export PATH="$PATH:/usr/local/go/bin"

make -s build
bin/serket data prepare >/dev/null
mkdir -p "$OUT"
limit=()
[ "$LIMIT" -gt 0 ] && limit=(--limit "$LIMIT")
log() { echo "== $(date +%H:%M:%S) $*" >&2; }

# pipeline SEED PRIVATE writes the pipeline file of a seed's runs, whose
# modules keep a private latent of PRIVATE (0: none), and prints its path.
pipeline() {
  local f="$OUT/pipeline-seed$1-private$2.yaml" extra=""
  [ "$2" -gt 0 ] && extra=", --private, \"$2\""
  cat > "$f" <<YAML
modules:
  - {name: vision, args: [--lr, "$LR", --seed, "$1"$extra]}
  - {name: language, args: [--lr, "$LR", --seed, "$1"$extra]}
  - {name: audio, args: [--lr, "$LR", --seed, "$1"$extra]}
YAML
  echo "$f"
}

declare -A runs # by private latent size, the runs "NAME=DIR" it measures
for seed in $SEEDS; do
  for m in $MODELS; do
    IFS=: read -r agg plan private <<<"$m"
    private=${private:-0}
    name=$agg
    [ "$private" -gt 0 ] && name=$agg+private$private
    dir="$OUT/$name-seed$seed"
    f=$(pipeline "$seed" "$private")
    rm -rf "$dir"
    log "serket train --aggregation $agg --plan $plan (private $private) --epochs $EPOCHS --seed $seed → $dir"
    bin/serket train "$f" --aggregation "$agg" --plan "$plan" --epochs "$EPOCHS" --lambda "$LAMBDA" "${limit[@]}" \
      --seed "$seed" --checkpoint-dir "$dir" --log-level warn
    runs[$private]+=" $name-seed$seed=$dir"
  done
done

log "measuring"
{
  echo "serket bench models — $(date -u +%Y-%m-%d), $(git rev-parse --short HEAD)"
  echo "settings: epochs $EPOCHS, lambda $LAMBDA, lr $LR, batch 100, models $MODELS, seeds $SEEDS$( [ "$LIMIT" -gt 0 ] && echo ", first $LIMIT training items")"
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
  rm -f "$OUT/results.jsonl"
  for private in "${!runs[@]}"; do
    # The modules that serve a run are started as it was trained.
    echo
    echo "private latent $private:"
    # shellcheck disable=SC2086 # the runs are words
    bin/serket bench quality -f "$(pipeline 1 "$private")" --save "$OUT/results-private$private.jsonl" ${runs[$private]} 2>/dev/null
    cat "$OUT/results-private$private.jsonl" >>"$OUT/results.jsonl"
  done
} | tee "$OUT/report.txt"
