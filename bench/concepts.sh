#!/usr/bin/env bash
# Concept formation side by side (issue 17): the same pipeline, plan and
# budget trained by `serket train` with and without the concept module
# (--prior concept: SERKET's Gaussian mixture over the shared latent,
# whose categories are each item's prior), for every seed, then measured
# by one evaluator (`serket bench quality`). It shows how the categories
# match the classes (which training never sees) given every modality and
# given each alone; k-means on the latent of the run without it;
# unconditional coherence drawn from the mixture and from N(0, I); the
# cross-modal coherences; and each run's test ELBO.
# Not part of the tests: about 10 minutes on 2 cores at the defaults
# (a run of 3 epochs trains in under a minute; measuring the four, six).
#
#   bench/concepts.sh                     # the demo's budget: EPOCHS=3 LIMIT=10000, SEEDS="1 2"
#   EPOCHS=5 SEEDS="1 2 3" bench/concepts.sh
#   WARMUP=200 bench/concepts.sh          # the concept module's warm-up, in steps
#   LIMIT=0 PRIVATE=8 bench/concepts.sh   # all 60,000 items; modules keep a private latent of 8
#
# Everything lands in OUT (default out/bench-concepts): each run's
# checkpoints and metrics, results.jsonl and report.txt (the table, the
# settings, the machine).
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${EPOCHS:-3}
SEEDS=${SEEDS:-1 2}
LIMIT=${LIMIT:-10000}
WARMUP=${WARMUP:-100}
PRIVATE=${PRIVATE:-0}
PLAN=${PLAN:-cross}
LAMBDA=${LAMBDA:-language=50,audio=0.2}
OUT=${OUT:-out/bench-concepts}
export PATH="$PATH:/usr/local/go/bin"

make -s build
bin/serket data prepare >/dev/null
mkdir -p "$OUT"
limit=(--limit "$LIMIT") items=$LIMIT
[ "$LIMIT" -gt 0 ] || { limit=(); items=60000; }
log() { echo "== $(date +%H:%M:%S) $*" >&2; }

# pipeline SEED writes the pipeline file of a seed's runs, its modules and
# its concept module seeded by SEED, and prints its path.
pipeline() {
  local f="$OUT/pipeline-seed$1.yaml" extra=""
  [ "$PRIVATE" -gt 0 ] && extra=", --private, \"$PRIVATE\""
  cat > "$f" <<YAML
modules:
  - {name: vision, args: [--seed, "$1"$extra]}
  - {name: language, args: [--seed, "$1"$extra]}
  - {name: audio, args: [--seed, "$1"$extra]}
prior: {name: concept, args: [--seed, "$1", --warmup, "$WARMUP", --items, "$items"]}
YAML
  echo "$f"
}

runs=""
for seed in $SEEDS; do
  for with in plain concept; do
    dir="$OUT/$with-seed$seed"
    f=$(pipeline "$seed")
    prior=(--prior concept)
    [ "$with" = plain ] && prior=(--prior "")
    rm -rf "$dir"
    log "serket train ($with) --epochs $EPOCHS --limit $LIMIT --private $PRIVATE --seed $seed → $dir"
    bin/serket train "$f" "${prior[@]}" --plan "$PLAN" --lambda "$LAMBDA" --epochs "$EPOCHS" "${limit[@]}" \
      --seed "$seed" --checkpoint-dir "$dir" --log-level warn
    runs+=" $with-seed$seed=$dir"
  done
done

log "measuring"
{
  echo "serket bench concepts — $(date -u +%Y-%m-%d), $(git rev-parse --short HEAD)"
  echo "settings: epochs $EPOCHS on the first $items training items, plan $PLAN, lambda $LAMBDA, batch 100, private latent $PRIVATE, concept warm-up $WARMUP steps, seeds $SEEDS"
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  # The evaluator starts a run's concept module from its checkpoint when
  # the run had one (integrator.json says so).
  # shellcheck disable=SC2086 # the runs are words
  bin/serket bench quality -f "$(pipeline 1)" --prior-samples 1000 --save "$OUT/results.jsonl" $runs 2>/dev/null
  echo
  echo "test ELBO (nats per item, the integrator's after the last epoch, under each run's prior):"
  for r in $runs; do
    printf '  %-16s %s\n' "${r%%=*}" "$(tail -1 "${r#*=}/metrics.jsonl" | sed -E 's/.*"test_elbo":([-0-9.]+).*/\1/')"
  done
} | tee "$OUT/report.txt"
