#!/usr/bin/env python3
"""Where a training run's CPU time went, from `perf script -F pid,cpu,ip,sym -G`
on stdin (bench/profile.sh makes it): each CPU's share by process, then
each process's share of the machine and its busiest functions.

  profile_report.py PROCS [TOP]

PROCS has a line "PID NAME" per process of the pipeline (a module's name,
"integrator" for `serket train`); samples of pid 0 are the idle CPU, and
of any other pid "other"."""
import collections
import sys


def main():
    names = {"0": "idle"}
    with open(sys.argv[1]) as f:
        for line in f:
            pid, name = line.split()
            names[pid] = name
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    by_cpu = collections.defaultdict(collections.Counter)
    by_proc = collections.defaultdict(collections.Counter)
    total = 0
    for line in sys.stdin:
        f = line.split()
        if len(f) < 2 or not f[1].startswith("["):
            continue
        name = names.get(f[0], "other")
        sym = f[3] if len(f) > 3 else "[unknown]"
        by_cpu[f[1].strip("[]")][name] += 1
        by_proc[name][sym] += 1
        total += 1
    if total == 0:
        sys.exit("profile_report: no samples")
    print("CPU  process       share of the CPU")
    for cpu in sorted(by_cpu, key=int):
        n = sum(by_cpu[cpu].values())
        for name, k in by_cpu[cpu].most_common():
            if k / n >= 0.005:
                print(f"{int(cpu):<4} {name:<13} {100 * k / n:5.1f}%")
    print()
    print("process       of the machine   busiest functions (share of the process)")
    for name, syms in sorted(by_proc.items(), key=lambda kv: -sum(kv[1].values())):
        n = sum(syms.values())
        funcs = ", ".join(f"{short(s)} {100 * k / n:.0f}%" for s, k in syms.most_common(top) if k / n >= 0.01)
        print(f"{name:<13} {100 * n / total:5.1f}%           {funcs}")


def short(sym):
    """A Go symbol without its module path: nn.(*SiLU).Backward."""
    return sym.rsplit("/", 1)[-1].removesuffix(".abi0")


if __name__ == "__main__":
    main()
