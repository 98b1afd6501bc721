#!/usr/bin/env bash
# The streaming round trip against a bare NATS request-reply, RUNS times
# (default 5): each run is `serket bench fusion` (serket's round trip and
# the raw one interleaved in blocks, on one embedded server), and the
# report is the median and range over the runs of each one's p50 and p99,
# and of the ratios serket/raw measured within each run. Not part of the
# tests: compare the ratios, on a quiet machine, and rerun.
#
#   bench/fusion.sh              # about 1 minute; report in out/bench-fusion/
#   RUNS=9 N=5000 bench/fusion.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
N=${N:-2000}
OUT=${OUT:-out/bench-fusion}
export PATH="$PATH:/usr/local/go/bin"
go build -tags openblas -o bin/serket ./cmd/serket
mkdir -p "$OUT"
: >"$OUT/runs.json"
for r in $(seq "$RUNS"); do
  echo "== $(date +%H:%M:%S) run $r of $RUNS" >&2
  bin/serket bench fusion --duration 0 --n "$N" --json --log-level warn >>"$OUT/runs.json"
done
{
  echo "# serket bench fusion × $RUNS, $(date -u '+%Y-%m-%d %H:%M UTC'), $(git describe --always --dirty), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), load at the end $(cut -d' ' -f1-3 /proc/loadavg)"
  python3 - "$OUT/runs.json" <<'PY'
import json, statistics, sys
text, dec, runs, i = open(sys.argv[1]).read(), json.JSONDecoder(), [], 0
while text[i:].strip():  # one indented JSON object per run
    i += len(text[i:]) - len(text[i:].lstrip())
    obj, i = dec.raw_decode(text, i)
    runs.append(obj["round_trip"])
def row(name, vals, unit, fmt):
    m = statistics.median(vals)
    print(f"{name:<28} {fmt(m)}{unit} (range {fmt(min(vals))}–{fmt(max(vals))})")
us = lambda v: f"{v / 1000:.1f}"
x = lambda v: f"{v:.2f}"
r0 = runs[0]
print(f"latent {r0['latent']}: posterior {r0['posterior_bytes']} bytes, belief {r0['belief_bytes']} bytes; {r0['n']} round trips of each kind per run, one in flight")
for side in ("serket", "raw"):
    for q in ("p50", "p99"):
        row(f"{side} {q}", [r[side]["latency"][q + "_ns"] for r in runs], " µs", us)
row("p50 ratio serket/raw", [r["p50_ratio"] for r in runs], "×", x)
row("p99 ratio serket/raw", [r["p99_ratio"] for r in runs], "×", x)
lost = sum(r["serket"]["lost"] + r["serket"]["errors"] + r["raw"]["lost"] + r["raw"]["errors"] for r in runs)
print(f"lost or failed round trips: {lost}")
PY
} | tee "$OUT/report.txt"
