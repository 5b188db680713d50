package integration

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgmts/pgmts/config"
)

// pgbenchAsync starts pgbench through the pgmts on port (database bench,
// as bench) and returns a channel that gets its output once it ends.
func pgbenchAsync(t *testing.T, port int, args ...string) <-chan string {
	t.Helper()
	cmd := pgbenchCommand(t, port, args...)
	done := make(chan string, 1)
	go func() {
		out, err := cmd.CombinedOutput()
		if err != nil {
			out = append(out, "\npgbench: "+err.Error()...)
		}
		done <- string(out)
	}()
	return done
}

// pgbenchOK checks pgbench's report: it ran and no transaction failed.
func pgbenchOK(t *testing.T, out string) {
	t.Helper()
	m := regexp.MustCompile(`number of failed transactions: (\d+)`).FindStringSubmatch(out)
	if m == nil || m[1] != "0" || strings.Contains(out, "pgbench: ") {
		t.Fatalf("pgbench failed:\n%s", out)
	}
}

// TestPauseRestartResume is the maintenance an operator does: pgbench runs
// through pgmts in transaction mode; PAUSE; PostgreSQL restarts; RESUME;
// pgbench finishes with zero failed transactions.
func TestPauseRestartResume(t *testing.T) {
	p := startPgmts(t, withConsole("transaction", 5))
	done := pgbenchAsync(t, p.port, "-S", "-c", "10", "-j", "2", "-T", "8")
	time.Sleep(2 * time.Second)
	if _, err := psqlAdmin(t, p, adminUser, adminPass, "pgmts", "PAUSE bench;"); err != nil {
		t.Fatal(err)
	}
	if n := p.pools.BackendCount(); n != 0 {
		t.Fatalf("%d backends open after PAUSE, want 0", n)
	}
	if err := cluster.Restart(); err != nil {
		t.Fatal(err)
	}
	if _, err := psqlAdmin(t, p, adminUser, adminPass, "pgbouncer", "RESUME bench;"); err != nil {
		t.Fatal(err)
	}
	pgbenchOK(t, <-done)
}

// TestAdminControl: SET changes pool limits, dispatchers and log_level at
// once; RECONNECT replaces a pool's servers.
func TestAdminControl(t *testing.T) {
	p := startPgmts(t, withConsole("transaction", 1))
	admin := func(sql string) {
		t.Helper()
		if _, err := psqlAdmin(t, p, adminUser, adminPass, "pgmts", sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	c := p.connect(t)
	before := queryString(t, c, "SELECT pg_backend_pid()::text")
	admin("RECONNECT bench")
	if after := queryString(t, c, "SELECT pg_backend_pid()::text"); after == before {
		t.Fatalf("RECONNECT kept backend %s", before)
	}

	admin("SET max_shared_servers = 3")
	cfg := show(t, p, "CONFIG")
	if r := cfg.where("key", "max_shared_servers"); len(r) != 1 || r[0]["value"] != "3" {
		t.Fatalf("SHOW CONFIG after SET max_shared_servers = 3: %v", r)
	}
	pgbenchOK(t, <-pgbenchAsync(t, p.port, "-f", sleepScript(t, "0.02"), "-c", "8", "-j", "2", "-T", "2"))
	if n := len(show(t, p, "SERVERS").rows); n != 3 {
		t.Fatalf("%d servers after a burst with max_shared_servers = 3, want 3", n)
	}

	admin("SET dispatchers = 3")
	if active, _ := p.group.Dispatchers(); active != 3 {
		t.Fatalf("SET dispatchers = 3: %d active", active)
	}
	admin("SET log_level = 'debug'")
	if r := show(t, p, "CONFIG").where("key", "log_level"); len(r) != 1 || r[0]["value"] != "debug" {
		t.Fatalf("SHOW CONFIG after SET log_level: %v", r)
	}
	checkAlive(t, p)
}

// TestPauseTimesOutOnBusyServer: PAUSE gives up with an error when a
// client keeps its transaction open, and RESUME lets everything go on.
func TestPauseTimesOutOnBusyServer(t *testing.T) {
	p := startPgmts(t, setMode("transaction", 5))
	c := p.connect(t)
	if _, err := c.Exec(ctx10(t), "BEGIN"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := p.pools.Pause(ctx, "")
	if err == nil || !strings.Contains(err.Error(), "still hold a client") {
		t.Fatalf("PAUSE with an open transaction: %v", err)
	}
	// The open transaction goes on; others wait until RESUME.
	if _, err := c.Exec(ctx10(t), "COMMIT"); err != nil {
		t.Fatal(err)
	}
	other := p.connect(t)
	waiting := make(chan error, 1)
	go func() {
		_, err := other.Exec(context.Background(), "SELECT 1")
		waiting <- err
	}()
	select {
	case err := <-waiting:
		t.Fatalf("a query ran during PAUSE: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	p.pools.Resume("")
	if err := <-waiting; err != nil {
		t.Fatal(err)
	}
}

// TestAutoscaling: a pool keeps shared_servers warm, grows towards
// max_shared_servers while requests wait, never past max_db_connections,
// and shrinks back after server_idle_timeout.
func TestAutoscaling(t *testing.T) {
	script := sleepScript(t, "0.01")
	for _, tc := range []struct {
		name        string
		maxDB, want int // want: the most backends seen
	}{{"grow", 0, 8}, {"max_db_connections", 3, 3}} {
		t.Run(tc.name, func(t *testing.T) {
			p := startPgmts(t, func(c *config.Config) {
				c.Pool.SharedServers = 2
				c.Pool.MaxSharedServers = 8
				c.Pool.MaxDBConnections = tc.maxDB
				c.Pool.ServerIdleTimeout = time.Second
			})
			checkAlive(t, p)
			waitBackends(t, p, 2)
			out, got := burstPeak(t, p, p.pools.BackendCount, "-f", script, "-c", "16", "-j", "2", "-T", "3")
			pgbenchOK(t, out)
			if got != tc.want {
				t.Errorf("at most %d backends during the burst, want %d", got, tc.want)
			}
			waitBackends(t, p, 2)
		})
	}
}

// sleepScript writes a pgbench script whose transaction sleeps secs.
func sleepScript(t *testing.T, secs string) string {
	t.Helper()
	script := filepath.Join(t.TempDir(), "sleep.sql")
	if err := os.WriteFile(script, []byte("SELECT pg_sleep("+secs+");\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return script
}

// burstPeak runs pgbench through p with args, reading count every 5 ms
// meanwhile; it returns pgbench's output and the highest count seen.
func burstPeak(t *testing.T, p *pgmts, count func() int, args ...string) (string, int) {
	t.Helper()
	var peak atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if n := int64(count()); n > peak.Load() {
				peak.Store(n)
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	out := <-pgbenchAsync(t, p.port, args...)
	close(stop)
	<-sampled
	return out, int(peak.Load())
}

// waitBackends waits until p has n backends open.
func waitBackends(t *testing.T, p *pgmts, n int) {
	t.Helper()
	waitCount(t, "backends", n, 10*time.Second, p.pools.BackendCount)
}
