package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func pgmtsCommand(args ...string) *exec.Cmd {
	return exec.Command(filepath.Join(binDir, "pgmts"), args...)
}

func TestCommandLine(t *testing.T) {
	needCluster(t)
	out, err := pgmtsCommand("--version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "pgmts ") {
		t.Fatalf("--version: %v %q", err, out)
	}
	out, err = pgmtsCommand("--check", "-c", "../pgmts.example.toml").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "is valid") {
		t.Fatalf("--check on the sample config: %v %q", err, out)
	}
	bad := filepath.Join(t.TempDir(), "bad.toml")
	if err := os.WriteFile(bad, []byte("[pool]\npool_mode = \"session\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = pgmtsCommand("--check", "-c", bad).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "pool.pool_mode") {
		t.Fatalf("--check on an unknown key: %v %q", err, out)
	}
	out, err = pgmtsCommand("-c", filepath.Join(t.TempDir(), "missing.toml")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "missing.toml") {
		t.Fatalf("missing config: %v %q", err, out)
	}
}

// TestSIGTERMLetsTransactionsFinish: after SIGTERM, new clients are
// refused, a client inside a transaction finishes it, and then pgmts exits.
func TestSIGTERMLetsTransactionsFinish(t *testing.T) {
	d := startDaemon(t)
	dsn := d.dsn("default_query_exec_mode=simple_protocol")
	inTx, err := pgx.Connect(ctx10(t), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer inTx.Close(context.Background())
	tx, err := inTx.Begin(ctx10(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if _, err := pgx.Connect(ctx10(t), dsn); err == nil {
		t.Fatal("a new client was accepted after SIGTERM")
	} else if sqlState(err) != "57P03" {
		t.Fatalf("new client after SIGTERM: %v, want SQLSTATE 57P03", err)
	}
	var n int
	if err := tx.QueryRow(ctx10(t), "SELECT 41 + 1").Scan(&n); err != nil || n != 42 {
		t.Fatalf("query inside the open transaction after SIGTERM: %d, %v", n, err)
	}
	if d.exited() {
		t.Fatal("pgmts exited with a transaction open")
	}
	if err := tx.Commit(ctx10(t)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.done:
		if d.err != nil {
			t.Fatalf("pgmts exited with %v", d.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("pgmts did not exit after the last transaction ended")
	}
}

// TestSIGINTIsFast: SIGINT closes everything at once, open transaction or not.
func TestSIGINTIsFast(t *testing.T) {
	d := startDaemon(t)
	dsn := d.dsn()
	c, err := pgx.Connect(ctx10(t), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(ctx10(t), "BEGIN"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := d.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.done:
		if d.err != nil {
			t.Fatalf("pgmts exited with %v", d.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("pgmts did not exit within 5s of SIGINT")
	}
	t.Logf("SIGINT to exit: %v", time.Since(start))
}

// TestMetricsEndpoint: /metrics serves Prometheus text with pgmts's gauges
// and process metrics; /debug/pprof only when debug_pprof is on.
func TestMetricsEndpoint(t *testing.T) {
	for _, pprofOn := range []bool{false, true} {
		t.Run(fmt.Sprintf("debug_pprof=%v", pprofOn), func(t *testing.T) {
			addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
			d := startDaemonWith(t, func(toml string) string {
				return strings.Replace(toml, `metrics_listen = ""`, fmt.Sprintf("metrics_listen = %q\ndebug_pprof = %v", addr, pprofOn), 1)
			})
			dsn := d.dsn()
			c, err := pgx.Connect(ctx10(t), dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close(context.Background())
			body := httpGet(t, "http://"+addr+"/metrics", 200)
			for _, want := range []string{"pgmts_clients 1", "pgmts_server_connections ", "process_resident_memory_bytes "} {
				if !strings.Contains(body, want) {
					t.Fatalf("/metrics lacks %q:\n%s", want, body)
				}
			}
			status := 404
			if pprofOn {
				status = 200
			}
			httpGet(t, "http://"+addr+"/debug/pprof/", status)
		})
	}
}

func httpGet(t *testing.T, url string, status int) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != status {
		t.Fatalf("GET %s: %d, want %d", url, resp.StatusCode, status)
	}
	return string(b)
}

// TestIdleDaemonSleeps: a pgmts with one idle client wakes rarely. Its only
// timer then is the pools' once-a-second sweep, besides the Go runtime's
// own; login deadlines and the memory release after a burst of logins run
// timers only while logins come in. Measured here: about 14 context
// switches a second over all its threads (43 when both ran tickers).
func TestIdleDaemonSleeps(t *testing.T) {
	d := startDaemon(t)
	c, err := pgx.Connect(ctx10(t), d.dsn())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	if got := queryString(t, c, "SELECT 'awake'"); got != "awake" {
		t.Fatal(got)
	}
	// Let the last timers of the logins fire and the loops park.
	time.Sleep(1500 * time.Millisecond)
	const window, most = 4 * time.Second, 30
	before := contextSwitches(t, d.cmd.Process.Pid)
	time.Sleep(window)
	perSecond := float64(contextSwitches(t, d.cmd.Process.Pid)-before) / window.Seconds()
	t.Logf("idle pgmts: %.1f context switches a second", perSecond)
	if perSecond > most {
		t.Fatalf("an idle pgmts made %.1f context switches a second, want at most %d: a timer runs when nothing needs it", perSecond, most)
	}
}

// contextSwitches adds up the context switches of every thread of pid.
func contextSwitches(t *testing.T, pid int) int {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if err != nil || len(tasks) == 0 {
		t.Fatalf("no threads of pid %d in /proc: %v", pid, err)
	}
	n := 0
	for _, path := range tasks {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // a thread that exited meanwhile
		}
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.HasSuffix(k, "ctxt_switches") {
				var x int
				_, _ = fmt.Sscan(strings.TrimSpace(v), &x)
				n += x
			}
		}
	}
	return n
}
