#!/usr/bin/env bash
# Training throughput, measured side by side in one run on this machine:
# serket (three module processes and the integrator, talking over NATS) with
# OpenBLAS and with pure Go, and the PyTorch reference of the same model
# (bench/torch_mvae.py). Not part of the tests: the machine is shared and
# noisy, so compare the ratios, and rerun.
#
#   bench/speed.sh              # ITEMS=10000 training items, one epoch each
set -euo pipefail
cd "$(dirname "$0")/.."
ITEMS=${ITEMS:-10000}
PY=${PY:-/usr/bin/python3}
export PATH="$PATH:/usr/local/go/bin"

go build -tags openblas -o bin/serket ./cmd/serket
go build -o bin/serket-purego ./cmd/serket
bin/serket data prepare >/dev/null
"$PY" -c 'import torch' 2>/dev/null || { echo "bench: PyTorch missing: apt-get install python3-torch" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
serket() { # name binary
  "$2" train --limit "$ITEMS" --epochs 1 --checkpoint-dir "$tmp/$1" --log-level warn >/dev/null
  "$PY" - "$1" "$tmp/$1/metrics.jsonl" <<'PYEOF'
import json, sys
m = json.loads(open(sys.argv[2]).read().splitlines()[-1])
t = m["seconds"]
procs = {"integrator": {"wait": m["wait_seconds"] / t, "fuse": m["fuse_seconds"] / t,
                        "codec": m["codec_seconds"] / t, "rss": m.get("peak_rss_bytes", 0)}}
for k, v in m.get("modules", {}).items():
    if v["step_seconds"] > 0:
        s = v["step_seconds"]
        procs[k] = {"compute": v["compute_seconds"] / s, "codec": v["codec_seconds"] / s, "save": v["save_seconds"] / s,
                    "wait": 1 - (v["compute_seconds"] + v["codec_seconds"] + v["save_seconds"]) / s, "rss": v.get("peak_rss_bytes", 0)}
print(json.dumps({"system": sys.argv[1], "samples_per_sec": m["samples_per_sec"], "processes": procs}))
PYEOF
}
{
  serket serket-openblas bin/serket
  serket serket-purego bin/serket-purego
  OMP_WAIT_POLICY=PASSIVE "$PY" bench/torch_mvae.py --threads 2 | "$PY" -c 'import json,sys; d=json.load(sys.stdin); d["system"]="pytorch-2-threads"; print(json.dumps(d))'
} > "$tmp/results.jsonl"
"$PY" - "$tmp/results.jsonl" <<'PYEOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
ref = next(r["samples_per_sec"] for r in rows if r["system"].startswith("pytorch"))
mib = lambda b: f"peak RSS {b / 2**20:6.0f} MiB" if b else ""
print(f"{'system':<20} {'samples/s':>10} {'vs PyTorch':>11}")
for r in rows:
    print(f"{r['system']:<20} {r['samples_per_sec']:>10.0f} {r['samples_per_sec']/ref:>10.2f}×   {mib(r.get('peak_rss_bytes', 0))}")
    for name, p in sorted(r.get("processes", {}).items(), key=lambda kv: kv[0] != "integrator"):
        if name == "integrator":
            split = f"waiting {100*p['wait']:4.0f}%  fusing {100*p['fuse']:4.1f}%  messages {100*p['codec']:4.1f}%"
        else:
            split = f"compute {100*p['compute']:4.0f}%  messages {100*p['codec']:4.1f}%  checkpoints {100*p['save']:4.1f}%  waiting {100*p['wait']:4.0f}%"
        print(f"    {name:<12} {split:<70} {mib(p['rss'])}")
PYEOF
