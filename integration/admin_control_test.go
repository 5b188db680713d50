package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgmts/pgmts/config"
	"github.com/pgmts/pgmts/sharedserver"
)

// The admin console's process controlling commands: KILL, KILL_CLIENT,
// DISABLE/ENABLE, SUSPEND/RESUME, WAIT_CLOSE, SHUTDOWN and SET db.key.

// adminRun runs sql on p's console as the admin user; the test fails on
// error.
func adminRun(t *testing.T, p *pgmts, sql string) {
	t.Helper()
	if _, err := psqlAdmin(t, p, adminUser, adminPass, "pgmts", sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// simpleClient logs in to database db of p as bench with the simple
// protocol, and with application_name name.
func simpleClient(t *testing.T, p *pgmts, db, name string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(ctx10(t), p.dsn(benchUser, benchPass, db, "default_query_exec_mode=simple_protocol", "application_name="+name))
	if err != nil {
		t.Fatalf("connect to %s: %v", db, err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// runAsync runs sql on c in the background; the channel gets its error.
func runAsync(c *pgx.Conn, sql string) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := c.Exec(context.Background(), sql)
		done <- err
	}()
	return done
}

// stillWaiting fails the test if done delivers within d.
func stillWaiting(t *testing.T, what string, done <-chan error, d time.Duration) {
	t.Helper()
	select {
	case err := <-done:
		t.Fatalf("%s did not wait: %v", what, err)
	case <-time.After(d):
	}
}

// finished waits for done and fails the test on an error or a timeout.
func finished(t *testing.T, what string, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("%s still waits", what)
	}
}

// dbRow is database db's SHOW DATABASES row.
func dbRow(t *testing.T, p *pgmts, db string) map[string]string {
	t.Helper()
	rows := show(t, p, "DATABASES").where("name", db)
	if len(rows) != 1 {
		t.Fatalf("SHOW DATABASES: %d rows for %s", len(rows), db)
	}
	return rows[0]
}

// serversOf counts database db's rows in SHOW SERVERS.
func serversOf(t *testing.T, p *pgmts, db string) int {
	return len(show(t, p, "SERVERS").where("database", db))
}

// TestAdminKill: KILL drops every client and server of bench at once,
// leaves postgres's client alone, and new bench clients wait until RESUME.
func TestAdminKill(t *testing.T) {
	p := startPgmts(t, withConsole("transaction", 5))
	idle := simpleClient(t, p, "bench", "idle")
	inTx := simpleClient(t, p, "bench", "in_tx")
	other := simpleClient(t, p, "postgres", "other")
	if _, err := inTx.Exec(ctx10(t), "BEGIN; SELECT 1"); err != nil {
		t.Fatal(err)
	}
	queryString(t, idle, "SELECT 'x'")
	queryString(t, other, "SELECT 'x'")

	adminRun(t, p, "KILL bench")
	for name, c := range map[string]*pgx.Conn{"idle": idle, "in transaction": inTx} {
		if _, err := c.Exec(ctx10(t), "SELECT 1"); err == nil {
			t.Errorf("the %s bench client survived KILL", name)
		}
	}
	if got := queryString(t, other, "SELECT 'alive'"); got != "alive" {
		t.Fatal(got)
	}
	if n := serversOf(t, p, "bench"); n != 0 {
		t.Errorf("%d bench servers after KILL, want 0", n)
	}
	if r := dbRow(t, p, "bench"); r["paused"] != "1" {
		t.Errorf("SHOW DATABASES after KILL: paused = %s, want 1", r["paused"])
	}

	late := simpleClient(t, p, "bench", "late")
	waiting := runAsync(late, "SELECT 1")
	stillWaiting(t, "a query to a killed database", waiting, 500*time.Millisecond)
	adminRun(t, p, "RESUME bench")
	finished(t, "the query after RESUME", waiting)
	if r := dbRow(t, p, "bench"); r["paused"] != "0" {
		t.Errorf("SHOW DATABASES after RESUME: paused = %s, want 0", r["paused"])
	}
}

// TestAdminKillClient: KILL_CLIENT drops exactly the client SHOW CLIENTS'
// id names, and its open transaction is rolled back with its backend.
func TestAdminKillClient(t *testing.T) {
	p := startPgmts(t, withConsole("transaction", 5))
	bystander := simpleClient(t, p, "bench", "bystander")
	if _, err := bystander.Exec(ctx10(t), "DROP TABLE IF EXISTS kill_client_rows; CREATE TABLE kill_client_rows (n int)"); err != nil {
		t.Fatal(err)
	}
	victim := simpleClient(t, p, "bench", "victim")
	if _, err := victim.Exec(ctx10(t), "BEGIN; INSERT INTO kill_client_rows VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	pid := queryString(t, victim, "SELECT pg_backend_pid()::text")
	rows := show(t, p, "CLIENTS").where("application_name", "victim")
	if len(rows) != 1 || rows[0]["id"] == "" || "C"+rows[0]["id"] != rows[0]["ptr"] {
		t.Fatalf("SHOW CLIENTS rows for the victim: %v", rows)
	}
	// The bystander and the victim; SHOW's console connection may still
	// be closing, and counted, when it returns.
	before := 2
	waitClients(t, p, before)

	adminRun(t, p, "KILL_CLIENT "+rows[0]["id"])
	if _, err := victim.Exec(ctx10(t), "SELECT 1"); err == nil {
		t.Fatal("the killed client still runs queries")
	}
	waitClients(t, p, before-1)
	waitCount(t, "backends with the victim's pid", 0, 10*time.Second, func() int {
		return int(atoi(t, queryString(t, bystander, "SELECT count(*)::text FROM pg_stat_activity WHERE pid = "+pid)))
	})
	if n := queryString(t, bystander, "SELECT count(*)::text FROM kill_client_rows"); n != "0" {
		t.Errorf("the killed client's transaction left %s rows, want 0 (rolled back)", n)
	}
	if _, err := bystander.Exec(ctx10(t), "DROP TABLE kill_client_rows"); err != nil {
		t.Fatal(err)
	}
	if len(show(t, p, "CLIENTS").where("application_name", "bystander")) != 1 {
		t.Error("the bystander is gone from SHOW CLIENTS")
	}
}

// TestAdminDisableEnable: DISABLE refuses new logins to bench with 57P03
// while its connected client carries on; ENABLE lets them in again.
func TestAdminDisableEnable(t *testing.T) {
	p := startPgmts(t, withConsole("transaction", 5))
	existing := simpleClient(t, p, "bench", "existing")
	adminRun(t, p, "DISABLE bench")
	if r := dbRow(t, p, "bench"); r["disabled"] != "1" {
		t.Errorf("SHOW DATABASES after DISABLE: disabled = %s", r["disabled"])
	}
	_, err := pgx.Connect(ctx10(t), p.dsn(benchUser, benchPass, "bench"))
	if sqlState(err) != "57P03" || !strings.Contains(err.Error(), "database does not allow connections: bench") {
		t.Fatalf("login to a disabled database: %v, want 57P03", err)
	}
	if got := queryString(t, existing, "SELECT 'still here'"); got != "still here" {
		t.Fatal(got)
	}
	queryString(t, simpleClient(t, p, "postgres", "other_db"), "SELECT 'x'")

	adminRun(t, p, "ENABLE bench")
	if r := dbRow(t, p, "bench"); r["disabled"] != "0" {
		t.Errorf("SHOW DATABASES after ENABLE: disabled = %s", r["disabled"])
	}
	queryString(t, simpleClient(t, p, "bench", "after_enable"), "SELECT 'x'")
}

// TestAdminSuspendResume: SUSPEND with pgbench running returns once no
// client has a request or reply pending; clients and new logins wait,
// the console still answers; RESUME lets everything go on, and pgbench
// loses nothing.
func TestAdminSuspendResume(t *testing.T) {
	p := startPgmts(t, withConsole("transaction", 5))
	idle := simpleClient(t, p, "bench", "idle")
	done := pgbenchAsync(t, p.port, "-S", "-c", "6", "-j", "2", "-T", "4")
	time.Sleep(time.Second)

	adminRun(t, p, "SUSPEND")
	for _, ci := range p.group.Snapshot().Clients {
		if s := ci.Client.Snapshot(); ci.Client.Pool.Database == "bench" && (s.Busy || s.Backlog > 0 || s.State == "waiting") {
			t.Errorf("client %d after SUSPEND: busy %v, backlog %d, state %s", ci.Client.ID, s.Busy, s.Backlog, s.State)
		}
	}
	if r := dbRow(t, p, "bench"); r["paused"] != "1" {
		t.Errorf("SHOW DATABASES during SUSPEND: paused = %s, want 1", r["paused"])
	}
	if r := show(t, p, "DISPATCHERS").where("status", "suspended"); len(r) == 0 {
		t.Error("SHOW DISPATCHERS shows no suspended dispatcher")
	}
	if _, err := psqlAdmin(t, p, adminUser, adminPass, "pgmts", "SUSPEND"); err == nil {
		t.Error("a second SUSPEND succeeded")
	}
	query := runAsync(idle, "SELECT 1")
	login := make(chan error, 1)
	go func() {
		c, err := pgx.Connect(context.Background(), p.dsn(benchUser, benchPass, "bench"))
		if err == nil {
			c.Close(context.Background())
		}
		login <- err
	}()
	stillWaiting(t, "a query during SUSPEND", query, 500*time.Millisecond)
	stillWaiting(t, "a login during SUSPEND", login, 0)

	adminRun(t, p, "RESUME")
	finished(t, "the query after RESUME", query)
	finished(t, "the login after RESUME", login)
	pgbenchOK(t, <-done)
	if r := dbRow(t, p, "bench"); r["paused"] != "0" {
		t.Errorf("SHOW DATABASES after RESUME: paused = %s, want 0", r["paused"])
	}
}

// TestAdminWaitClose: after RECONNECT, WAIT_CLOSE returns only once the
// server a transaction holds has closed too; the old backends are gone
// from pg_stat_activity.
func TestAdminWaitClose(t *testing.T) {
	p := startPgmts(t, func(c *config.Config) {
		withConsole("transaction", 5)(c)
		c.Pool.SharedServers = 2
	})
	holder := simpleClient(t, p, "bench", "holder")
	if _, err := holder.Exec(ctx10(t), "BEGIN; SELECT 1"); err != nil {
		t.Fatal(err)
	}
	waitBackends(t, p, 2)
	var old []string
	for _, r := range show(t, p, "SERVERS").where("database", "bench") {
		old = append(old, r["remote_pid"])
	}

	adminRun(t, p, "RECONNECT bench")
	wait := make(chan error, 1)
	go func() {
		_, err := psqlAdmin(t, p, adminUser, adminPass, "pgmts", "WAIT_CLOSE bench")
		wait <- err
	}()
	stillWaiting(t, "WAIT_CLOSE while a transaction holds an old server", wait, 500*time.Millisecond)
	if r := show(t, p, "SERVERS").where("close_needed", "1"); len(r) != 1 {
		t.Errorf("SHOW SERVERS: %d servers with close_needed, want 1 (the held one)", len(r))
	}
	if _, err := holder.Exec(ctx10(t), "COMMIT"); err != nil {
		t.Fatal(err)
	}
	finished(t, "WAIT_CLOSE", wait)
	other := simpleClient(t, p, "postgres", "checker")
	sql := fmt.Sprintf("SELECT count(*)::text FROM pg_stat_activity WHERE pid IN (%s)", strings.Join(old, ","))
	if n := queryString(t, other, sql); n != "0" {
		t.Errorf("%s of the backends before RECONNECT (%v) are still there after WAIT_CLOSE", n, old)
	}
	if r := show(t, p, "SERVERS").where("close_needed", "1"); len(r) != 0 {
		t.Errorf("SHOW SERVERS after WAIT_CLOSE: %v still need closing", r)
	}
}

// TestAdminSetPerDatabase: SET db.key = value changes that database's
// pool at once, not another's, and shows in SHOW DATABASES and CONFIG.
func TestAdminSetPerDatabase(t *testing.T) {
	p := startPgmts(t, withConsole("transaction", 10))
	queryString(t, simpleClient(t, p, "postgres", "other_db"), "SELECT 'x'")
	// One server, or two when a request went to the first one on another
	// dispatcher and the pool opened one on the client's (growOn).
	waitCount(t, "servers starting", 0, 5*time.Second, func() int {
		return int(p.poolSum(func(s sharedserver.PoolSnapshot) int64 { return int64(s.Starting) }))
	})
	before := serversOf(t, p, "postgres")
	if before == 0 {
		t.Fatal("no postgres server after a query")
	}
	queryString(t, simpleClient(t, p, "bench", "bench"), "SELECT 'x'")

	adminRun(t, p, "SET bench.shared_servers = 3")
	waitCount(t, "bench servers", 3, 5*time.Second, func() int { return serversOf(t, p, "bench") })
	if n := serversOf(t, p, "postgres"); n != before {
		t.Errorf("postgres has %d servers after SET bench.shared_servers = 3, want %d as before", n, before)
	}
	if _, err := psqlAdmin(t, p, adminUser, adminPass, "pgmts", `SET "bench".max_shared_servers = 2`); err == nil {
		t.Error("SET max_shared_servers below shared_servers succeeded")
	}
	adminRun(t, p, "SET bench.shared_servers = 0")
	adminRun(t, p, `SET "bench".max_shared_servers = 2`)
	// Lowering the cap retires the servers above it.
	waitCount(t, "bench servers", 2, 5*time.Second, func() int { return serversOf(t, p, "bench") })
	if r := dbRow(t, p, "bench"); r["pool_size"] != "2" || r["min_pool_size"] != "0" {
		t.Errorf("SHOW DATABASES bench: pool_size %s, min_pool_size %s; want 2, 0", r["pool_size"], r["min_pool_size"])
	}
	if r := dbRow(t, p, "postgres"); r["pool_size"] != "10" {
		t.Errorf("SHOW DATABASES postgres: pool_size %s, want 10", r["pool_size"])
	}
	if r := show(t, p, "CONFIG").where("key", "bench.max_shared_servers"); len(r) != 1 || r[0]["value"] != "2" || r[0]["default"] != "10" {
		t.Errorf("SHOW CONFIG bench.max_shared_servers: %v", r)
	}

	benchServers := func() int {
		for _, pool := range p.pools.Snapshot().Pools {
			if pool.Database == "bench" {
				return len(pool.Servers) + pool.Starting
			}
		}
		return 0
	}
	out, peak := burstPeak(t, p, benchServers, "-f", sleepScript(t, "0.02"), "-c", "8", "-j", "2", "-T", "2")
	pgbenchOK(t, out)
	if peak != 2 {
		t.Errorf("at most %d bench servers during a burst with bench.max_shared_servers = 2, want 2", peak)
	}
}

// TestAdminStatsUserControl: a stats user gets 42501 for every control
// command, and its session goes on.
func TestAdminStatsUserControl(t *testing.T) {
	p := startPgmts(t, withConsole("transaction", 5))
	c, err := pgx.Connect(ctx10(t), p.dsn(statsUser, statsPass, "pgmts", "default_query_exec_mode=simple_protocol"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	for _, sql := range []string{"PAUSE", "RESUME", "SUSPEND", "RECONNECT bench", "WAIT_CLOSE", "KILL bench", "KILL_CLIENT 1",
		"DISABLE bench", "ENABLE bench", "RELOAD", "SHUTDOWN", "SHUTDOWN WAIT_FOR_CLIENTS", "SET shared_servers = 1",
		"SET bench.max_shared_servers = 1"} {
		if _, err := c.Exec(ctx10(t), sql); sqlState(err) != "42501" {
			t.Errorf("%s as a stats user: %v, want 42501", sql, err)
		}
	}
	if r := dbRow(t, p, "bench"); r["paused"] != "0" || r["disabled"] != "0" {
		t.Errorf("SHOW DATABASES after a stats user's commands: %v", r)
	}
	checkAlive(t, p)
}

// withDaemonConsole gives a daemon's config an admin user.
func withDaemonConsole(toml string) string {
	toml = strings.Replace(toml, `log_level = "warn"`, fmt.Sprintf("log_level = \"info\"\nadmin_users = [%q]", adminUser), 1)
	return toml + fmt.Sprintf("\n[users.%s]\npassword = %q\n", adminUser, adminPass)
}

// exitsWithin waits for the daemon to exit, cleanly, within limit.
func exitsWithin(t *testing.T, d *daemon, limit time.Duration) {
	t.Helper()
	select {
	case <-d.done:
		if d.err != nil {
			t.Fatalf("pgmts exited with %v\n%s", d.err, d.stderr)
		}
	case <-time.After(limit):
		t.Fatalf("pgmts still runs %s after SHUTDOWN\n%s", limit, d.stderr)
	}
}

// TestAdminShutdown: SHUTDOWN stops the daemon at once, clients and all.
func TestAdminShutdown(t *testing.T) {
	d := startDaemonWith(t, withDaemonConsole)
	c, err := pgx.Connect(ctx10(t), d.dsn("default_query_exec_mode=simple_protocol"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(ctx10(t), "BEGIN; SELECT 1"); err != nil {
		t.Fatal(err)
	}
	if _, err := psqlAdmin(t, &pgmts{port: d.port}, adminUser, adminPass, "pgmts", "SHUTDOWN"); err != nil {
		t.Fatalf("SHUTDOWN: %v", err)
	}
	exitsWithin(t, d, 5*time.Second)
	if _, err := c.Exec(ctx10(t), "SELECT 1"); err == nil {
		t.Error("a client still runs queries after SHUTDOWN")
	}
}

// TestAdminShutdownWaitForClients: SHUTDOWN WAIT_FOR_CLIENTS refuses new
// clients, serves the connected one, and exits once it leaves.
func TestAdminShutdownWaitForClients(t *testing.T) {
	d := startDaemonWith(t, withDaemonConsole)
	c, err := pgx.Connect(ctx10(t), d.dsn("default_query_exec_mode=simple_protocol"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := psqlAdmin(t, &pgmts{port: d.port}, adminUser, adminPass, "pgmts", "SHUTDOWN WAIT_FOR_CLIENTS"); err != nil {
		t.Fatalf("SHUTDOWN WAIT_FOR_CLIENTS: %v", err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		nc, err := pgx.Connect(ctx10(t), d.dsn())
		if err == nil {
			nc.Close(context.Background())
		}
		if sqlState(err) == "57P03" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a new client after SHUTDOWN WAIT_FOR_CLIENTS: %v, want 57P03", err)
		}
	}
	time.Sleep(300 * time.Millisecond)
	if d.exited() {
		t.Fatalf("pgmts exited with a client still connected\n%s", d.stderr)
	}
	if _, err := c.Exec(ctx10(t), "SELECT 1"); err != nil {
		t.Fatalf("the connected client after SHUTDOWN WAIT_FOR_CLIENTS: %v", err)
	}
	c.Close(context.Background())
	exitsWithin(t, d, 5*time.Second)
}
