package integration

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestReloadUnderLoad: SIGHUP with a config that adds a database, removes
// another, changes pool limits and the listen address, while pgbench runs.
// pgbench loses nothing, the added database serves new clients, the
// removed one refuses them but keeps its connected client, and the log
// says the listen address needs a restart. Once the last client of the
// removed database leaves, its pool is dropped.
func TestReloadUnderLoad(t *testing.T) {
	d := startDaemonWith(t, func(toml string) string {
		return strings.Replace(toml, `log_level = "warn"`, `log_level = "info"`, 1)
	})
	stays, err := pgx.Connect(ctx10(t), dsnAt(d.port, benchUser, benchPass, "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer stays.Close(ctx10(t))
	done := pgbenchAsync(t, d.port, "-S", "-c", "6", "-j", "2", "-T", "5")
	time.Sleep(1500 * time.Millisecond)

	toml, err := os.ReadFile(d.config)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.NewReplacer(
		"[databases.postgres]", "[databases.extra]\ndbname = \"bench\"",
		"max_shared_servers = 10", "max_shared_servers = 6",
		"listen = \"127.0.0.1:", "listen = \"127.0.0.2:",
	).Replace(string(toml))
	if err := os.WriteFile(d.config, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	var c *pgx.Conn
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c, err = pgx.Connect(ctx10(t), dsnAt(d.port, benchUser, benchPass, "extra")); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("database added by SIGHUP: %v\n%s", err, d.stderr)
	}
	if got := queryString(t, c, "SELECT current_database()::text"); got != "bench" {
		t.Fatalf("extra reaches %q, want bench", got)
	}
	c.Close(ctx10(t))
	if _, err := pgx.Connect(ctx10(t), dsnAt(d.port, benchUser, benchPass, "postgres")); sqlState(err) != "3D000" {
		t.Fatalf("database removed by SIGHUP: %v, want 3D000", err)
	}
	if got := queryString(t, stays, "SELECT 'still served'"); got != "still served" {
		t.Fatal(got)
	}
	pgbenchOK(t, <-done)
	log := d.stderr.String()
	if !strings.Contains(log, "take effect only at restart") || !strings.Contains(log, "pgmts.listen") {
		t.Errorf("no warning that the listen address needs a restart:\n%s", log)
	}

	// With its last client gone, the removed database's pool is dropped.
	stays.Close(ctx10(t))
	const forgotten = "pool detached by a reload has no clients or servers left"
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(d.stderr.String(), forgotten); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the pool of the removed database was not dropped after its last client left:\n%s", d.stderr)
		}
	}
}
