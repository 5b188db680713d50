package integration

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgmts/pgmts/config"
	"github.com/pgmts/pgmts/pgtest"
)

const (
	adminUser = "pgmts"
	adminPass = "admin-pw"
	statsUser = "monitor"
	statsPass = "monitor-pw"
)

// withConsole adds an admin user and a stats user to the config.
func withConsole(mode string, max int) func(*config.Config) {
	return func(c *config.Config) {
		c.Pool.Mode = mode
		c.Pool.MaxSharedServers = max
		c.Users[adminUser] = config.User{Password: adminPass}
		c.Users[statsUser] = config.User{Password: statsPass}
		c.Pgmts.AdminUsers = []string{adminUser}
		c.Pgmts.StatsUsers = []string{statsUser}
	}
}

// table is a psql result: column names and rows of named values.
type table struct {
	cols []string
	rows []map[string]string
}

// where returns the rows whose column col equals value.
func (tb table) where(col, value string) []map[string]string {
	var out []map[string]string
	for _, r := range tb.rows {
		if r[col] == value {
			out = append(out, r)
		}
	}
	return out
}

// psqlAdmin runs one command with psql against database db of p (the
// console when db is "pgmts" or "pgbouncer") and parses its table.
func psqlAdmin(t *testing.T, p *pgmts, user, password, db, sql string) (table, error) {
	t.Helper()
	bin, err := pgtest.FindBin("psql")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-X", "-A", "-F", "\t", "-P", "footer=off", "-v", "ON_ERROR_STOP=1",
		"-h", "127.0.0.1", "-p", strconv.Itoa(p.port), "-U", user, "-d", db, "-c", sql)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+password, "PGCONNECT_TIMEOUT=10")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return table{}, errors.New(strings.TrimSpace(stderr.String()))
	}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(lines) == 0 || lines[0] == "" {
		return table{}, nil
	}
	tb := table{cols: strings.Split(lines[0], "\t")}
	for _, l := range lines[1:] {
		vals := strings.Split(l, "\t")
		r := map[string]string{}
		for i, c := range tb.cols {
			if i < len(vals) {
				r[c] = vals[i]
			}
		}
		tb.rows = append(tb.rows, r)
	}
	return tb, nil
}

// show runs SHOW subject as the admin user and fails the test on error.
func show(t *testing.T, p *pgmts, subject string) table {
	t.Helper()
	tb, err := psqlAdmin(t, p, adminUser, adminPass, "pgmts", "SHOW "+subject+";")
	if err != nil {
		t.Fatalf("SHOW %s: %v", subject, err)
	}
	return tb
}

func atoi(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("%q is not an integer", s)
	}
	return n
}

// pgbouncerColumns are PgBouncer 1.18's columns, as its console sends them.
var pgbouncerColumns = map[string][]string{
	"VERSION": {"version"},
	"CONFIG":  {"key", "value", "default", "changeable"},
	"DATABASES": {"name", "host", "port", "database", "force_user", "pool_size", "min_pool_size", "reserve_pool",
		"pool_mode", "max_connections", "current_connections", "paused", "disabled"},
	"POOLS": {"database", "user", "cl_active", "cl_waiting", "cl_active_cancel_req", "cl_waiting_cancel_req", "sv_active",
		"sv_active_cancel", "sv_being_canceled", "sv_idle", "sv_used", "sv_tested", "sv_login", "maxwait", "maxwait_us", "pool_mode"},
	"CLIENTS": append(slices.Clone(socketColumns), "id"),
	"SERVERS": socketColumns,
	"STATS": {"database", "total_xact_count", "total_query_count", "total_received", "total_sent", "total_xact_time",
		"total_query_time", "total_wait_time", "avg_xact_count", "avg_query_count", "avg_recv", "avg_sent", "avg_xact_time",
		"avg_query_time", "avg_wait_time", "total_requests"},
	"STATS_TOTALS":   statsColumns,
	"STATS_AVERAGES": statsColumns,
	"LISTS":          {"list", "items"},
	"USERS":          {"name", "pool_mode"},
	"DISPATCHERS": {"name", "listen", "status", "accepted", "owned", "messages", "bytes_received", "bytes_sent",
		"busy_us", "idle_us", "queue_depth", "queue_total"},
	"SHARED_SERVERS": {"database", "user", "pid", "status", "requests", "transactions", "queries", "bytes_received",
		"bytes_sent", "circuit", "bound_reason", "busy_us", "idle_us", "age_us", "dispatcher"},
	"QUEUE": {"type", "name", "queued", "total_queued", "total_wait_us", "avg_wait_us", "max_wait_us"},
	"CIRCUITS": {"circuit", "database", "user", "dispatcher", "server", "status", "queue", "requests", "messages",
		"bytes_received", "bytes_sent", "pool_mode", "pinned"},
	"SHARED_SERVER_MONITOR": {"pool", "servers", "starting", "servers_started", "servers_terminated", "servers_highwater", "max_servers"},
}

var (
	socketColumns = []string{"type", "user", "database", "state", "addr", "port", "local_addr", "local_port", "connect_time",
		"request_time", "wait", "wait_us", "close_needed", "ptr", "link", "remote_pid", "tls", "application_name"}
	statsColumns = []string{"database", "xact_count", "query_count", "bytes_received", "bytes_sent", "xact_time", "query_time", "wait_time"}
)

// TestAdminShowUnderLoad holds 30 transactions open in transaction mode
// and checks what every view says about them.
func TestAdminShowUnderLoad(t *testing.T) {
	p := startPgmts(t, withConsole("transaction", 40))
	const n = 30
	inTx := make(chan struct{}, n)
	release := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		concurrentClients(t, p, n, func(ctx context.Context, i int, c *pgx.Conn) error {
			tx, err := c.Begin(ctx)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "SELECT 1"); err != nil {
				return err
			}
			inTx <- struct{}{}
			<-release
			return tx.Commit(ctx)
		})
	}()
	for range n {
		select {
		case <-inTx:
		case <-time.After(30 * time.Second):
			t.Fatal("clients did not open their transactions")
		}
	}

	for subject, want := range pgbouncerColumns {
		if tb := show(t, p, subject); !slices.Equal(tb.cols, want) {
			t.Errorf("SHOW %s columns:\n got %v\nwant %v", subject, tb.cols, want)
		}
	}

	pools := show(t, p, "POOLS").where("database", "bench")
	if len(pools) != 1 {
		t.Fatalf("SHOW POOLS: %d rows for bench, want 1", len(pools))
	}
	for col, want := range map[string]string{"user": benchUser, "cl_active": "30", "cl_waiting": "0", "sv_active": "30",
		"sv_idle": "0", "pool_mode": "transaction"} {
		if got := pools[0][col]; got != want {
			t.Errorf("SHOW POOLS bench %s = %q, want %q", col, got, want)
		}
	}
	if rows := show(t, p, "POOLS").where("database", "pgmts"); len(rows) != 1 || rows[0]["cl_active"] != "1" {
		t.Errorf("SHOW POOLS console row = %v, want one active client (this psql)", rows)
	}

	clients := show(t, p, "CLIENTS").where("database", "bench")
	if len(clients) != n || len(show(t, p, "CLIENTS").where("state", "active")) < n {
		t.Errorf("SHOW CLIENTS: %d bench clients, want %d, all active: %v", len(clients), n, clients)
	}
	for _, c := range clients {
		if c["type"] != "C" || c["user"] != benchUser || c["addr"] != "127.0.0.1" || !strings.HasPrefix(c["link"], "S") {
			t.Errorf("SHOW CLIENTS row %v", c)
			break
		}
	}
	servers := show(t, p, "SERVERS").where("database", "bench")
	if len(servers) != n || len(show(t, p, "SERVERS").where("state", "active")) != n {
		t.Errorf("SHOW SERVERS: %d bench servers, want %d active", len(servers), n)
	}

	circuits := show(t, p, "CIRCUITS").where("database", "bench")
	if len(circuits) != n {
		t.Fatalf("SHOW CIRCUITS: %d bench circuits, want %d", len(circuits), n)
	}
	for _, c := range circuits {
		if c["status"] != "active" || c["queue"] != "server" || c["server"] == "" || c["pinned"] != "transaction" ||
			c["pool_mode"] != "transaction" || atoi(t, c["requests"]) < 2 || atoi(t, c["bytes_sent"]) == 0 {
			t.Errorf("SHOW CIRCUITS row %v", c)
			break
		}
	}
	shared := show(t, p, "SHARED_SERVERS").where("database", "bench")
	if len(shared) != n {
		t.Fatalf("SHOW SHARED_SERVERS: %d bench servers, want %d", len(shared), n)
	}
	for _, s := range shared {
		if s["status"] != "bound" || s["bound_reason"] != "transaction" || s["circuit"] == "" ||
			atoi(t, s["requests"]) < 2 || atoi(t, s["bytes_received"]) == 0 || atoi(t, s["age_us"]) == 0 {
			t.Errorf("SHOW SHARED_SERVERS row %v", s)
			break
		}
	}
	monitor := show(t, p, "SHARED_SERVER_MONITOR")
	if rows := monitor.where("pool", "bench/"+benchUser); len(rows) != 1 || rows[0]["servers"] != "30" ||
		atoi(t, rows[0]["servers_highwater"]) < n || rows[0]["max_servers"] != "40" {
		t.Errorf("SHOW SHARED_SERVER_MONITOR bench row: %v", rows)
	}
	if rows := monitor.where("pool", "(total)"); len(rows) != 1 || atoi(t, rows[0]["servers_started"]) < n {
		t.Errorf("SHOW SHARED_SERVER_MONITOR total row: %v", rows)
	}
	disp := show(t, p, "DISPATCHERS")
	var owned int64
	for _, d := range disp.rows {
		owned += atoi(t, d["owned"])
		if d["status"] != "accepting" || !strings.Contains(d["listen"], "127.0.0.1:") {
			t.Errorf("SHOW DISPATCHERS row %v", d)
		}
	}
	if len(disp.rows) != 2 || owned < n+1 {
		t.Errorf("SHOW DISPATCHERS: %d dispatchers owning %d connections, want 2 owning at least %d", len(disp.rows), owned, n+1)
	}
	if rows := show(t, p, "QUEUE").where("type", "dispatcher"); len(rows) != 2 {
		t.Errorf("SHOW QUEUE: %d dispatcher rows, want 2", len(rows))
	}
	lists := show(t, p, "LISTS")
	if rows := lists.where("list", "used_clients"); len(rows) != 1 || atoi(t, rows[0]["items"]) < n+1 {
		t.Errorf("SHOW LISTS used_clients: %v", rows)
	}
	if rows := lists.where("list", "used_servers"); len(rows) != 1 || rows[0]["items"] != "30" {
		t.Errorf("SHOW LISTS used_servers: %v", rows)
	}
	close(release)
	<-done

	// Released: the servers are idle again.
	deadline := time.Now().Add(5 * time.Second)
	for {
		pools := show(t, p, "POOLS").where("database", "bench")
		if len(pools) == 1 && pools[0]["sv_active"] == "0" && pools[0]["sv_idle"] == "30" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("SHOW POOLS after commit: %v", pools)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestAdminStatsAfterPgbench checks that the counters follow a pgbench run.
func TestAdminStatsAfterPgbench(t *testing.T) {
	p := startPgmts(t, withConsole("transaction", 10))
	before := map[string]int64{}
	if rows := show(t, p, "STATS").where("database", "bench"); len(rows) == 1 {
		for k, v := range rows[0] {
			if k != "database" {
				before[k] = atoi(t, v)
			}
		}
	}
	n := p.pgbench(t, "-M", "extended", "-c", "10", "-j", "2", "-t", "30")
	rows := show(t, p, "STATS").where("database", "bench")
	if len(rows) != 1 {
		t.Fatalf("SHOW STATS: no bench row")
	}
	after := rows[0]
	// pgbench's TPC-B transaction: BEGIN, 5 statements, END.
	if got := atoi(t, after["total_xact_count"]) - before["total_xact_count"]; got < int64(n) {
		t.Errorf("total_xact_count rose by %d, want at least %d", got, n)
	}
	if got := atoi(t, after["total_query_count"]) - before["total_query_count"]; got < int64(7*n) {
		t.Errorf("total_query_count rose by %d, want at least %d", got, 7*n)
	}
	for _, col := range []string{"total_received", "total_sent", "total_xact_time", "total_query_time", "total_requests", "avg_xact_time", "avg_query_time"} {
		if atoi(t, after[col]) <= before[col] {
			t.Errorf("SHOW STATS %s = %s, was %d", col, after[col], before[col])
		}
	}
	if after["total_requests"] != after["total_query_count"] {
		t.Errorf("total_requests %s != total_query_count %s", after["total_requests"], after["total_query_count"])
	}
	// The query timings come from the loop's clock (the time its wake-up
	// began): a query that sleeps 200 ms must count at least that.
	c := p.connect(t)
	if _, err := c.Exec(context.Background(), "SELECT pg_sleep(0.2)"); err != nil {
		t.Fatal(err)
	}
	_ = c.Close(context.Background())
	slept := show(t, p, "STATS").where("database", "bench")
	if len(slept) != 1 {
		t.Fatalf("SHOW STATS: no bench row")
	}
	if d := atoi(t, slept[0]["total_query_time"]) - atoi(t, after["total_query_time"]); d < 200_000 || d > 5_000_000 {
		t.Errorf("total_query_time rose by %d µs over SELECT pg_sleep(0.2), want 200000 to 5000000", d)
	}
	totals := show(t, p, "STATS_TOTALS").where("database", "bench")
	if len(totals) != 1 || atoi(t, totals[0]["xact_count"]) < int64(n) || atoi(t, totals[0]["bytes_sent"]) == 0 {
		t.Errorf("SHOW STATS_TOTALS bench: %v", totals)
	}
	if avg := show(t, p, "STATS_AVERAGES").where("database", "bench"); len(avg) != 1 || atoi(t, avg[0]["xact_time"]) == 0 {
		t.Errorf("SHOW STATS_AVERAGES bench: %v", avg)
	}
	queue := show(t, p, "QUEUE").where("name", "bench/"+benchUser)
	// A request that comes before its client's server is released goes
	// to that server directly: fewer queued requests than transactions.
	if len(queue) != 1 || atoi(t, queue[0]["total_queued"]) < int64(n/2) || queue[0]["queued"] != "0" {
		t.Errorf("SHOW QUEUE bench: %v", queue)
	}
	var messages, sent int64
	for _, d := range show(t, p, "DISPATCHERS").rows {
		messages += atoi(t, d["messages"])
		sent += atoi(t, d["bytes_sent"])
		if atoi(t, d["busy_us"]) == 0 && atoi(t, d["accepted"]) > 0 {
			t.Errorf("SHOW DISPATCHERS: %s accepted clients but was never busy", d["name"])
		}
	}
	if messages < int64(7*n) || sent == 0 {
		t.Errorf("SHOW DISPATCHERS: %d messages, %d bytes sent", messages, sent)
	}
	var requests int64
	for _, s := range show(t, p, "SHARED_SERVERS").where("database", "bench") {
		served := atoi(t, s["requests"])
		requests += served
		// Autoscaling may open a server late in the run that never gets a
		// request; one that served some must show the time it took.
		if s["status"] != "idle" || (served > 0 && atoi(t, s["busy_us"]) == 0) {
			t.Errorf("SHOW SHARED_SERVERS after pgbench: %v", s)
		}
	}
	if requests < int64(n) {
		t.Errorf("SHOW SHARED_SERVERS: %d requests served, want at least %d", requests, n)
	}
}

// TestAdminAccess checks who may use the console and what its errors do.
func TestAdminAccess(t *testing.T) {
	p := startPgmts(t, withConsole("transaction", 5))

	// The alias works, for the admin and the stats user.
	if tb, err := psqlAdmin(t, p, adminUser, adminPass, "pgbouncer", "show version"); err != nil ||
		len(tb.rows) != 1 || !strings.HasPrefix(tb.rows[0]["version"], "PgBouncer 1.18.0 (pgmts ") {
		t.Errorf("SHOW VERSION on pgbouncer: %v %v", tb, err)
	}
	if tb, err := psqlAdmin(t, p, statsUser, statsPass, "pgbouncer", "SHOW LISTS"); err != nil || len(tb.rows) != 12 {
		t.Errorf("stats user SHOW LISTS: %v %v", tb, err)
	}
	if _, err := psqlAdmin(t, p, adminUser, adminPass, "pgmts", "SHOW HELP"); err != nil {
		t.Errorf("SHOW HELP: %v", err)
	}

	// Anyone else is refused at login.
	_, err := pgx.Connect(ctx10(t), p.dsn(appUser, appPass, "pgmts"))
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Severity != "FATAL" || pe.Code != "28000" {
		t.Errorf("non-admin user on the console: %v, want FATAL 28000", err)
	}
	if _, err := pgx.Connect(ctx10(t), p.dsn(adminUser, "wrong", "pgmts")); sqlState(err) != "28P01" {
		t.Errorf("admin with a wrong password: %v, want 28P01", err)
	}

	// Errors are ERRORs; the session goes on.
	for _, tc := range []struct {
		user, pass, sql, code string
	}{
		{statsUser, statsPass, "PAUSE", "42501"},
		{statsUser, statsPass, "RELOAD;", "42501"},
		{adminUser, adminPass, "PAUSE nosuchdb", "3D000"},
		{adminUser, adminPass, "reload", "F0000"}, // started without a config file
		{adminUser, adminPass, "SET shared_servers = many", "22023"},
		{adminUser, adminPass, "SET listen = '127.0.0.1:1'", "22023"},
		{adminUser, adminPass, "SHUTDOWN", "0A000"}, // no shutdown hook in-process
		{adminUser, adminPass, "KILL_CLIENT 999999", "42704"},
		{adminUser, adminPass, "KILL pgmts", "55000"},
		{adminUser, adminPass, "SELECT 1", "42601"},
		{adminUser, adminPass, "SHOW NOTHING", "42601"},
		{adminUser, adminPass, "SHOW POOLS extra", "42601"},
		{adminUser, adminPass, "KILL", "42601"},
	} {
		for _, mode := range []string{"simple_protocol", "cache_statement"} {
			c, err := pgx.Connect(ctx10(t), p.dsn(tc.user, tc.pass, "pgmts", "default_query_exec_mode="+mode))
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Exec(ctx10(t), tc.sql)
			if got := sqlState(err); got != tc.code {
				t.Errorf("%s as %s (%s): %v, want SQLSTATE %s", tc.sql, tc.user, mode, err, tc.code)
			}
			var version string
			if err := c.QueryRow(ctx10(t), "SHOW VERSION").Scan(&version); err != nil || !strings.Contains(version, "pgmts") {
				t.Errorf("after %q (%s) the session is not usable: %v", tc.sql, mode, err)
			}
			c.Close(context.Background())
		}
	}
	// Fake session parameters, as PgBouncer answers them.
	c, err := pgx.Connect(ctx10(t), p.dsn(adminUser, adminPass, "pgmts", "default_query_exec_mode=simple_protocol"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(ctx10(t), "SET extra_float_digits = 3"); err != nil {
		t.Errorf("SET extra_float_digits: %v", err)
	}
	if s := queryString(t, c, "SHOW client_encoding"); s != "UTF-8" {
		t.Errorf("SHOW client_encoding = %q", s)
	}
	if _, err := c.Exec(ctx10(t), ";"); err != nil {
		t.Errorf("empty query: %v", err)
	}
}

// TestAdminExtendedProtocol runs the console with pgx's extended-protocol
// modes, binary results included.
func TestAdminExtendedProtocol(t *testing.T) {
	p := startPgmts(t, withConsole("transaction", 5))
	bench := p.connect(t)
	if _, err := bench.Exec(ctx10(t), "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"cache_statement", "cache_describe", "describe_exec", "exec"} {
		t.Run(mode, func(t *testing.T) {
			c, err := pgx.Connect(ctx10(t), p.dsn(statsUser, statsPass, "pgbouncer", "default_query_exec_mode="+mode))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close(context.Background())
			// One server, or two once the pool has placed one on each
			// dispatcher's loop.
			for range 2 { // the second time, cached statements are reused
				var db, user, poolMode string
				var active, waiting, svActive, svIdle, svUsed, maxwait int32
				var skip [7]int32
				err := c.QueryRow(ctx10(t), "SHOW POOLS").Scan(&db, &user, &active, &waiting, &skip[0], &skip[1], &svActive,
					&skip[2], &skip[3], &svIdle, &svUsed, &skip[4], &skip[5], &maxwait, &skip[6], &poolMode)
				if err != nil || db != "bench" || active != 1 || svIdle+svActive < 1 || svIdle+svActive > 2 || poolMode != "transaction" {
					t.Errorf("SHOW POOLS: %v %s %s active=%d sv_active=%d sv_idle=%d", err, db, user, active, svActive, svIdle)
				}
			}
			rows, err := c.Query(ctx10(t), "SHOW STATS")
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for rows.Next() {
				vals, err := rows.Values()
				if err != nil {
					t.Fatal(err)
				}
				if vals[0] == "bench" {
					found = true
					var xacts int64
					if err := rows.Scan(nil, &xacts, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil); err != nil || xacts < 1 {
						t.Errorf("SHOW STATS total_xact_count = %d, %v", xacts, err)
					}
				}
			}
			if rows.Err() != nil || !found {
				t.Errorf("SHOW STATS: %v, bench row found: %v", rows.Err(), found)
			}
			var circuit, requests int64
			var dbName, dispatcher, status string
			err = c.QueryRow(ctx10(t), "SHOW CIRCUITS").Scan(&circuit, &dbName, nil, &dispatcher, nil, &status, nil, &requests, nil, nil, nil, nil, nil)
			if err != nil || circuit == 0 || dispatcher == "" {
				t.Errorf("SHOW CIRCUITS: %v circuit=%d dispatcher=%q", err, circuit, dispatcher)
			}
			rows, err = c.Query(ctx10(t), "SHOW DISPATCHERS")
			if err != nil {
				t.Fatal(err)
			}
			var accepted, total int64
			_, err = pgx.ForEachRow(rows, []any{nil, nil, nil, &accepted, nil, nil, nil, nil, nil, nil, nil, nil}, func() error {
				total += accepted
				return nil
			})
			if err != nil || total < 2 {
				t.Errorf("SHOW DISPATCHERS: %v, %d connections accepted", err, total)
			}
			if _, err := c.Exec(ctx10(t), "PAUSE"); sqlState(err) != "42501" {
				t.Errorf("PAUSE as a stats user: %v, want 42501", err)
			}
			var version string
			if err := c.QueryRow(ctx10(t), "SHOW VERSION;").Scan(&version); err != nil || !strings.HasPrefix(version, "PgBouncer") {
				t.Errorf("SHOW VERSION after an error: %q %v", version, err)
			}
		})
	}
}
