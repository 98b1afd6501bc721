#!/usr/bin/env bash
# The performance figures of docs/performance.md in one run on this machine:
# the fusion round trip next to a raw NATS request-reply and the streaming
# fusion throughput (serket bench fusion), then training throughput with
# OpenBLAS and pure Go next to the PyTorch reference's configurations, in
# interleaved rounds, with each process's step split, peak memory and the
# SGEMM ceiling (bench/speed.sh; ITEMS and ROUNDS pass through to it). Not
# part of the tests: the machine is shared and noisy, so compare the ratios
# measured in one run, and rerun.
#
#   bench/perf.sh               # about 12 minutes on 2 cores; report in out/bench-perf/
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
out=out/bench-perf
mkdir -p "$out"
{
  echo "# serket performance, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), go $(go env GOVERSION)"
  echo "# load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  go build -tags openblas -o bin/serket ./cmd/serket
  bin/serket bench fusion 2>&1
  echo
  echo "# the round trip, 5 runs (bench/fusion.sh)"
  bench/fusion.sh
  echo
  echo "# training throughput (bench/speed.sh, ITEMS=${ITEMS:-10000} ROUNDS=${ROUNDS:-3})"
  bench/speed.sh
  echo
  echo "# load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
} 2>&1 | tee "$out/report.txt"
