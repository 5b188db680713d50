package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgmts/pgmts/pgtest"
)

// pgbench runs pgbench through pgmts and returns how many transactions it
// processed; any failed or aborted transaction fails the test.
func (p *pgmts) pgbench(t *testing.T, args ...string) int {
	t.Helper()
	out, err := pgbenchCommand(t, p.port, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("pgbench %v: %v\n%s", args, err, out)
	}
	text := string(out)
	if m := regexp.MustCompile(`number of failed transactions: (\d+)`).FindStringSubmatch(text); m == nil || m[1] != "0" {
		t.Fatalf("pgbench %v: failed transactions:\n%s", args, text)
	}
	m := regexp.MustCompile(`number of transactions actually processed: (\d+)/(\d+)`).FindStringSubmatch(text)
	if m == nil || m[1] != m[2] {
		t.Fatalf("pgbench %v: not every transaction was processed:\n%s", args, text)
	}
	if strings.Contains(text, "error") {
		t.Fatalf("pgbench %v reported errors:\n%s", args, text)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// pgbenchCommand is pgbench through the pgmts on port, as bench on
// database bench.
func pgbenchCommand(t *testing.T, port int, args ...string) *exec.Cmd {
	t.Helper()
	bin, err := pgtest.FindBin("pgbench")
	if err != nil {
		t.Fatal(err)
	}
	all := append([]string{"-n", "-h", "127.0.0.1", "-p", strconv.Itoa(port), "-U", benchUser}, args...)
	cmd := exec.Command(bin, append(all, "bench")...)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+benchPass)
	return cmd
}

// benchInt runs a single-integer query on database bench, directly.
func benchInt(t *testing.T, sql string) int64 {
	t.Helper()
	c, err := pgx.Connect(ctx10(t), cluster.DSN(benchUser, benchPass, "bench"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var n int64
	if err := c.QueryRow(ctx10(t), sql).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// checkTPCB checks that the database holds exactly what pgbench committed:
// one history row per transaction, and balances that add up.
func checkTPCB(t *testing.T, historyBefore int64, committed int) {
	t.Helper()
	history := benchInt(t, "SELECT count(*) FROM pgbench_history")
	if got := history - historyBefore; got != int64(committed) {
		t.Fatalf("pgbench committed %d transactions but pgbench_history grew by %d", committed, got)
	}
	for _, table := range []string{"pgbench_accounts", "pgbench_tellers", "pgbench_branches"} {
		col := strings.TrimSuffix(strings.TrimPrefix(table, "pgbench_"), "s")[:1] + "balance"
		sum := benchInt(t, fmt.Sprintf("SELECT coalesce(sum(%s),0) FROM %s", col, table))
		delta := benchInt(t, "SELECT coalesce(sum(delta),0) FROM pgbench_history")
		if sum != delta {
			t.Fatalf("sum of %s balances %d != sum of history deltas %d", table, sum, delta)
		}
	}
}

func TestPgbenchTransactionMode(t *testing.T) {
	p := startPgmts(t, setMode("transaction", 10))
	for _, proto := range []string{"simple", "extended", "prepared"} {
		// pgbench (15) prepares a client's statements synchronously,
		// blocking its whole thread: with more clients than backends,
		// clients holding backends in a transaction then wait on that
		// thread forever. So -M prepared runs as many clients as backends.
		clients := "50"
		if proto == "prepared" {
			clients = "10"
		}
		t.Run("select-only/"+proto, func(t *testing.T) {
			p.pgbench(t, "-S", "-M", proto, "-c", clients, "-j", "2", "-t", "40")
		})
		t.Run("tpcb/"+proto, func(t *testing.T) {
			before := benchInt(t, "SELECT count(*) FROM pgbench_history")
			n := p.pgbench(t, "-M", proto, "-c", clients, "-j", "2", "-t", "20")
			checkTPCB(t, before, n)
		})
	}
	if n := p.pools.BackendCount(); n > 10 {
		t.Fatalf("%d backends for a pool capped at 10", n)
	}
	if n, _ := cluster.BackendCount(benchUser); n > 10 {
		t.Fatalf("PostgreSQL sees %d backends of user bench; the pool is capped at 10", n)
	}
}

func TestPgbenchSessionMode(t *testing.T) {
	p := startPgmts(t, setMode("session", 50))
	p.pgbench(t, "-S", "-M", "simple", "-c", "50", "-j", "2", "-t", "40")
	before := benchInt(t, "SELECT count(*) FROM pgbench_history")
	n := p.pgbench(t, "-M", "extended", "-c", "50", "-j", "2", "-t", "20")
	checkTPCB(t, before, n)
}

func TestPgbenchStatementMode(t *testing.T) {
	p := startPgmts(t, setMode("statement", 10))
	for _, proto := range []string{"simple", "extended"} {
		p.pgbench(t, "-S", "-M", proto, "-c", "50", "-j", "2", "-t", "40")
	}
}
