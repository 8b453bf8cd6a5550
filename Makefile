# mailconf — `make run` starts the embedded default, `make test` runs every test.
GO      ?= go
BIN     ?= bin/mailconf
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
FUZZTIME ?= 30s

.PHONY: run build test vet fmt bench bench-deps fuzz clean

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/mailconf

run: build
	./$(BIN) serve

# Every test, with the race detector off to fit a 2-core machine's CI budget,
# then the IMAP server's again under it: its FETCH hands body buffers
# between goroutines, and a buffer recycled too early shows reliably only
# to the race detector. `go vet` and gofmt first so style problems fail fast.
test: vet
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) test -count=1 -timeout 30m ./...
	$(GO) test -count=1 -race -timeout 30m ./mailserver/imap

vet:
	$(GO) vet ./...

fmt:
	gofmt -w .

# Go benchmarks, then each comparison against its baseline in the same run
# (needs `make bench-deps`). bench/probe needs a server to probe: see README.
bench: build
	$(GO) test -run '^$$' -bench . -benchmem ./...
	bench/http/run.sh
	bench/smtp/run.sh
	$(GO) run ./bench/imap
	$(GO) run ./bench/pop3

# The baselines and load generators the benchmarks compare against
# (Debian packages; their system services are left stopped).
bench-deps:
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
	  wrk nginx-light postfix dovecot-imapd dovecot-pop3d
	-for s in postfix dovecot nginx; do service $$s stop >/dev/null 2>&1; done

# Fuzz every parser for FUZZTIME each (go test allows one target per run).
fuzz:
	@set -e; for t in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
	  for f in $$(grep -h '^func Fuzz' $$t/*_test.go | sed 's/func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do \
	    echo "== $$t $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$t; \
	  done; done

clean:
	rm -rf bin
