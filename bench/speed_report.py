#!/usr/bin/env python3
"""bench/speed.sh's report: its interleaved runs summed up per system.

Reads the JSON lines speed.sh collects (one per run: {"system", "round",
"result"}, result being serket's metrics line or the output of
bench/torch_mvae.py or bench/sgemm.py), the model's flops (torch_mvae.py
--flops) and the reference's check (torch_mvae.py --check), and prints per
system the median samples/s and its range over the rounds, the ratio to the
best PyTorch configuration (the one of highest median: the ratio of the
medians, and the range of the ratios measured in one round), the GFLOP/s
that makes and its share of the SGEMM ceiling measured in the same rounds,
then each process's step split in the median run of the multi-process
systems.

  speed_report.py RESULTS.jsonl FLOPS.json CHECK.json
"""
import json
import statistics
import sys


def median_run(runs):
    """The run of median samples/s (the lower middle one of an even count)."""
    s = sorted(runs, key=lambda r: r["sps"])
    return s[(len(s) - 1) // 2]


def peak_rss(r):
    """A run's peak memory summed over its processes."""
    if "modules" in r:  # serket's metrics line: the integrator's, then each module's
        return r.get("peak_rss_bytes", 0) + sum(m.get("peak_rss_bytes", 0) for m in r["modules"].values())
    return r.get("peak_rss_bytes", 0)


def mib(b):
    return f"{b / 2**20:.0f} MiB" if b else "—"


def main():
    if len(sys.argv) != 4:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        sys.exit(2)
    lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
    flops = json.load(open(sys.argv[2]))
    check = json.load(open(sys.argv[3]))
    mflop = flops["mflop_per_sample"]

    systems, sgemm = {}, []
    for l in lines:
        r = l["result"]
        if l["system"] == "sgemm":
            sgemm.append(r)
            continue
        run = {"round": l["round"], "sps": r["samples_per_sec"], "raw": r}
        systems.setdefault(l["system"], []).append(run)
    torch_names = [s for s in systems if s.startswith("pytorch")]
    if not torch_names:
        sys.exit("speed_report: no PyTorch runs")
    med = {s: statistics.median(r["sps"] for r in runs) for s, runs in systems.items()}
    best = max(torch_names, key=med.get)
    best_by_round = {r["round"]: r["sps"] for r in systems[best]}

    ceiling = statistics.median(r["gflops"] for r in sgemm) if sgemm else 0
    by = {}
    for r in sgemm:
        for k, v in r["each"].items():
            by.setdefault(k, []).append(v)
    print(f"model: {mflop:.1f} MFLOP per training sample (GEMM flops of the mvae plan's encoders and decoders, "
          f"forward and backward: " + ", ".join(f"{m} {v:.1f}" for m, v in flops["by_modality"].items()) + ")")
    if sgemm:
        lib = max(by, key=lambda k: statistics.median(by[k]))
        g = sgemm[0]
        print(f"SGEMM ceiling: {ceiling:.0f} GFLOP/s, the median over {len(sgemm)} rounds (range "
              f"{min(r['gflops'] for r in sgemm):.0f}–{max(r['gflops'] for r in sgemm):.0f}) of the faster of "
              + " and ".join(f"{k} ({statistics.median(v):.0f})" for k, v in by.items())
              + f": float32 {g['n']}×{g['n']} matmul, {g['threads']} OpenBLAS threads; faster by median: {lib}")
    data = "random arrays" if check["data"] == "random" else "the export"
    modes, tol = check["modes"].values(), check["tolerances"]
    print(f"reference check ({check['steps']} steps on {data}; {'; '.join(check['modes'])} against "
          f"{check['reference']}): objectives within {max(m['objective_rel_diff'] for m in modes):.1e} "
          f"(tolerance {tol['objective']:.0e}), first gradients within {max(m['grad_rel_diff'] for m in modes):.1e} "
          f"({tol['grad']:.0e}), updates within {max(m['update_rel_diff'] for m in modes):.1e} ({tol['update']:.0e}): "
          f"{check['check']}")
    print(f"best PyTorch configuration (by median): {best}")
    print()
    head = f"{'system':<26} {'runs':>4} {'samples/s median (range)':>25} {'vs best PyTorch (per round)':>28} {'GFLOP/s':>8} {'of SGEMM':>9}  peak RSS, all processes"
    print(head)
    for s, runs in systems.items():
        sps = [r["sps"] for r in runs]
        per_round = [r["sps"] / best_by_round[r["round"]] for r in runs if r["round"] in best_by_round]
        ratio = f"{med[s] / med[best]:.2f}× ({min(per_round):.2f}–{max(per_round):.2f})" if per_round else "—"
        gf = med[s] * mflop / 1e3
        share = f"{100 * gf / ceiling:.0f}%" if ceiling else "—"
        rss = peak_rss(median_run(runs)["raw"])
        print(f"{s:<26} {len(runs):>4} {f'{med[s]:.0f} ({min(sps):.0f}–{max(sps):.0f})':>25} {ratio:>28} {gf:>8.1f} {share:>9}  {mib(rss)}")

    for s, runs in systems.items():
        m = median_run(runs)["raw"]
        if "modules" in m:  # serket's metrics line
            t = m["seconds"]
            print(f"\n{s}, median run (round {median_run(runs)['round']}), each process's step:")
            print(f"    {'integrator':<12} waiting {100 * m['wait_seconds'] / t:4.0f}%  fusing {100 * m['fuse_seconds'] / t:4.1f}%  "
                  f"messages {100 * m['codec_seconds'] / t:4.1f}%   {mib(m.get('peak_rss_bytes', 0))}")
            for name, v in sorted(m["modules"].items()):
                st = v["step_seconds"]
                if st <= 0:
                    continue
                busy = v["compute_seconds"] + v["codec_seconds"] + v["save_seconds"]
                print(f"    {name:<12} compute {100 * v['compute_seconds'] / st:4.0f}%  messages {100 * v['codec_seconds'] / st:4.1f}%  "
                      f"checkpoints {100 * v['save_seconds'] / st:4.1f}%  waiting {100 * (1 - busy / st):4.0f}%   {mib(v.get('peak_rss_bytes', 0))}")
        elif "processes" in m:  # torch_mvae.py --procs 3
            print(f"\n{s}, median run (round {median_run(runs)['round']}), each process's share of the epoch computing:")
            for name, v in m["processes"].items():
                print(f"    {name:<12} compute {100 * v['compute']:4.0f}%   {mib(v['peak_rss_bytes'])}")


if __name__ == "__main__":
    main()
