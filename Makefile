# mailconf — `make run` starts the embedded default, `make test` runs every test.
GO      ?= go
BIN     ?= bin/mailconf
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
FUZZTIME ?= 30s

.PHONY: run build test vet fmt bench fuzz clean

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/mailconf

run: build
	./$(BIN) serve

# Every test, with the race detector off to fit a 2-core machine's CI budget;
# `go vet` and gofmt first so style problems fail fast.
test: vet
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) test -count=1 -timeout 30m ./...

vet:
	$(GO) vet ./...

fmt:
	gofmt -w .

# Go benchmarks, then the comparison scripts against the baselines.
bench: build
	$(GO) test -run '^$$' -bench . -benchmem ./...
	bench/http/run.sh

# Fuzz every parser for FUZZTIME each (go test allows one target per run).
fuzz:
	@set -e; for t in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
	  for f in $$(grep -h '^func Fuzz' $$t/*_test.go | sed 's/func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do \
	    echo "== $$t $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$t; \
	  done; done

clean:
	rm -rf bin
