# pgmts: `make run` starts the daemon in front of a scratch PostgreSQL;
# `make test` runs every test.
GO       ?= go
BIN      := bin/pgmts
CONFIG   ?= pgmts.example.toml
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
FUZZTIME ?= 400000x
STATICCHECK := $(shell $(GO) env GOPATH)/bin/staticcheck

.PHONY: build run test lint fuzz bench bench-smoke bench-micro staticcheck

# A static binary (no cgo): it runs on any Linux of its architecture
# without a matching libc, and it does not map libc, whose pages a burst
# of logins touches (about 250 KiB of resident memory; bench/FINDINGS.md,
# "Idle memory"). Host names resolve with Go's own resolver (/etc/hosts,
# then DNS, as /etc/nsswitch.conf orders them).
build:
	CGO_ENABLED=0 $(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/pgmts

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
	# The vendored gnet is a module of its own: ./... leaves it out.
	cd third_party/gnet && $(GO) test -race -count=1 ./...
	$(MAKE) fuzz
	$(MAKE) bench-smoke

lint: staticcheck
	@out=$$(gofmt -l .); \
		if [ -n "$$out" ]; then echo "not gofmt-clean: $$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...

staticcheck:
	@test -x $(STATICCHECK) || $(GO) install honnef.co/go/tools/cmd/staticcheck@v0.6.1

# Short fuzz runs of the framing, startup and hba parsing (FUZZTIME each).
# The budget is a count of executions (about 10 s each here), not a
# duration: Go 1.26's fuzz coordinator can report "context deadline
# exceeded" as a failure when a duration ends (golang/go#75804).
# Minimizing a new input may take up to a minute by default, longer than a
# short run: cap it so the run ends on time.
fuzz:
	$(GO) test -run='^$$' -fuzz='^FuzzParseStartup$$' -fuzztime=$(FUZZTIME) -fuzzminimizetime=1s ./wire/
	$(GO) test -run='^$$' -fuzz='^FuzzFraming$$' -fuzztime=$(FUZZTIME) -fuzzminimizetime=1s ./wire/
	$(GO) test -run='^$$' -fuzz='^FuzzParse$$' -fuzztime=$(FUZZTIME) -fuzzminimizetime=1s ./hba/

# The side-by-side harness (bench/, README "Benchmarks"): direct
# PostgreSQL, pgmts and PgBouncer interleaved, results under bench/results/.
# BENCHFLAGS passes flags, e.g. BENCHFLAGS="-T 15 -scenarios select".
bench: build
	$(GO) build -o bin/pgmtsbench ./bench
	bin/pgmtsbench $(BENCHFLAGS)

# About a minute: does the harness still work? Never fails on timings.
bench-smoke: build
	$(GO) build -o bin/pgmtsbench ./bench
	bin/pgmtsbench -smoke

# Go benchmarks of framing and the request and response queues, with
# allocation counts.
bench-micro:
	$(GO) test -run='^$$' -bench=. -benchmem ./wire/ ./queue/
