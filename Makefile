# pgmts: `make run` starts the daemon in front of a scratch PostgreSQL;
# `make test` runs every test.
GO       ?= go
BIN      := bin/pgmts
CONFIG   ?= pgmts.example.toml
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
FUZZTIME ?= 10s
STATICCHECK := $(shell $(GO) env GOPATH)/bin/staticcheck

.PHONY: build run test lint fuzz bench staticcheck

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/pgmts

# The sample config points at 127.0.0.1:5432; scratch-pg.sh reuses a server
# already there, or starts one under .scratch/ (git-ignored).
run: build
	scripts/scratch-pg.sh start
	@echo
	@echo "pgmts: connect with  psql 'host=127.0.0.1 port=6432 user=postgres password=postgres dbname=postgres'"
	@echo
	$(BIN) -c $(CONFIG)

test: lint
	$(GO) test -race -count=1 -timeout 25m ./...
	$(MAKE) fuzz

lint: staticcheck
	@out=$$(gofmt -l .); \
		if [ -n "$$out" ]; then echo "not gofmt-clean: $$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...

staticcheck:
	@test -x $(STATICCHECK) || $(GO) install honnef.co/go/tools/cmd/staticcheck@v0.6.1

# Short fuzz runs of the framing, startup and hba parsing (FUZZTIME each).
# Minimizing a new input may take up to a minute by default, longer than a
# short run: cap it so the run ends on time.
fuzz:
	$(GO) test -run='^$$' -fuzz='^FuzzParseStartup$$' -fuzztime=$(FUZZTIME) -fuzzminimizetime=1s ./wire/
	$(GO) test -run='^$$' -fuzz='^FuzzFraming$$' -fuzztime=$(FUZZTIME) -fuzzminimizetime=1s ./wire/
	$(GO) test -run='^$$' -fuzz='^FuzzParse$$' -fuzztime=$(FUZZTIME) -fuzzminimizetime=1s ./hba/

# Micro-benchmarks of the hot path, then pgbench through pgmts and directly.
bench: build
	$(GO) test -run='^$$' -bench=. -benchmem ./wire/ ./queue/
	bench/pgbench.sh
