package integration

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// scrape reads /metrics at addr: the text, and each sample's value by
// its series (name and labels as written).
func scrape(t *testing.T, addr string) (string, map[string]float64) {
	t.Helper()
	body := httpGet(t, "http://"+addr+"/metrics", 200)
	samples := map[string]float64{}
	for line := range strings.Lines(body) {
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(strings.TrimSpace(line[i+1:]), 64)
		if err != nil {
			t.Fatalf("/metrics line %q: %v", line, err)
		}
		samples[line[:i]] = v
	}
	return body, samples
}

// promtoolCheck runs promtool check metrics (Debian package prometheus)
// on a scrape. Without promtool the check is skipped, unless CI=true.
func promtoolCheck(t *testing.T, body string) {
	t.Helper()
	bin, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool is not installed (Debian package prometheus)")
		}
		t.Log("promtool is not installed; skipping promtool check metrics")
		return
	}
	cmd := exec.Command(bin, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

// TestMetricsUnderLoad: after pgbench and a failing query, /metrics has
// non-zero per-pool and per-dispatcher figures and filled histograms, and
// promtool accepts it; once SIGHUP removes a database, its pool's series
// are gone (its client still connected) and the others stay.
func TestMetricsUnderLoad(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	d := startDaemonWith(t, func(toml string) string {
		return strings.Replace(toml, `metrics_listen = ""`, fmt.Sprintf("metrics_listen = %q", addr), 1)
	})
	stays, err := pgx.Connect(ctx10(t), dsnAt(d.port, benchUser, benchPass, "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer stays.Close(ctx10(t))
	if _, err := stays.Exec(ctx10(t), "LISTEN pgmts_metrics"); err != nil { // pins it
		t.Fatal(err)
	}
	c, err := pgx.Connect(ctx10(t), d.dsn())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx10(t), "SELECT 1/0"); sqlState(err) != "22012" {
		t.Fatalf("SELECT 1/0: %v, want SQLSTATE 22012", err)
	}
	c.Close(ctx10(t))
	const clients, perClient = 4, 250
	pgbenchOK(t, <-pgbenchAsync(t, d.port, "-S", "-c", strconv.Itoa(clients), "-j", "2", "-t", strconv.Itoa(perClient)))

	body, m := scrape(t, addr)
	promtoolCheck(t, body)
	bench := `database="bench",user="bench"`
	atLeast := func(series string, min float64) {
		t.Helper()
		if v, ok := m[series]; !ok || v < min {
			t.Errorf("%s = %v (present: %v), want at least %v", series, v, ok, min)
		}
	}
	xacts := float64(clients * perClient)
	for _, name := range []string{"pgmts_pool_transactions_total", "pgmts_pool_queries_total", "pgmts_pool_requests_total"} {
		atLeast(name+"{"+bench+"}", xacts)
	}
	for _, name := range []string{"pgmts_pool_received_bytes_total", "pgmts_pool_sent_bytes_total", "pgmts_pool_servers_started_total",
		"pgmts_pool_errors_total", "pgmts_pool_max_servers"} {
		atLeast(name+"{"+bench+"}", 1)
	}
	atLeast("pgmts_servers_started_total", 2)
	// Once pgbench's clients are gone, the one that stays is counted, and
	// the counts come from the live clients (metricsState), not from rows.
	for deadline := time.Now().Add(5 * time.Second); m["pgmts_clients"] != 1 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		_, m = scrape(t, addr)
	}
	for series, want := range map[string]float64{"pgmts_clients": 1,
		`pgmts_pool_clients{database="postgres",user="bench",state="active"}`:  1,
		`pgmts_pool_clients{database="postgres",user="bench",state="waiting"}`: 0,
		`pgmts_pool_clients_pinned{database="postgres",user="bench"}`:          1} {
		if m[series] != want {
			t.Errorf("%s = %v, want %v", series, m[series], want)
		}
	}
	for _, h := range []string{"pgmts_pool_queue_wait_seconds", "pgmts_pool_query_duration_seconds", "pgmts_pool_transaction_duration_seconds"} {
		count, want := m[h+"_count{"+bench+"}"], xacts
		if h == "pgmts_pool_queue_wait_seconds" {
			// A request sent while its client still holds a server skips
			// the queue; each client's first cannot.
			want = clients
		}
		if count < want {
			t.Errorf("%s_count = %v, want at least %v", h, count, want)
		}
		// Every query of pgbench -S takes less than 10s and more than 0.
		if inf, ten := m[h+"_bucket{"+bench+`,le="+Inf"}`], m[h+"_bucket{"+bench+`,le="10"}`]; inf != count || ten != count {
			t.Errorf("%s: le=+Inf %v, le=10 %v, want both %v", h, inf, ten, count)
		}
		if h != "pgmts_pool_queue_wait_seconds" && m[h+"_bucket{"+bench+`,le="5e-05"}`] == count {
			t.Errorf("%s: every observation under 50µs", h)
		}
	}
	var accepted, messages float64
	for series, v := range m {
		if strings.HasPrefix(series, "pgmts_dispatcher_connections_accepted_total{") {
			accepted += v
		}
		if strings.HasPrefix(series, "pgmts_dispatcher_messages_total{") {
			messages += v
		}
	}
	if accepted < clients+2 || messages < xacts {
		t.Errorf("dispatchers: %v connections accepted, %v messages; want at least %d and %v", accepted, messages, clients+2, xacts)
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes"} {
		atLeast(name, 1)
	}

	toml, err := os.ReadFile(d.config)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(toml), "[databases.postgres]", "[databases.extra]", 1)
	if err := os.WriteFile(d.config, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); strings.Contains(body, `database="postgres"`); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the removed database is still reported 5s after SIGHUP:\n%s", body)
		}
		body, m = scrape(t, addr)
	}
	promtoolCheck(t, body)
	atLeast("pgmts_pool_transactions_total{"+bench+"}", xacts)
	atLeast("pgmts_pool_query_duration_seconds_count{"+bench+"}", xacts)
	if got := queryString(t, stays, "SELECT 'still served'"); got != "still served" {
		t.Fatal(got)
	}
}
