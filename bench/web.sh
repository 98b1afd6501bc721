#!/usr/bin/env bash
# What the live view costs a pipeline (issue 20), each condition run
# ROUNDS times, interleaved:
#
#   training   serket train (LIMIT items, EPOCHS epochs) with no view, with
#              --web and no page open, and with --web and the page open in
#              a headless Chromium; the samples/s of the epochs after the
#              first (by then the page is connected) from the metrics log.
#   streaming  serket up examples/robot/pipeline.yaml on the training's
#              checkpoints, flooded by examples/robot (camera CAMERA_HZ,
#              every sensor without dropouts), with no view and with
#              --web and the page open; beliefs/s over WINDOW as serket ls
#              --rate counts them in the integrator's stats.
#
# One Chromium runs through the whole bench, in every condition, as a
# person's browser would: what is measured is the page, not a browser
# starting (a fresh headless Chromium spends seconds of CPU settling). Its
# page waits for the view on one port and, once it has loaded, reconnects
# to each run's view there by itself; the "view" runs serve theirs on
# another port, which no page opens. The browser's own CPU time per
# second of each run is reported too: what the page costs the machine,
# which a 2-core pipeline pays in throughput.
#
# Not part of the tests: about ROUNDS × (3 × EPOCHS × ~25 s + 2 × 40 s) on
# 2 cores. The report lands in $OUT/report.txt.
#
#   bench/web.sh                        # ROUNDS=3 LIMIT=10000 EPOCHS=3
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
LIMIT=${LIMIT:-10000}
EPOCHS=${EPOCHS:-3}
CAMERA_HZ=${CAMERA_HZ:-500}
WINDOW=${WINDOW:-20s}
OUT=${OUT:-out/bench-web}
export PATH="$PATH:/usr/local/go/bin"

make -s build
go build -o bin/robot ./examples/robot
bin/serket data prepare >/dev/null
command -v chromium >/dev/null || { echo "bench/web.sh needs Chromium (apt-get install chromium)" >&2; exit 1; }
rm -rf "$OUT" && mkdir -p "$OUT"
log() { echo "== $(date +%H:%M:%S) $*" >&2; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

results="$OUT/results.tsv"
echo -e "part\tcondition\tround\tvalue" >"$results"
webport=$(port)
quietport=$(port)
# The browser: a page that waits for the view on webport, then opens it.
waiter="data:text/html,<script>setInterval(()=>fetch('http://127.0.0.1:$webport/',{mode:'no-cors'}).then(()=>location='http://127.0.0.1:$webport/',()=>{}),500)</script>"
chromium --headless --no-sandbox --disable-gpu --user-data-dir="$(mktemp -d)" --remote-debugging-port=0 "$waiter" >/dev/null 2>&1 &
browser=$!
trap 'kill $browser 2>/dev/null' EXIT
sleep 20 # the browser settles

# browser_ms: the CPU time the browser's processes have used so far, in ms.
tree() { echo "$1"; for c in $(pgrep -P "$1"); do tree "$c"; done; }
browser_ms() {
  local t=0
  for p in $(tree $browser); do [ -r /proc/$p/stat ] && t=$((t + $(awk '{print $14 + $15}' /proc/$p/stat))); done
  echo $((t * 1000 / $(getconf CLK_TCK)))
}

# until FILE PATTERN: waits (up to 60 s) for PATTERN in FILE.
until_in() {
  for _ in $(seq 600); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "bench/web.sh: no \"$2\" in $1" >&2; exit 1
}

# web COND: the --web flag of a run under COND.
web() {
  case $1 in
    view) echo "--web=127.0.0.1:$quietport" ;;
    browser) echo "--web=127.0.0.1:$webport" ;;
  esac
}

# train COND ROUND: one training run; prints its samples/s.
train() {
  local dir="$OUT/train-$1-$2" b0 t0
  b0=$(browser_ms) t0=$(date +%s.%N)
  bin/serket train --limit "$LIMIT" --epochs "$EPOCHS" --batch 100 --plan cross --lambda language=50,audio=0.2 --eval-items 0 \
    --checkpoint-dir "$dir" $(web "$1") >"$dir.log" 2>&1
  echo -e "browser\t$1\t$2\t$(awk -v b="$(($(browser_ms) - b0))" -v t0="$t0" -v t1="$(date +%s.%N)" 'BEGIN { printf "%.1f", b / (t1 - t0) }')" >>"$results"
  python3 -c 'import json,sys; e=[json.loads(l)["samples_per_sec"] for l in open(sys.argv[1])][1:] or [0]; print("%.1f" % (sum(e)/len(e)))' "$dir/metrics.jsonl"
}

# stream COND ROUND: one flood of the robot's pipeline; prints beliefs/s.
stream() {
  local np log="$OUT/stream-$1-$2.log" up rate
  np=$(port)
  bin/serket up examples/robot/pipeline.yaml --port "$np" --checkpoint-dir "$run" $(web "$1") >"$log" 2>&1 &
  up=$!
  until_in "$log" "module joined.*vision"
  bin/robot --nats "nats://127.0.0.1:$np" --duration 60s --camera-hz "$CAMERA_HZ" --mic-hz 2 --keyboard-hz 2 --dropout 0 >"$log.robot" 2>&1 &
  local robot=$!
  sleep 5 # the flood reaches its steady state, the page reconnects; the window after it is what is measured
  local b0 t0
  b0=$(browser_ms) t0=$(date +%s.%N)
  rate=$(bin/serket ls --nats "nats://127.0.0.1:$np" --rate "$WINDOW" | awk '$1 == "integrator" && $2 == "beliefs" { sub("/s", "", $3); print $3 }')
  echo -e "browser-stream\t$1\t$2\t$(awk -v b="$(($(browser_ms) - b0))" -v t0="$t0" -v t1="$(date +%s.%N)" 'BEGIN { printf "%.1f", b / (t1 - t0) }')" >>"$results"
  kill $robot 2>/dev/null; wait $robot 2>/dev/null || true
  kill $up; wait $up 2>/dev/null || true
  echo "${rate:-0}"
}

for r in $(seq "$ROUNDS"); do
  for c in none view browser; do
    log "training, $c, round $r"
    echo -e "train\t$c\t$r\t$(train "$c" "$r")" >>"$results"
  done
done
run="$(pwd)/$OUT/train-none-1"
for r in $(seq "$ROUNDS"); do
  for c in none browser; do
    log "streaming, $c, round $r"
    echo -e "stream\t$c\t$r\t$(stream "$c" "$r")" >>"$results"
  done
done

python3 - "$results" >"$OUT/report.txt" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
by = {}
for r in rows:
    by.setdefault((r["part"], r["condition"]), []).append(float(r["value"]))
print("what the live view costs the pipeline (median, range over rounds; interleaved)")
for part, unit in (("train", "samples/s"), ("stream", "beliefs/s"), ("browser", "ms CPU/s"), ("browser-stream", "ms CPU/s")):
    base = by.get((part, "none"))
    for (p, c), v in by.items():
        if p != part:
            continue
        line = f"{part:7} {c:8} {unit:10} median {statistics.median(v):8.1f}  range {min(v):.1f} to {max(v):.1f}"
        if base and c != "none" and not part.startswith("browser"):
            ratios = [x / b for x, b in zip(v, base)]
            line += f"   ratio to none, round by round: median {statistics.median(ratios):.3f}, range {min(ratios):.3f} to {max(ratios):.3f}"
        print(line)
PY
cat "$OUT/report.txt"
