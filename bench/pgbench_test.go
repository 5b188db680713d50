package main

import (
	"math"
	"strconv"
	"strings"
	"testing"
)

// A PostgreSQL 15 pgbench summary, trimmed.
const pgbenchOutput = `pgbench (15.18 (Debian 15.18-0+deb12u1))
transaction type: <builtin: select only>
scaling factor: 10
query mode: simple
number of clients: 50
number of threads: 2
maximum number of tries: 1
duration: 4 s
number of transactions actually processed: 116402
number of failed transactions: 3 (0.003%)
latency average = 1.717 ms
initial connection time = 61.320 ms
tps = 29121.449018 (without initial connection time)
`

func TestParsePgbenchOutput(t *testing.T) {
	r, err := parsePgbenchOutput(pgbenchOutput)
	if err != nil {
		t.Fatal(err)
	}
	if r.TPS != 29121.449018 || r.Processed != 116402 || r.Failed != 3 || r.Aborted != 0 || r.ConnectMs != 61.32 {
		t.Fatalf("parsed %+v", r)
	}
	aborted := "pgbench: error: client 3 aborted in command 1 (SQL) of script 0; perhaps the backend died while processing\n" +
		"pgbench: error: client 7 aborted in command 1 (SQL) of script 0; perhaps the backend died while processing\n" +
		pgbenchOutput + "pgbench: fatal: Run was aborted; the above results are incomplete.\n"
	if r, err := parsePgbenchOutput(aborted); err != nil || r.Aborted != 2 {
		t.Fatalf("aborted run: %+v, %v", r, err)
	}
	if _, err := parsePgbenchOutput("pgbench: error: connection to server failed\n"); err == nil {
		t.Fatal("no tps line: want an error")
	}
	// PostgreSQL 15's pgbench when -T ends before any transaction.
	zero := "duration: 2 s\nnumber of transactions actually processed: 0\nnumber of failed transactions: 0 (NaN%)\n"
	if _, err := parsePgbenchOutput(zero); err == nil || !strings.Contains(err.Error(), "logins took the whole run") {
		t.Fatalf("no transaction: %v", err)
	}
}

func TestTxnLog(t *testing.T) {
	var l txnLog
	var b strings.Builder
	// 200 transactions of 1..200 µs, then a failed and a skipped one.
	for i := 1; i <= 200; i++ {
		b.WriteString("0 " + strconv.Itoa(i) + " " + strconv.Itoa(i) + " 0 1700000000 123456\n")
	}
	b.WriteString("3 9 failed 0 1700000000 123456\n")
	b.WriteString("3 10 skipped 0 1700000000 123456 17\n")
	if err := l.read(strings.NewReader(b.String())); err != nil {
		t.Fatal(err)
	}
	avg, p99 := l.stats()
	if l.failed != 1 || len(l.latencies) != 200 || math.Abs(avg-0.1005) > 1e-9 || p99 != 0.198 {
		t.Fatalf("failed %d, %d latencies, avg %v ms, p99 %v ms", l.failed, len(l.latencies), avg, p99)
	}
	if err := l.read(strings.NewReader("0 1 x 0 1 2\n")); err == nil {
		t.Fatal("bad latency: want an error")
	}
	if err := l.read(strings.NewReader("0 1\n")); err == nil {
		t.Fatal("short line: want an error")
	}
	var empty txnLog
	if avg, p99 := empty.stats(); avg != 0 || p99 != 0 {
		t.Fatalf("empty log: %v %v", avg, p99)
	}
}
