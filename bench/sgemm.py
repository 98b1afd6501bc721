#!/usr/bin/env python3
"""The machine's SGEMM ceiling, for bench/speed.sh's share of it.

Times float32 products of two N×N matrices (N = 2048 by default: 17 GFLOP
each, large enough that the BLAS runs at its peak, small enough to take a
second) with --threads OpenBLAS threads, through numpy and through torch.mm
(Debian's torch calls the same system OpenBLAS), each the median of --reps
products after one to warm up, and prints one JSON line: each one's GFLOP/s
and the faster of the two as the ceiling, named.

  /usr/bin/python3 bench/sgemm.py            # 2 threads: the two cores
"""
import argparse
import json
import os
import statistics
import sys
import time

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=2048)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=7)
    ARGS = ap.parse_args()
    if ARGS.n < 1 or ARGS.threads < 1 or ARGS.reps < 1:
        print("sgemm: --n, --threads and --reps must be at least 1", file=sys.stderr)
        sys.exit(2)
    # OpenBLAS reads its thread count once, when it loads.
    os.environ["OPENBLAS_NUM_THREADS"] = str(ARGS.threads)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402 (after the thread settings)


def gflops(f, n, reps):
    f()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return 2 * n ** 3 / statistics.median(times) / 1e9


def main():
    n, reps = ARGS.n, ARGS.reps
    rng = np.random.default_rng(1)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), dtype=np.float32)
    got = {"numpy": gflops(lambda: np.matmul(a, b, out=c), n, reps)}
    try:
        import torch
    except ImportError:
        pass
    else:
        torch.set_num_threads(ARGS.threads)
        ta, tb, tc = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(c)
        got["torch"] = gflops(lambda: torch.mm(ta, tb, out=tc), n, reps)
    best = max(got, key=got.get)
    print(json.dumps({"gflops": got[best], "by": f"{best} float32 {n}×{n} matmul, {ARGS.threads} OpenBLAS threads",
                      "each": got, "n": n, "threads": ARGS.threads}))


if __name__ == "__main__":
    main()
