#!/usr/bin/env bash
# Learning from mostly unpaired data (issue 18): the same pipeline trained
# by `serket train` with only a fraction of its training items paired (the
# rest keep one modality each; the seeded mask every module draws), by each
# METHOD, for every fraction and seed, then measured by one evaluator
# (`serket bench quality`): every cross-modal coherence and the test ELBO.
# Every method takes the same steps (an epoch is the training items ÷ the
# batch), so the budget is the same.
#
# A METHOD is a name and its train flags:
#   plain   --paired-share 0: batches drawn uniformly, every term scoring
#           every row (before issue 18)
#   seen    --paired-share 0 --seen-only: a term scores no item its subset
#           did not see
#   share   --paired-share SHARE (0.2, the default): a fifth of every batch
#           from the paired items
#   both    --seen-only --paired-share SHARE
#
# Not part of the tests: about EPOCHS × 1.5 minutes per run, and 2 minutes
# per run to measure, on 2 cores.
#
#   bench/pairing.sh                              # FRACTIONS="1 0.1 0.01 0.001" METHODS="plain share" SEEDS="1 2"
#   FRACTIONS=0.01 METHODS="plain seen share both" SEEDS=1 bench/pairing.sh
#   SHARE=0.25 bench/pairing.sh                   # the paired share of share and both
#
# Everything lands in OUT (default out/bench-pairing): each run's
# checkpoints and metrics, results.jsonl and report.txt (the table, the
# settings, the machine).
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${EPOCHS:-3}
SEEDS=${SEEDS:-1 2}
FRACTIONS=${FRACTIONS:-1 0.1 0.01 0.001}
METHODS=${METHODS:-plain share}
SHARE=${SHARE:-0.2}
PLAN=${PLAN:-cross}
LAMBDA=${LAMBDA:-language=50}
LIMIT=${LIMIT:-0}
OUT=${OUT:-out/bench-pairing}
export PATH="$PATH:/usr/local/go/bin"

make -s build
bin/serket data prepare >/dev/null
mkdir -p "$OUT"
limit=()
[ "$LIMIT" -gt 0 ] && limit=(--limit "$LIMIT")
log() { echo "== $(date +%H:%M:%S) $*" >&2; }

# flags METHOD prints the method's train flags, one per line.
flags() {
  case $1 in
  plain) printf '%s\n' --paired-share 0 ;;
  seen) printf '%s\n' --paired-share 0 --seen-only ;;
  share) printf '%s\n' --paired-share "$SHARE" ;;
  both) printf '%s\n' --seen-only --paired-share "$SHARE" ;;
  *) echo "bench: unknown method $1 (want plain, seen, share or both)" >&2; exit 2 ;;
  esac
}

# pipeline SEED writes the pipeline file of a seed's runs and prints its path.
pipeline() {
  local f="$OUT/pipeline-seed$1.yaml"
  cat > "$f" <<YAML
modules:
  - {name: vision, args: [--seed, "$1"]}
  - {name: language, args: [--seed, "$1"]}
  - {name: audio, args: [--seed, "$1"]}
YAML
  echo "$f"
}

runs=()
for seed in $SEEDS; do
  for fraction in $FRACTIONS; do
    for method in $METHODS; do
      # At 1 every item is paired: the methods are plain training, bar
      # seen-only on a step a module misses; one run stands for them.
      [ "$fraction" = 1 ] && [ "$method" != "${METHODS%% *}" ] && continue
      mapfile -t extra < <(flags "$method")
      name=$method-$fraction-seed$seed
      dir="$OUT/$name"
      rm -rf "$dir"
      log "serket train --paired-fraction $fraction ${extra[*]} --seed $seed → $dir"
      bin/serket train "$(pipeline "$seed")" --paired-fraction "$fraction" --pairing-seed "$seed" "${extra[@]}" \
        --plan "$PLAN" --lambda "$LAMBDA" --epochs "$EPOCHS" "${limit[@]}" --seed "$seed" --checkpoint-dir "$dir" --log-level warn
      runs+=("$name=$dir")
    done
  done
done

log "measuring"
{
  echo "serket bench pairing — $(date -u +%Y-%m-%d), $(git rev-parse --short HEAD)"
  echo "settings: epochs $EPOCHS, plan $PLAN, lambda $LAMBDA, batch 100, paired share $SHARE, fractions $FRACTIONS, methods $METHODS, seeds $SEEDS$( [ "$LIMIT" -gt 0 ] && echo ", first $LIMIT training items")"
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  bin/serket bench quality -f "$(pipeline 1)" --save "$OUT/results.jsonl" "${runs[@]}" 2>/dev/null
  echo
  echo "test ELBO (nats per item, the integrator's after the last epoch):"
  for r in "${runs[@]}"; do
    printf '  %-24s %s\n' "${r%%=*}" "$(tail -1 "${r#*=}/metrics.jsonl" | sed -E 's/.*"test_elbo":([-0-9.]+).*/\1/')"
  done
} | tee "$OUT/report.txt"
