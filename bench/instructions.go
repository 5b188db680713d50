package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// instructionsPoint counts the user-space instructions each pooler runs
// per transaction at one client, under valgrind's callgrind: a figure
// that is the same run after run, where timings on a shared two-core VM
// vary by ±10%. Each pooler runs twice, each time as a fresh process on
// a port of its own: logins and a warm-up, then n transactions; then the
// same with 3n. The difference of the two totals over 2n is the cost of
// a transaction alone (start-up, logins and shutdown cancel out).
func (b *bench) instructionsPoint(ctx context.Context, p point, targets []string) error {
	valgrind, err := exec.LookPath("valgrind")
	if err != nil {
		progress("%s: valgrind is not installed (apt-get install valgrind): skipped", p.label())
		b.done += len(targets)
		return nil
	}
	n := b.o.instrTxns
	for _, t := range targets {
		r := run{point: p, Target: t, Rep: 1}
		var totals []int64
		for _, txns := range []int{n, 3 * n} {
			total, err := b.countInstructions(ctx, valgrind, t, p.Protocol, txns)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err != nil {
				r.Err = err.Error()
				break
			}
			totals = append(totals, total)
		}
		if r.Err == "" {
			r.InstrPerTxn = float64(totals[1]-totals[0]) / float64(2*n)
		}
		b.record(r)
	}
	return nil
}

// countInstructions starts target under callgrind, runs a warm-up and
// then txns select-only transactions through it, one client, stops it
// and returns the instructions callgrind counted in all.
func (b *bench) countInstructions(ctx context.Context, valgrind, target, protocol string, txns int) (int64, error) {
	dir := filepath.Join(b.work, "instructions-"+target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	s := b.poolers
	// The profile itself is not needed: callgrind prints the total when
	// the process ends. valgrind 3.19 and Go: a signal reaching Go's
	// handler trips an assertion in callgrind, so pgmts runs without
	// asynchronous preemption and is stopped with the console's SHUTDOWN,
	// not SIGINT; and valgrind does not know RDTSCP, which the runtime's
	// cputicks uses when the CPU has it.
	s.under = []string{valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null"}
	s.env = []string{"GODEBUG=asyncpreemptoff=1,cpu.rdtscp=off"}
	var proc *process
	var err error
	if target == pgmtsT {
		proc, err = startPgmts(b.o.pgmtsBin, dir, s, false)
	} else {
		proc, err = startPgbouncer(b.pgbouncerBin, dir, s)
	}
	if err != nil {
		return 0, err
	}
	dsn := b.dsnAt("127.0.0.1", proc.port, txnDB, b.sslmode)
	var runErr error
	for _, t := range []int{200, txns} { // the warm-up, then the measured run
		if runErr = b.pgbenchCount(ctx, dsn, protocol, t); runErr != nil {
			break
		}
	}
	if target == pgmtsT {
		b.shutdown(ctx, proc)
	}
	proc.stop()
	if runErr != nil {
		return 0, fmt.Errorf("%v\n%s's log ends:\n%s", runErr, target, fileTail(proc.log))
	}
	log, err := os.ReadFile(proc.log)
	if err != nil {
		return 0, err
	}
	return collected(string(log))
}

// shutdown stops pgmts through its admin console and waits for it to
// exit (see countInstructions); proc.stop is the fallback.
func (b *bench) shutdown(ctx context.Context, proc *process) {
	dsn := b.dsnAt("127.0.0.1", proc.port, "pgmts", b.sslmode)
	cctx, cancel := context.WithTimeout(ctx, proc.wait)
	defer cancel()
	c, err := pgconn.Connect(cctx, dsn)
	if err != nil {
		return
	}
	_ = c.Exec(cctx, "SHUTDOWN").Close()
	_ = c.Close(cctx)
	select {
	case <-proc.done:
	case <-cctx.Done():
	}
}

// pgbenchCount runs txns select-only transactions with one client.
func (b *bench) pgbenchCount(ctx context.Context, dsn, protocol string, txns int) error {
	out, err := exec.CommandContext(ctx, b.pgbench, "-n", "-S", "-M", protocol, "-c", "1", "-t", strconv.Itoa(txns), dsn).CombinedOutput()
	want := fmt.Sprintf("processed: %d/%d", txns, txns)
	if err != nil || !strings.Contains(string(out), want) {
		return fmt.Errorf("pgbench -t %d under callgrind: %v\n%s", txns, err, out)
	}
	return nil
}

var collectedLine = regexp.MustCompile(`Collected : (\d+)`)

// collected reads the instruction total from callgrind's closing lines.
func collected(log string) (int64, error) {
	m := collectedLine.FindStringSubmatch(log)
	if m == nil {
		return 0, fmt.Errorf("no instruction total in the pooler's log (did callgrind stop early?):\n%s", lastLines(log, 10))
	}
	return strconv.ParseInt(m[1], 10, 64)
}
