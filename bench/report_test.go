package main

import (
	"bytes"
	"encoding/csv"
	"encoding/xml"
	"io"
	"math"
	"strings"
	"testing"
)

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		in := append([]float64(nil), c.in...)
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
		if !equal(in, c.in) {
			t.Errorf("median reordered its input: %v", c.in)
		}
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median(nil) is not NaN")
	}
}

// TestRounds pairs the repetitions by number: a failed run or one with no
// counterpart is left out, a tie meets the target, and fewer than two
// pairs tell nothing.
func TestRounds(t *testing.T) {
	g := &cell{runs: []run{{Rep: 1, TPS: 30, AvgMs: 0.2}, {Rep: 2, TPS: 32, AvgMs: 0.3}, {Rep: 3, TPS: 25, AvgMs: 0.1}, {Rep: 4, TPS: 40, AvgMs: 0.1}}}
	x := &cell{runs: []run{{Rep: 1, TPS: 28, AvgMs: 0.2}, {Rep: 2, TPS: 33, AvgMs: 0.1}, {Rep: 3, Err: "failed"}}}
	if got := rounds(g, x, fTPS, true); got != "1 of 2" {
		t.Errorf("tps: %s, want 1 of 2", got)
	}
	if got := rounds(g, x, fAvg, false); got != "1 of 2" { // rep 1 ties
		t.Errorf("latency: %s, want 1 of 2", got)
	}
	if got := rounds(g, &cell{runs: x.runs[:1]}, fTPS, true); got != "—" {
		t.Errorf("one pair: %s, want —", got)
	}
}

func equal(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestNum(t *testing.T) {
	for _, c := range []struct {
		v    float64
		prec int
		want string
	}{
		{29121.4, 0, "29,121"},
		{1234567, 0, "1,234,567"},
		{-4321, 0, "-4,321"},
		{999, 0, "999"},
		{15.26, 1, "15.3"},
		{math.NaN(), 1, "—"},
		{math.Inf(1), 2, "—"},
	} {
		if got := num(c.v, c.prec); got != c.want {
			t.Errorf("num(%v, %d) = %q, want %q", c.v, c.prec, got, c.want)
		}
	}
}

// sampleRuns: two repetitions of select/simple/50 on three targets, one of
// select/simple/1000 where direct was left out, a storm, a large result
// and idle clients.
func sampleRuns() []run {
	sel := point{Scenario: scSelect, Protocol: "simple", Clients: 50}
	big := point{Scenario: scBig, Clients: 1000}
	idle := point{Scenario: scIdle, Clients: 100}
	return []run{
		{point: sel, Target: direct, Rep: 1, TPS: 40000, Txns: 160000, AvgMs: 1.2, P99Ms: 3},
		{point: sel, Target: pgmtsT, Rep: 1, TPS: 30000, Txns: 120000, AvgMs: 1.6, P99Ms: 4, CPUPerTxn: 14, PeakRSS: 20480},
		{point: sel, Target: pgbouncer, Rep: 1, TPS: 28000, Txns: 112000, AvgMs: 1.7, P99Ms: 5, CPUPerTxn: 16, PeakRSS: 8192, Failed: 2},
		{point: sel, Target: direct, Rep: 2, TPS: 42000, Txns: 168000, AvgMs: 1.1, P99Ms: 3},
		{point: sel, Target: pgmtsT, Rep: 2, TPS: 32000, Txns: 128000, AvgMs: 1.5, P99Ms: 4, CPUPerTxn: 12, PeakRSS: 20480},
		{point: sel, Target: pgbouncer, Rep: 2, Err: "pgbench select: no tps line\nmore"},
		{point: point{Scenario: scSelect, Protocol: "simple", Clients: 1000}, Target: pgmtsT, Rep: 1, TPS: 20000, Txns: 80000, CPUPerTxn: 20},
		{point: point{Scenario: scStorm, Clients: 10}, Target: pgmtsT, Rep: 1, TPS: 900, Txns: 3600},
		{point: point{Scenario: scStorm, Clients: 10}, Target: pgbouncer, Rep: 1, TPS: 750, Txns: 3000},
		{point: big, Target: direct, Rep: 1, MBps: 500},
		{point: big, Target: pgmtsT, Rep: 1, MBps: 400, RSSGrowthKiB: 4096},
		{point: big, Target: pgbouncer, Rep: 1, MBps: 300, RSSGrowthKiB: 1024},
		{point: idle, Target: pgmtsT, Rep: 1, Connected: 100, RSSPerClientKiB: 0.5},
		{point: idle, Target: pgbouncer, Rep: 1, Connected: 100, RSSPerClientKiB: 0.8},
	}
}

func TestCSV(t *testing.T) {
	var buf bytes.Buffer
	c, err := newCSVLog(&buf)
	if err != nil {
		t.Fatal(err)
	}
	runs := sampleRuns()
	for _, r := range runs {
		if err := c.add(r); err != nil {
			t.Fatal(err)
		}
	}
	recs, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != len(runs)+1 || strings.Join(recs[0], ",") != strings.Join(csvHeader, ",") {
		t.Fatalf("%d records, header %v", len(recs), recs[0])
	}
	col := func(rec []string, name string) string {
		for i, h := range csvHeader {
			if h == name {
				return rec[i]
			}
		}
		t.Fatalf("no column %s", name)
		return ""
	}
	for i := range runs {
		if n := len(recs[i+1]); n != len(csvHeader) {
			t.Fatalf("row %d has %d fields", i, n)
		}
	}
	pgm := recs[2]
	if col(pgm, "scenario") != "select" || col(pgm, "protocol") != "simple" || col(pgm, "clients") != "50" ||
		col(pgm, "target") != "pgmts" || col(pgm, "tps") != "30000.0" || col(pgm, "failed") != "0" ||
		col(pgm, "pooler_cpu_us_per_txn") != "14.00" || col(pgm, "idle_connected") != "" {
		t.Fatalf("pgmts row %v", pgm)
	}
	if e := recs[6]; col(e, "error") != "pgbench select: no tps line\nmore" || col(e, "failed") != "" {
		t.Fatalf("error row %v", e)
	}
	if idle := recs[13]; col(idle, "idle_connected") != "100" || col(idle, "idle_rss_per_client_kib") != "0.500" || col(idle, "failed") != "" {
		t.Fatalf("idle row %v", idle)
	}
}

func TestMarkdown(t *testing.T) {
	var b strings.Builder
	m := machine{Date: "2026-12-01 10:00 UTC", Command: "bin/pgmtsbench -T 15", NProc: 2, CPU: "AMD EPYC",
		Kernel: "6.1", Go: "go1.26", PostgreSQL: "15.18", Pgbench: "pgbench 15.18", PgBouncer: "PgBouncer 1.18.0",
		Pgmts: "abc123", Settings: "settings line."}
	if err := writeMarkdown(&b, summarize(sampleRuns()), m, "select-tps.svg"); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{
		// medians: direct (40000+42000)/2, pgmts 31000, PgBouncer its one good run
		"| select | 50 | simple | 41,000 | 31,000 | 28,000 | 1.11 | 0.76 | 13.0 | 16.0 | 0.81 |",
		"| select | 1000 | simple | — | 20,000 | — | — | — | 20.0 | — | — |",
		"| select | 50 | simple | 1.150 / 3.000 | 1.550 / 4.000 | 1.700 / 5.000 | 0 / 0 / 2 (runs that failed: 1) | 20.0 / 8.0 |",
		"| storm | 10 | simple | — | 900 | 750 | 1.20 |",
		"| pgmts | 400.0 | 4.0 |  |",
		"| direct | 500.0 | — |  |",
		"## One large result (1,000 rows of 1,000 bytes)",
		"| pgbouncer | 100 | 0.800 |  |",
		"pgmts/PgBouncer: 0.62",
		"| select/simple/50 tps ≥ PgBouncer | 31,000 | 28,000 | yes | — |", // PgBouncer's second run failed
		"| select/simple/50 CPU/txn ≤ PgBouncer (µs) | 13.0 | 16.0 | yes |",
		"| storm/10 connections/s ≥ PgBouncer | 900 | 750 | yes |",
		"| big/1000 pgmts RSS growth ≤ 32 MiB | 4.0 | 32.0 | yes |",
		"| idle/100 RSS per client ≤ PgBouncer (KiB) | 0.500 | 0.800 | yes |",
		"![select-only tps by clients](select-tps.svg)",
		"- command: `bin/pgmtsbench -T 15`",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("summary lacks %q:\n%s", want, md)
		}
	}
	// Every table row has as many cells as its header.
	var cols int
	for _, line := range strings.Split(md, "\n") {
		if !strings.HasPrefix(line, "|") {
			cols = 0
			continue
		}
		n := strings.Count(strings.ReplaceAll(line, `\|`, ""), "|")
		if cols == 0 {
			cols = n
		} else if n != cols {
			t.Errorf("row with %d separators under a header with %d: %s", n, cols, line)
		}
	}
}

func TestChart(t *testing.T) {
	s := summarize(append(sampleRuns(),
		run{point: point{Scenario: scSelect, Protocol: "simple", Clients: 1}, Target: pgmtsT, Rep: 1, TPS: 9000},
		run{point: point{Scenario: scSelect, Protocol: "extended", Clients: 1}, Target: direct, Rep: 1, TPS: 12000}))
	lines := selectSeries(s)
	// direct simple, pgmts simple, PgBouncer simple, direct extended
	if len(lines) != 4 || lines[1].name != "pgmts simple" || len(lines[1].x) != 3 || lines[3].name != "direct extended" || !lines[3].dashed {
		t.Fatalf("series %+v", lines)
	}
	var buf bytes.Buffer
	if err := writeChart(&buf, "tps <by> clients", lines); err != nil {
		t.Fatal(err)
	}
	// Well-formed XML with one polyline per series.
	dec := xml.NewDecoder(&buf)
	polylines := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "polyline" {
			polylines++
		}
	}
	if polylines != 4 {
		t.Fatalf("%d polylines", polylines)
	}
	if err := writeChart(io.Discard, "empty", nil); err == nil {
		t.Fatal("no data: want an error")
	}
}

func TestNiceStep(t *testing.T) {
	for in, want := range map[float64]float64{0: 1, 0.3: 0.5, 7: 10, 9000: 10000, 12000: 20000, 4100: 5000} {
		if got := niceStep(in); math.Abs(got-want) > 1e-9 {
			t.Errorf("niceStep(%v) = %v, want %v", in, got, want)
		}
	}
}
