# serket's entry points. `make demo` and `make test` do all set-up a fresh
# machine needs (see README.md); the rest are for development.

GO       ?= go
BIN      := bin/serket
FUZZTIME ?= 10s
# OpenBLAS through cgo when Debian's libopenblas-dev is installed (about 8×
# the pure-Go GEMM on these cores); `make TAGS= …` forces pure Go.
TAGS     ?= $(shell pkg-config --exists openblas 2>/dev/null && echo openblas)
GOFLAGS_TAGS := $(if $(TAGS),-tags $(TAGS))
# A Python with numpy and msgpack (as internal/python finds one): python3,
# else Debian's where PATH leads to another.
PYTHON   ?= $(shell for p in python3 /usr/bin/python3; do $$p -c 'import numpy, msgpack' 2>/dev/null && { echo $$p; break; }; done)

.PHONY: all deps build demo up test test-only fuzz bench bench-quality bench-models bench-coordinated bench-concepts bench-pairing bench-foreign bench-web bench-speed bench-profile bench-fusion bench-perf bench-check data clean

all: build

build:
	$(GO) build $(GOFLAGS_TAGS) -o $(BIN) ./cmd/serket

# The Debian packages the modalities and the fast build need, installed
# when missing (as root; otherwise it says the command to run).
deps:
	@build/deps.sh

# The main job, on the embedded defaults.
demo: deps
	$(MAKE) build
	./$(BIN) demo

# The default pipeline in the foreground; Ctrl-C stops it.
up: build
	./$(BIN) up

# The tests also drive a real browser (the live view's): Chromium too.
test:
	@build/deps.sh test
	$(MAKE) test-only

# The tests alone, for a machine that has what deps installs: Go's, then
# the Python SDK's and its example modules' (the Go tests run those
# modules behind serket module exec too).
test-only:
	$(GO) vet $(GOFLAGS_TAGS) ./...
	$(GO) test $(GOFLAGS_TAGS) -race -count=1 -timeout 25m ./...
	$(if $(TAGS),$(GO) test -count=1 ./nn/...,)
	@test -n "$(PYTHON)" || { echo "no python3 with numpy and msgpack: run build/deps.sh" >&2; exit 1; }
	$(PYTHON) -m unittest discover -s sdk/python
	$(PYTHON) -m unittest discover -s examples/python-touch

# Every fuzz target of every package (go test -list '^Fuzz' ./...) for
# FUZZTIME each, then a table of executions, new inputs and crashes (the
# failing input's path under testdata/fuzz); fails if any target crashed,
# after running them all. Logs in out/fuzz/.
fuzz:
	GO="$(GO)" FUZZTIME="$(FUZZTIME)" bench/fuzz.sh

bench:
	$(GO) test $(GOFLAGS_TAGS) -run '^$$' -bench . -benchmem ./...

# Model quality: serket and the PyTorch reference trained alike, measured
# by the same code, and serket with partial pairing; SEEDS="1 2 3"
# FRACTIONS= for docs/training.md's table, with each system's mean and range
# over the seeds (about 30 min per seed on 2 cores; needs python3-torch;
# not part of the tests).
bench-quality:
	bench/quality.sh

# The aggregations (poe, moe, mopoe, gpoe; private latents off and on)
# trained alike and measured by one evaluator, over SEEDS (default "1 2";
# about 70 min at EPOCHS=3 on 2 cores; not part of the tests).
bench-models:
	bench/models.sh

# Coordinated training: touch added to a trained three-module pipeline by
# training it alone, against the four trained jointly (about 35 min on 2
# cores; not part of the tests).
bench-coordinated:
	bench/coordinated.sh

# Concept formation: the demo's pipeline and budget with and without the
# concept module (serket train --prior concept), two seeds, measured side
# by side (about 10 min on 2 cores; not part of the tests).
bench-concepts:
	bench/concepts.sh

# Learning from mostly unpaired data: each pairing method (default plain
# and share, the default --paired-share) at each paired fraction (default
# 1 0.1 0.01 0.001), over SEEDS (default "1 2"); about 4 minutes a run and
# 2 to measure it on 2 cores, not part of the tests.
bench-pairing:
	bench/pairing.sh

# A module in Python against the same module in Go: vision, language and
# touch (Go, numpy, PyTorch), SEEDS "1 2 3", measured side by side (about
# 3 minutes a run on 2 cores; not part of the tests). Then the adapter's
# own cost per training step of the touch module.
bench-web:
	bench/web.sh

bench-foreign:
	bench/foreign.sh
	$(GO) test $(GOFLAGS_TAGS) ./examples/python-touch -run '^$$' -bench TrainingStep -benchtime 200x -count 3

# Training throughput: serket (OpenBLAS, pure Go) against the PyTorch
# reference in each of its configurations (one process at 1 or 2 threads,
# one process per modality), ROUNDS=3 interleaved rounds of an epoch of
# ITEMS=10000, with the SGEMM ceiling (about 13 min; needs python3-torch;
# not part of the tests; report in out/bench-speed/). BLAS=auto lets
# OpenBLAS pick its kernel, on both sides (see bench/speed.sh).
bench-speed:
	bench/speed.sh

# Where a training run's CPU time goes: each CPU's share by process and each
# process's busiest functions, sampled with perf in the steady state (about
# 35 s; needs linux-perf and root).
bench-profile:
	bench/profile.sh

# The streaming round trip against a bare NATS request-reply, 5 runs, the
# median and range of each p50, p99 and ratio (about 1 min; out/bench-fusion/).
bench-fusion:
	bench/fusion.sh

# The gradient cross-check: one training step per plan and aggregation,
# recomputed in PyTorch from the math (bench/torch_check.py), verbosely
# (needs python3-torch; `make test` runs it too where torch is, else skips).
bench-check:
	$(GO) test $(GOFLAGS_TAGS) ./bench/torchref -run TestGradientsMatchPyTorch -v -count=1

# docs/performance.md's figures in one run: the fusion round trip against
# raw NATS, streaming throughput, training throughput against PyTorch with
# each process's step split and peak memory (about 12 min; out/bench-perf/).
bench-perf:
	bench/perf.sh

# Fashion-MNIST-3 in data/fmnist3 (skipped when up to date).
data: build
	./$(BIN) data prepare

clean:
	rm -rf bin out
