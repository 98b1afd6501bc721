# serket's entry points. `make demo` and `make test` do all set-up a fresh
# machine needs (see README.md); the rest are for development.

GO       ?= go
BIN      := bin/serket
FUZZTIME ?= 20s

.PHONY: all build demo up test race fuzz bench deps clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/serket

# The main job, on the embedded defaults.
demo: build
	./$(BIN) demo

# The default pipeline in the foreground; Ctrl-C stops it.
up: build
	./$(BIN) up

test:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m ./...

# Each fuzz target for FUZZTIME (one at a time: go test -fuzz takes one).
fuzz:
	@set -e; for pkg in ./bus; do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$t ($(FUZZTIME))"; \
	    $(GO) test $$pkg -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) 2>&1 | tail -n 3; \
	  done; \
	done

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

clean:
	rm -rf bin out
