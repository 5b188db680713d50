package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// pgbenchResult is what one pgbench run reports: its summary lines and the
// per-transaction log it wrote.
type pgbenchResult struct {
	TPS       float64 // pgbench's own figure, without initial connection time
	ConnectMs float64 // pgbench's initial connection time: its clients' logins
	Processed int64   // transactions processed
	Failed    int64   // failed transactions (pgbench's summary or the log, the larger)
	Aborted   int     // clients pgbench aborted (connection lost, unexpected error)
	AvgMs     float64 // mean latency of the logged transactions
	P99Ms     float64
}

var (
	tpsLine       = regexp.MustCompile(`(?m)^tps = ([0-9.]+)`)
	processedLine = regexp.MustCompile(`(?m)^number of transactions actually processed: (\d+)`)
	failedLine    = regexp.MustCompile(`(?m)^number of failed transactions: (\d+)`)
	connectLine   = regexp.MustCompile(`(?m)^initial connection time = ([0-9.]+) ms`)
	abortedLine   = regexp.MustCompile(`client \d+ aborted`)
)

// parsePgbenchOutput reads pgbench's combined output. A run that pgbench
// aborted still prints figures for what it did, so only a missing tps line
// is an error.
func parsePgbenchOutput(out string) (pgbenchResult, error) {
	var r pgbenchResult
	if m := processedLine.FindStringSubmatch(out); m != nil {
		r.Processed, _ = strconv.ParseInt(m[1], 10, 64)
	}
	m := tpsLine.FindStringSubmatch(out)
	if m == nil && processedLine.MatchString(out) && r.Processed == 0 {
		// pgbench counts its logins in -T; they took it all.
		return r, errors.New("no transaction completed: the clients' logins took the whole run (raise -T)")
	}
	if m == nil {
		return r, errors.New("no tps line in pgbench's output")
	}
	r.TPS, _ = strconv.ParseFloat(m[1], 64)
	if m := connectLine.FindStringSubmatch(out); m != nil {
		r.ConnectMs, _ = strconv.ParseFloat(m[1], 64)
	}
	if m := failedLine.FindStringSubmatch(out); m != nil {
		r.Failed, _ = strconv.ParseInt(m[1], 10, 64)
	}
	r.Aborted = len(abortedLine.FindAllString(out, -1))
	return r, nil
}

// txnLog accumulates pgbench's per-transaction log lines:
// "client_id transaction_no time script_no time_epoch time_us [...]",
// where time is the latency in µs, or "failed" (also "serialization" or
// "deadlock" with --failures-detailed), or "skipped" under --rate.
type txnLog struct {
	latencies []float64 // µs
	failed    int64
}

func (l *txnLog) read(r io.Reader) error {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 6 {
			return fmt.Errorf("short pgbench log line %q", sc.Text())
		}
		switch f[2] {
		case "failed", "serialization", "deadlock":
			l.failed++
		case "skipped":
		default:
			us, err := strconv.ParseFloat(f[2], 64)
			if err != nil {
				return fmt.Errorf("pgbench log line %q: %v", sc.Text(), err)
			}
			l.latencies = append(l.latencies, us)
		}
	}
	return sc.Err()
}

// stats returns the mean and the 99th percentile (nearest rank) in ms.
func (l *txnLog) stats() (avg, p99 float64) {
	n := len(l.latencies)
	if n == 0 {
		return 0, 0
	}
	slices.Sort(l.latencies)
	var sum float64
	for _, v := range l.latencies {
		sum += v
	}
	rank := (99*n + 99) / 100 // ceil(0.99 n), 1-based
	return sum / float64(n) / 1000, l.latencies[rank-1] / 1000
}

// pgbenchRun describes one pgbench invocation.
type pgbenchRun struct {
	bin      string
	host     string
	port     int
	user     string
	password string
	dbname   string
	sslmode  string
	args     []string // scenario arguments: -S, -M, -c, -j, -T, -C
	logDir   string   // an empty directory for the per-transaction logs
}

// run executes pgbench and returns its figures. err is set when pgbench did
// not run a benchmark at all; aborted clients are reported in the result.
func (p pgbenchRun) run(ctx context.Context) (pgbenchResult, error) {
	args := append([]string{"-n", "-h", p.host, "-p", strconv.Itoa(p.port), "-U", p.user,
		"--log", "--log-prefix=" + filepath.Join(p.logDir, "txn")}, p.args...)
	cmd := exec.CommandContext(ctx, p.bin, append(args, p.dbname)...)
	cmd.Dir = p.logDir
	cmd.Env = append(os.Environ(), "PGPASSWORD="+p.password, "PGSSLMODE="+p.sslmode)
	out, runErr := cmd.CombinedOutput()
	r, err := parsePgbenchOutput(string(out))
	if err != nil {
		return r, fmt.Errorf("pgbench %s: %v (%v)\n%s", strings.Join(p.args, " "), err, runErr, lastLines(string(out), 5))
	}
	logs, err := filepath.Glob(filepath.Join(p.logDir, "txn.*"))
	if err != nil {
		return r, err
	}
	var l txnLog
	for _, name := range logs {
		f, err := os.Open(name)
		if err != nil {
			return r, err
		}
		err = l.read(f)
		f.Close()
		os.Remove(name)
		if err != nil {
			return r, err
		}
	}
	r.Failed = max(r.Failed, l.failed)
	r.AvgMs, r.P99Ms = l.stats()
	return r, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
