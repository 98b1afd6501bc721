#!/usr/bin/env python3
"""Each system's quality over its seeds, from `serket bench quality --save`.

Reads the JSON lines bench/quality.sh writes (one per run; a run named
NAME-seedN is seed N of system NAME, NAME alone seed 1) and prints, for
every figure, each system's mean over its seeds with the range, and how
serket and the PyTorch reference compare: "serket higher" or "PyTorch
higher" only when their ranges over the seeds do not overlap (with 3
seeds each, runs of one system all above the other's happen by chance one
time in ten) and, for a fraction of test items (coherence, probes,
clustering accuracy), the difference is also past twice its sampling
error on those items; otherwise "within the spread". Higher is better for
every figure (log-likelihoods, coherences, probes, clustering).

  python3 bench/quality_summary.py out/bench-quality/results.jsonl
"""
import json
import math
import re
import statistics
import sys

SKIP = ("judge of",)  # the judges' accuracy on real items: the same for every run


def main(path):
    runs = {}
    for line in open(path):
        if not line.strip():
            continue
        r = json.loads(line)
        system = re.sub(r"-seed\d+$", "", r["system"])
        figs = dict(r["figures"])
        figs["training samples/s (not a speed test)"] = r.get("samples_per_sec") or float("nan")
        figs["_items"] = r.get("result", {}).get("coherence", {}).get("items", 2000)
        runs.setdefault(system, []).append(figs)
    systems = [s for s in ("serket", "pytorch") if s in runs] + sorted(s for s in runs if s not in ("serket", "pytorch"))
    names = [n for n in runs[systems[0]][0] if not n.startswith(SKIP) and not n.startswith("_")]
    cell = lambda v: f"{v:.1f}" if abs(v) >= 10 else f"{v:.3f}"
    print("| figure | " + " | ".join(f"{s} (seeds: {len(runs[s])}), mean (range)" for s in systems) + " | serket − PyTorch |")
    print("|---" * (len(systems) + 2) + "|")
    for n in names:
        row, ranges = [], {}
        for s in systems:
            vals = [f[n] for f in runs[s] if n in f]
            ranges[s] = (statistics.mean(vals), min(vals), max(vals))
            row.append(f"{cell(ranges[s][0])} ({cell(min(vals))} to {cell(max(vals))})")
        verdict = ""
        if "serket" in ranges and "pytorch" in ranges and not n.startswith("training"):
            (ms, lo_s, hi_s), (mp, lo_p, hi_p) = ranges["serket"], ranges["pytorch"]
            diff = cell(ms - mp)
            if n.startswith(("coherence", "probe", "k-means accuracy")):
                p, items = (ms + mp) / 2, runs["serket"][0]["_items"]
                if abs(ms - mp) <= 2 * math.sqrt(max(p * (1 - p), 1e-12) * 2 / items):
                    lo_s, hi_p, lo_p, hi_s = 0, 0, 0, 0  # inside the sampling error: no call
            if lo_s > hi_p:
                verdict = f"{diff}: serket higher"
            elif lo_p > hi_s:
                verdict = f"{diff}: PyTorch higher"
            else:
                verdict = f"{diff}: within the spread"
        print(f"| {n.replace('|', chr(92) + '|')} | " + " | ".join(row) + f" | {verdict} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "out/bench-quality/results.jsonl")
