package main

import (
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Targets, in the order every repetition runs them.
const (
	direct    = "direct"
	pgmtsT    = "pgmts"
	pgbouncer = "pgbouncer"
)

// Scenarios.
const (
	scSelect  = "select"
	scTPCB    = "tpcb"
	scSession = "session"
	scStorm   = "storm"
	scPaced   = "paced"
	scBig     = "big"
	scIdle    = "idle"
	scInstr   = "instructions"
)

// point is one measured configuration; each target runs it once per
// repetition.
type point struct {
	Scenario string
	Protocol string // select only
	Clients  int    // idle: clients opened; big: rows read
}

// label names the point in progress lines, the CSV and -cpuprofile.
func (p point) label() string {
	if p.Scenario == scSelect || p.Scenario == scInstr {
		return fmt.Sprintf("%s/%s/%d", p.Scenario, p.Protocol, p.Clients)
	}
	return fmt.Sprintf("%s/%d", p.Scenario, p.Clients)
}

// run is one measurement. Fields that do not apply stay zero and are
// written as empty CSV cells (see csvFields).
type run struct {
	point
	Target string
	Rep    int
	Err    string

	// pgbench scenarios
	TPS       float64 // storm: connections per second
	ConnectMs float64 // pgbench's initial connection time
	Txns      int64
	AvgMs     float64
	P99Ms     float64
	Failed    int64
	Aborted   int
	CPUPerTxn float64 // pooler's µs of CPU per transaction
	PeakRSS   int64   // pooler's peak KiB during the run

	// idle
	Connected       int
	RSSPerClientKiB float64

	// big result
	MBps         float64
	RSSGrowthKiB int64

	// instructions: the pooler's user-space instructions per transaction
	InstrPerTxn float64
}

var csvHeader = []string{"scenario", "protocol", "clients", "target", "rep",
	"tps", "connect_ms", "transactions", "avg_latency_ms", "p99_latency_ms", "failed", "aborted_clients",
	"pooler_cpu_us_per_txn", "pooler_peak_rss_kib",
	"idle_connected", "idle_rss_per_client_kib", "big_mb_per_s", "big_rss_growth_kib",
	"user_instructions_per_txn", "error"}

func (r run) csvFields() []string {
	f := func(v float64, prec int) string {
		if v == 0 {
			return ""
		}
		return strconv.FormatFloat(v, 'f', prec, 64)
	}
	i := func(v int64) string {
		if v == 0 {
			return ""
		}
		return strconv.FormatInt(v, 10)
	}
	pgbench := r.Scenario != scIdle && r.Scenario != scBig && r.Scenario != scInstr
	counts := func(v int64) string { // zero failures is a figure, not a blank
		if pgbench && r.Err == "" {
			return strconv.FormatInt(v, 10)
		}
		return i(v)
	}
	return []string{r.Scenario, r.Protocol, strconv.Itoa(r.Clients), r.Target, strconv.Itoa(r.Rep),
		f(r.TPS, 1), f(r.ConnectMs, 1), i(r.Txns), f(r.AvgMs, 3), f(r.P99Ms, 3), counts(r.Failed), counts(int64(r.Aborted)),
		f(r.CPUPerTxn, 2), i(r.PeakRSS),
		i(int64(r.Connected)), f(r.RSSPerClientKiB, 3), f(r.MBps, 1), i(r.RSSGrowthKiB), f(r.InstrPerTxn, 0), r.Err}
}

// csvLog writes runs as they finish, so an interrupted run keeps its rows.
type csvLog struct {
	w *csv.Writer
}

func newCSVLog(w io.Writer) (*csvLog, error) {
	c := &csvLog{w: csv.NewWriter(w)}
	return c, c.write(csvHeader)
}

func (c *csvLog) add(r run) error { return c.write(r.csvFields()) }

func (c *csvLog) write(rec []string) error {
	if err := c.w.Write(rec); err != nil {
		return err
	}
	c.w.Flush()
	return c.w.Error()
}

// median of the values; NaN for none.
func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// summary is the medians of every point and target.
type summary struct {
	points []point // in the order they were run
	cells  map[point]map[string]*cell
}

// cell is one point and target over its repetitions.
type cell struct {
	runs []run
}

func summarize(runs []run) *summary {
	s := &summary{cells: map[point]map[string]*cell{}}
	for _, r := range runs {
		byTarget, ok := s.cells[r.point]
		if !ok {
			byTarget = map[string]*cell{}
			s.cells[r.point] = byTarget
			s.points = append(s.points, r.point)
		}
		c, ok := byTarget[r.Target]
		if !ok {
			c = &cell{}
			byTarget[r.Target] = c
		}
		c.runs = append(c.runs, r)
	}
	return s
}

// get returns the cell of a point and target, nil when it was not run.
func (s *summary) get(p point, target string) *cell {
	return s.cells[p][target]
}

// med is the median of field over the repetitions that did not fail to
// run; NaN when none did.
func (c *cell) med(field func(run) float64) float64 {
	if c == nil {
		return math.NaN()
	}
	var v []float64
	for _, r := range c.runs {
		if r.Err == "" {
			v = append(v, field(r))
		}
	}
	return median(v)
}

// failed sums failed transactions and aborted clients over the
// repetitions, and counts repetitions that did not run.
func (c *cell) failed() (txns int64, aborted int, errs int) {
	if c == nil {
		return 0, 0, 0
	}
	for _, r := range c.runs {
		txns += r.Failed
		aborted += r.Aborted
		if r.Err != "" {
			errs++
		}
	}
	return txns, aborted, errs
}

func fTPS(r run) float64         { return r.TPS }
func fAvg(r run) float64         { return r.AvgMs }
func fP99(r run) float64         { return r.P99Ms }
func fCPU(r run) float64         { return r.CPUPerTxn }
func fRSS(r run) float64         { return float64(r.PeakRSS) }
func fIdle(r run) float64        { return r.RSSPerClientKiB }
func fConn(r run) float64        { return float64(r.Connected) }
func fMBps(r run) float64        { return r.MBps }
func fGrowth(r run) float64      { return float64(r.RSSGrowthKiB) }
func fInstr(r run) float64       { return r.InstrPerTxn }
func ratio(a, b float64) float64 { return a / b }

// num formats a figure, "—" when it is missing.
func num(v float64, prec int) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "—"
	}
	s := strconv.FormatFloat(v, 'f', prec, 64)
	// Thousands separators for large figures, as in BASELINE.md.
	if prec == 0 && math.Abs(v) >= 1000 {
		neg := strings.HasPrefix(s, "-")
		s = strings.TrimPrefix(s, "-")
		var b strings.Builder
		for i, ch := range s {
			if i > 0 && (len(s)-i)%3 == 0 {
				b.WriteByte(',')
			}
			b.WriteRune(ch)
		}
		s = b.String()
		if neg {
			s = "-" + s
		}
	}
	return s
}

// machine describes where and how the run was made.
type machine struct {
	Date, Command                  string
	NProc                          int
	CPU, Kernel, Go                string
	PostgreSQL, PgBouncer, Pgbench string
	Pgmts                          string
	Settings                       string
}

// writeMarkdown writes the summary: tables of medians and ratios, the
// issue's targets checked, and the machine. chart is the SVG's file name.
func writeMarkdown(w io.Writer, s *summary, m machine, chart string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# pgmts benchmark, %s\n\n", m.Date)
	fmt.Fprintf(&b, "Medians over the repetitions; targets interleaved, the order turned by one place each round (direct, pgmts, PgBouncer; pgmts, PgBouncer, direct; ...). %s\n\n", m.Settings)

	var pgb []point
	for _, p := range s.points {
		if p.Scenario != scIdle && p.Scenario != scBig && p.Scenario != scInstr {
			pgb = append(pgb, p)
		}
	}
	if len(pgb) > 0 {
		b.WriteString("## Throughput and pooler CPU\n\n")
		b.WriteString("tps (storm: connections/s); µs = the pooler's CPU (utime+stime) per transaction.\n\n")
		b.WriteString("| scenario | clients | protocol | direct | pgmts | PgBouncer | pgmts/PgBouncer | pgmts/direct | pgmts µs | PgBouncer µs | µs pgmts/PgBouncer |\n")
		b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, p := range pgb {
			d, g, x := s.get(p, direct).med(fTPS), s.get(p, pgmtsT).med(fTPS), s.get(p, pgbouncer).med(fTPS)
			gc, xc := s.get(p, pgmtsT).med(fCPU), s.get(p, pgbouncer).med(fCPU)
			fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
				p.Scenario, p.Clients, protocolOf(p), num(d, 0), num(g, 0), num(x, 0),
				num(ratio(g, x), 2), num(ratio(g, d), 2), num(gc, 1), num(xc, 1), num(ratio(gc, xc), 2))
		}
		b.WriteString("\n## Latency, failures, memory\n\n")
		b.WriteString("Latency in ms from pgbench's per-transaction log (average / p99); failed = failed transactions + aborted clients, summed over the repetitions; peak RSS of the pooler during the run, MiB.\n\n")
		b.WriteString("| scenario | clients | protocol | direct ms | pgmts ms | PgBouncer ms | failed direct / pgmts / PgBouncer | peak RSS pgmts / PgBouncer |\n")
		b.WriteString("|---|---|---|---|---|---|---|---|\n")
		for _, p := range pgb {
			lat := func(t string) string {
				c := s.get(p, t)
				return num(c.med(fAvg), 3) + " / " + num(c.med(fP99), 3)
			}
			fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %s / %s / %s | %s / %s |\n",
				p.Scenario, p.Clients, protocolOf(p), lat(direct), lat(pgmtsT), lat(pgbouncer),
				failures(s.get(p, direct)), failures(s.get(p, pgmtsT)), failures(s.get(p, pgbouncer)),
				num(s.get(p, pgmtsT).med(fRSS)/1024, 1), num(s.get(p, pgbouncer).med(fRSS)/1024, 1))
		}
		b.WriteString("\n")
	}
	for _, p := range s.points {
		switch p.Scenario {
		case scIdle:
			fmt.Fprintf(&b, "## %s idle SCRAM clients\n\n", num(float64(p.Clients), 0))
			b.WriteString("RSS per client = (RSS with every client idle − RSS before) / clients connected, on a freshly started pooler.\n\n")
			b.WriteString("| target | connected | KiB per client | errors |\n|---|---|---|---|\n")
			for _, t := range []string{pgmtsT, pgbouncer} {
				if c := s.get(p, t); c != nil {
					fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", t, num(c.med(fConn), 0), num(c.med(fIdle), 3), firstErr(c))
				}
			}
			if g, x := s.get(p, pgmtsT).med(fIdle), s.get(p, pgbouncer).med(fIdle); !math.IsNaN(g) && !math.IsNaN(x) {
				fmt.Fprintf(&b, "\npgmts/PgBouncer: %s\n", num(ratio(g, x), 2))
			}
			b.WriteString("\n")
		case scBig:
			fmt.Fprintf(&b, "## One large result (%s rows of 1,000 bytes)\n\n", num(float64(p.Clients), 0))
			b.WriteString("| target | MB/s | pooler RSS growth, MiB | errors |\n|---|---|---|---|\n")
			for _, t := range []string{direct, pgmtsT, pgbouncer} {
				if c := s.get(p, t); c != nil {
					growth := num(c.med(fGrowth)/1024, 1)
					if t == direct {
						growth = "—"
					}
					fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", t, num(c.med(fMBps), 1), growth, firstErr(c))
				}
			}
			b.WriteString("\n")
		}
	}
	writeInstructions(&b, s)
	writeTargets(&b, s)
	if chart != "" {
		fmt.Fprintf(&b, "## Select-only tps by clients\n\n![select-only tps by clients](%s)\n\n", chart)
	}
	b.WriteString("## Machine\n\n")
	fmt.Fprintf(&b, "- nproc: %d; CPU: %s; kernel: %s\n", m.NProc, m.CPU, m.Kernel)
	fmt.Fprintf(&b, "- %s; PostgreSQL %s; %s; %s; pgmts %s\n", m.Go, m.PostgreSQL, m.Pgbench, m.PgBouncer, m.Pgmts)
	fmt.Fprintf(&b, "- command: `%s`\n", m.Command)
	_, err := io.WriteString(w, b.String())
	return err
}

// writeInstructions is the table of the instructions scenario, if run.
func writeInstructions(b *strings.Builder, s *summary) {
	var rows []point
	for _, p := range s.points {
		if p.Scenario == scInstr {
			rows = append(rows, p)
		}
	}
	if len(rows) == 0 {
		return
	}
	b.WriteString("## User-space instructions per transaction\n\n")
	b.WriteString("One client, select-only; valgrind's callgrind counts every instruction the pooler runs in user space (the kernel's work is not counted). The count is the same run after run, whatever else the machine does, so it shows a change to the per-transaction path that timings on a noisy machine cannot.\n\n")
	b.WriteString("| protocol | pgmts | PgBouncer | pgmts/PgBouncer | errors |\n|---|---|---|---|---|\n")
	for _, p := range rows {
		g, x := s.get(p, pgmtsT), s.get(p, pgbouncer)
		errs := ""
		for _, c := range []*cell{g, x} {
			if c != nil && firstErr(c) != "" {
				errs = firstErr(c)
			}
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s |\n", protocolOf(p),
			num(g.med(fInstr), 0), num(x.med(fInstr), 0), num(ratio(g.med(fInstr), x.med(fInstr)), 2), errs)
	}
	b.WriteString("\n")
}

func protocolOf(p point) string {
	if p.Protocol == "" {
		return "simple"
	}
	return p.Protocol
}

func failures(c *cell) string {
	if c == nil {
		return "—"
	}
	txns, aborted, errs := c.failed()
	s := strconv.FormatInt(txns+int64(aborted), 10)
	if errs > 0 {
		s += fmt.Sprintf(" (runs that failed: %d)", errs)
	}
	return s
}

// rounds counts the repetitions in which pgmts's figure met the target
// against PgBouncer's in the same repetition: "k of n", or "—" with fewer
// than two such pairs.
func rounds(g, x *cell, field func(run) float64, higher bool) string {
	other := map[int]float64{}
	for _, r := range x.runs {
		if r.Err == "" {
			other[r.Rep] = field(r)
		}
	}
	k, n := 0, 0
	for _, r := range g.runs {
		v, ok := other[r.Rep]
		if r.Err != "" || !ok {
			continue
		}
		n++
		if higher && field(r) >= v || !higher && field(r) <= v {
			k++
		}
	}
	if n < 2 {
		return "—"
	}
	return fmt.Sprintf("%d of %d", k, n)
}

func firstErr(c *cell) string {
	for _, r := range c.runs {
		if r.Err != "" {
			return strings.ReplaceAll(firstLine(r.Err), "|", `\|`)
		}
	}
	return ""
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// writeTargets checks the figures issue 5 asks for, where both sides ran.
func writeTargets(b *strings.Builder, s *summary) {
	type check struct {
		what   string
		pgmts  float64
		other  float64
		better string // "higher" or "lower"
		prec   int
		rounds string // the repetitions that met it on their own (rounds)
	}
	var checks []check
	for _, p := range s.points {
		g, x, d := s.get(p, pgmtsT), s.get(p, pgbouncer), s.get(p, direct)
		if g == nil || x == nil {
			continue
		}
		switch {
		case p.Scenario == scSelect && (p.Clients == 50 || p.Clients == 200):
			checks = append(checks,
				check{p.label() + " tps ≥ PgBouncer", g.med(fTPS), x.med(fTPS), "higher", 0, rounds(g, x, fTPS, true)},
				check{p.label() + " CPU/txn ≤ PgBouncer (µs)", g.med(fCPU), x.med(fCPU), "lower", 1, rounds(g, x, fCPU, false)})
		case p.Scenario == scSelect && p.Clients == 1 && d != nil:
			base := d.med(fAvg)
			// Within a round both poolers are measured against the same
			// direct run, so comparing added latency is comparing latency.
			checks = append(checks, check{p.label() + " latency added over direct ≤ PgBouncer's (ms)",
				g.med(fAvg) - base, x.med(fAvg) - base, "lower", 3, rounds(g, x, fAvg, false)})
		case p.Scenario == scSelect && p.Clients == 1000:
			gt, ga, ge := g.failed()
			checks = append(checks,
				check{p.label() + " failed transactions, aborted clients, failed runs = 0", float64(gt + int64(ga) + int64(ge)), 0, "lower", 0, "—"},
				check{p.label() + " tps ≥ PgBouncer", g.med(fTPS), x.med(fTPS), "higher", 0, rounds(g, x, fTPS, true)})
		case p.Scenario == scIdle:
			checks = append(checks,
				check{p.label() + " all connected", g.med(fConn), float64(p.Clients), "higher", 0, "—"},
				check{p.label() + " RSS per client ≤ PgBouncer (KiB)", g.med(fIdle), x.med(fIdle), "lower", 3, rounds(g, x, fIdle, false)})
		case p.Scenario == scStorm:
			checks = append(checks, check{p.label() + " connections/s ≥ PgBouncer", g.med(fTPS), x.med(fTPS), "higher", 0, rounds(g, x, fTPS, true)})
		case p.Scenario == scBig:
			checks = append(checks,
				check{p.label() + " MB/s ≥ PgBouncer", g.med(fMBps), x.med(fMBps), "higher", 1, rounds(g, x, fMBps, true)},
				check{p.label() + " pgmts RSS growth ≤ 32 MiB", g.med(fGrowth) / 1024, 32, "lower", 1, "—"})
		}
	}
	if len(checks) == 0 {
		return
	}
	b.WriteString("## Issue 5's targets\n\nMet: on the medians. Rounds: the repetitions in which pgmts met the target against PgBouncer's run of the same round (targets run interleaved, so a round's runs share the machine's conditions); a target met on the medians in few rounds is as likely to be missed in the next run.\n\n")
	b.WriteString("| target | pgmts | other | met | rounds |\n|---|---|---|---|---|\n")
	for _, c := range checks {
		met := "no"
		switch {
		case math.IsNaN(c.pgmts) || math.IsNaN(c.other):
			met = "—"
		case c.better == "higher" && c.pgmts >= c.other, c.better == "lower" && c.pgmts <= c.other:
			met = "yes"
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s |\n", c.what, num(c.pgmts, c.prec), num(c.other, c.prec), met, c.rounds)
	}
	b.WriteString("\n")
}
