package integration

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestAdminPrometheusExporter points Debian's prometheus-pgbouncer-exporter
// (Python, psycopg2: SHOW STATS, POOLS, DATABASES and LISTS) at pgmts and
// reads the pool figures back from its /metrics.
func TestAdminPrometheusExporter(t *testing.T) {
	bin, err := exec.LookPath("prometheus-pgbouncer-exporter")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("prometheus-pgbouncer-exporter is not installed (apt-get install prometheus-pgbouncer-exporter)")
		}
		t.Skip("prometheus-pgbouncer-exporter is not installed")
	}
	p := startPgmts(t, withConsole("transaction", 5))
	bench := p.connect(t)
	for range 5 {
		if _, err := bench.Exec(ctx10(t), "SELECT 1"); err != nil {
			t.Fatal(err)
		}
	}

	port := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--host", "127.0.0.1", "--port", strconv.Itoa(port),
		"--pgbouncer-host", "127.0.0.1", "--pgbouncer-port", strconv.Itoa(p.port), "--pgbouncer-user", statsUser)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+statsPass)
	var logs lockedBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cancel()
		<-exited
	}()

	var metrics string
	deadline := time.Now().Add(20 * time.Second)
	for metrics == "" {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("the exporter exited: %v\n%s", err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the exporter did not answer on port %d:\n%s", port, logs.String())
		}
		resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(port) + "/metrics")
		if err != nil {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("/metrics: %s\n%s\n%s", resp.Status, body, logs.String())
		}
		metrics = string(body)
	}

	for _, metric := range []string{
		`pgbouncer_active_clients{database="bench",user="bench"}`,
		`pgbouncer_requests_total{database="bench"}`,
		`pgbouncer_received_bytes_total{database="bench"}`,
		`pgbouncer_sent_bytes_total{database="bench"}`,
		`pgbouncer_pool_size{database="bench"}`,
		`pgbouncer_used_clients`,
		`pgbouncer_pools`,
	} {
		m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(metric) + ` (\S+)$`).FindStringSubmatch(metrics)
		if m == nil {
			t.Errorf("/metrics has no %s", metric)
			continue
		}
		if v, err := strconv.ParseFloat(m[1], 64); err != nil || v <= 0 {
			t.Errorf("%s = %s, want > 0", metric, m[1])
		}
	}
	if out := logs.String(); strings.Contains(out, "Traceback") || strings.Contains(out, "ERROR") {
		t.Errorf("the exporter reported errors:\n%s", out)
	}
	if t.Failed() {
		t.Logf("metrics:\n%s\nexporter output:\n%s", metrics, logs.String())
	}
}
