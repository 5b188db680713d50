package integration

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgmts/pgmts/config"
	"github.com/pgmts/pgmts/sharedserver"
)

// In transaction mode a client whose session gains state that lives in
// its backend only (LISTEN, SQL PREPARE) keeps that server until it
// leaves; then the server is cleared with DISCARD ALL. Statement mode
// refuses such state instead.

// afterOtherTakesServer runs sql on a new client, then has another
// client open a transaction, which holds a server until the test ends:
// the most recently parked one, the first client's, were it released.
// oneLoop runs pgmts with one dispatcher. A parked server goes first to a
// client of its own loop; with one loop every client takes the most
// recently parked server, which these tests rely on.
func oneLoop(edit func(*config.Config)) func(*config.Config) {
	return func(c *config.Config) {
		edit(c)
		c.Pgmts.Dispatchers = 1
	}
}

func afterOtherTakesServer(t *testing.T, p *pgmts, sql string) *pgx.Conn {
	t.Helper()
	c := p.connect(t)
	if _, err := c.Exec(ctx10(t), sql); err != nil {
		t.Fatal(err)
	}
	tx, err := p.connect(t).Begin(ctx10(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	return c
}

// TestListenPinsServer: a LISTEN in transaction mode keeps working while
// another client takes a server: the notification reaches the listener.
// Unpinned, the listener's backend went back to the pool after LISTEN and
// the other client's BEGIN took it (the most recently parked), so the
// notification went to that client instead.
func TestListenPinsServer(t *testing.T) {
	p := startPgmts(t, oneLoop(setMode("transaction", 3)))
	l := afterOtherTakesServer(t, p, "LISTEN pgmts_pin")
	n := p.connect(t)
	if _, err := n.Exec(ctx10(t), "NOTIFY pgmts_pin, 'hello'"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	note, err := l.WaitForNotification(ctx)
	if err != nil {
		t.Fatalf("the listener got no notification: %v", err)
	}
	if note.Channel != "pgmts_pin" || note.Payload != "hello" {
		t.Fatalf("notification %+v", note)
	}
}

// TestSQLPrepareKeepsServer: a statement made with SQL PREPARE can be
// executed later in transaction mode, though another client took a
// server meanwhile.
func TestSQLPrepareKeepsServer(t *testing.T) {
	p := startPgmts(t, oneLoop(setMode("transaction", 3)))
	c := afterOtherTakesServer(t, p, "PREPARE pin_q AS SELECT 42")
	var v int
	if err := c.QueryRow(ctx10(t), "EXECUTE pin_q").Scan(&v); err != nil || v != 42 {
		t.Fatalf("EXECUTE pin_q: %d, %v", v, err)
	}
}

// TestPinnedClientLeavesNoState: with one backend and server_reset_query
// off, the client after a pinned one gets the same backend, with no
// listen and no SQL prepared statement left in it.
func TestPinnedClientLeavesNoState(t *testing.T) {
	p := startPgmts(t, func(c *config.Config) {
		setMode("transaction", 1)(c)
		c.Pool.ServerResetQuery = ""
	})
	a := p.connect(t)
	var pidA, pidB int
	for _, sql := range []string{"LISTEN pgmts_gone", "PREPARE gone_q AS SELECT 1"} {
		if _, err := a.Exec(ctx10(t), sql); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.QueryRow(ctx10(t), "SELECT pg_backend_pid()").Scan(&pidA); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(ctx10(t)); err != nil {
		t.Fatal(err)
	}
	b := p.connect(t)
	var listens, prepared int
	err := b.QueryRow(ctx10(t), `SELECT pg_backend_pid(), (SELECT count(*) FROM pg_listening_channels()),
		(SELECT count(*) FROM pg_prepared_statements WHERE from_sql)`).Scan(&pidB, &listens, &prepared)
	if err != nil {
		t.Fatal(err)
	}
	if pidB != pidA || listens != 0 || prepared != 0 {
		t.Fatalf("next client: backend %d (pinned client's %d), %d listens, %d SQL prepared statements; want the same backend, none left", pidB, pidA, listens, prepared)
	}
}

// pinnedCircuits returns the pinned column of the circuits pinned by
// session state ("pinned: ..."), as SHOW CIRCUITS tells them.
func pinnedCircuits(t *testing.T, p *pgmts) []string {
	t.Helper()
	var pinned []string
	for _, c := range show(t, p, "CIRCUITS").rows {
		if strings.HasPrefix(c["pinned"], "pinned: ") {
			pinned = append(pinned, c["pinned"])
		}
	}
	return pinned
}

// waitUnpinned waits until no circuit is pinned by session state.
func waitUnpinned(t *testing.T, p *pgmts) {
	t.Helper()
	waitCount(t, "circuits pinned by session state", 0, 5*time.Second, func() int { return len(pinnedCircuits(t, p)) })
}

// TestSessionStatePins: in transaction mode, each kind of session state
// keeps its client on its backend (the state stays usable while another
// client holds a server, and SHOW CIRCUITS names it), and dropping it
// lets the backend go again.
func TestSessionStatePins(t *testing.T) {
	p := startPgmts(t, oneLoop(withConsole("transaction", 3)))
	for _, tc := range []struct {
		name, make, count, drop, reason string
	}{
		{"temp table", "CREATE TEMP TABLE pin_t AS SELECT 1 AS x", "SELECT count(*) FROM pin_t", "DROP TABLE pin_t", "temporary table"},
		{"holdable cursor", "DECLARE pin_c CURSOR WITH HOLD FOR SELECT generate_series(1, 3)",
			"SELECT count(*) FROM pg_cursors WHERE name = 'pin_c'", "CLOSE pin_c", "WITH HOLD cursor"},
		{"advisory lock", "SELECT pg_advisory_lock(4242)",
			"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()",
			"SELECT pg_advisory_unlock(4242)", "advisory lock"},
		{"listen", "LISTEN pin_l", "SELECT count(*) FROM pg_listening_channels()", "UNLISTEN pin_l", "LISTEN"},
		{"sql prepare", "PREPARE pin_p AS SELECT 1", "SELECT count(*) FROM pg_prepared_statements WHERE name = 'pin_p'",
			"DEALLOCATE pin_p", "SQL PREPARE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := afterOtherTakesServer(t, p, tc.make)
			var n int
			if err := c.QueryRow(ctx10(t), tc.count).Scan(&n); err != nil || n != 1 {
				t.Fatalf("%s on the client's next transaction: %d, %v; want 1 (its own backend)", tc.count, n, err)
			}
			if pinned := pinnedCircuits(t, p); len(pinned) != 1 || pinned[0] != "pinned: "+tc.reason {
				t.Fatalf("SHOW CIRCUITS pinned: %q, want one %q", pinned, "pinned: "+tc.reason)
			}
			if _, err := c.Exec(ctx10(t), tc.drop); err != nil {
				t.Fatal(err)
			}
			waitUnpinned(t, p)
		})
	}
}

// TestCursorInTransactionDoesNotPin: a cursor without HOLD ends with its
// transaction, and so does an ON COMMIT DROP temporary table: neither
// keeps the backend.
func TestCursorInTransactionDoesNotPin(t *testing.T) {
	p := startPgmts(t, withConsole("transaction", 2))
	c := p.connect(t)
	tx, err := c.Begin(ctx10(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, sql := range []string{"DECLARE tx_c CURSOR FOR SELECT 1", "FETCH 1 FROM tx_c",
		"CREATE TEMP TABLE tx_t (x int) ON COMMIT DROP"} {
		if _, err := tx.Exec(ctx10(t), sql); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(ctx10(t)); err != nil {
		t.Fatal(err)
	}
	waitUnpinned(t, p)
	for _, cl := range show(t, p, "CIRCUITS").where("database", "bench") {
		if cl["status"] != "idle" {
			t.Fatalf("the client still holds a server after its transaction: %v", cl)
		}
	}
	// The TEMP table asks once; a cursor without HOLD does not.
	if n := stateQueries(p); n != 1 {
		t.Fatalf("%d session-state queries, want 1", n)
	}
}

// stateQueries counts the queries pgmts sent to ask its backends about
// the bench pool's clients' session state.
func stateQueries(p *pgmts) int64 {
	var n int64
	for _, pool := range p.pools.Snapshot().Pools {
		if pool.Database == "bench" {
			n += pool.Totals.StateQueries
		}
	}
	return n
}

// TestUnreportedSetFollowsClient: in transaction mode, a SET of a parameter
// PostgreSQL does not report (work_mem, search_path) follows the client to
// another backend without pinning it, the backend it was made on does
// not pass it to the next client, and RESET takes it back.
func TestUnreportedSetFollowsClient(t *testing.T) {
	p := startPgmts(t, oneLoop(withConsole("transaction", 2)))
	a := p.connect(t)
	var def string
	if err := p.connect(t).QueryRow(ctx10(t), "SHOW work_mem").Scan(&def); err != nil {
		t.Fatal(err)
	}
	if n := stateQueries(p); n != 0 {
		t.Fatalf("%d session-state queries after plain queries, want 0", n)
	}
	for _, sql := range []string{"SET work_mem = '7MB'", "SET search_path = pin_schema, public", "SET TimeZone = 'Asia/Tokyo'"} {
		if _, err := a.Exec(ctx10(t), sql); err != nil {
			t.Fatal(err)
		}
	}
	waitUnpinned(t, p)
	var pidA, pidB int
	if err := a.QueryRow(ctx10(t), "SELECT pg_backend_pid()").Scan(&pidA); err != nil {
		t.Fatal(err)
	}
	// b's transaction takes the backend a last used (the most recently
	// parked), so a's next one runs on the other.
	tx, err := p.connect(t).Begin(ctx10(t))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	var bMem, bPath string
	if err := tx.QueryRow(ctx10(t), "SELECT pg_backend_pid(), current_setting('work_mem'), current_setting('search_path')").Scan(&pidB, &bMem, &bPath); err != nil {
		t.Fatal(err)
	}
	if pidB != pidA || bMem != def || strings.Contains(bPath, "pin_schema") {
		t.Fatalf("next client on backend %d (a's %d): work_mem %s, search_path %s; want a's backend with its defaults (%s)", pidB, pidA, bMem, bPath, def)
	}
	var pid int
	var mem, path, tz string
	if err := a.QueryRow(ctx10(t), "SELECT pg_backend_pid(), current_setting('work_mem'), current_setting('search_path'), current_setting('TimeZone')").Scan(&pid, &mem, &path, &tz); err != nil {
		t.Fatal(err)
	}
	if pid == pidA || mem != "7MB" || path != "pin_schema, public" || tz != "Asia/Tokyo" {
		t.Fatalf("a on backend %d (it set them on %d): work_mem %s, search_path %s, TimeZone %s; want another backend with a's settings", pid, pidA, mem, path, tz)
	}
	if _, err := a.Exec(ctx10(t), "RESET work_mem"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx10(t)); err != nil {
		t.Fatal(err)
	}
	for range 3 { // whichever backend it gets
		if err := a.QueryRow(ctx10(t), "SHOW work_mem").Scan(&mem); err != nil || mem != def {
			t.Fatalf("work_mem after RESET: %s, %v; want %s", mem, err, def)
		}
		if err := p.connect(t).QueryRow(ctx10(t), "SHOW work_mem").Scan(&mem); err != nil || mem != def {
			t.Fatalf("another client's work_mem: %s, %v; want %s", mem, err, def)
		}
	}
	waitUnpinned(t, p)
	if n := stateQueries(p); n != 4 {
		t.Fatalf("%d session-state queries, want 4: one read-back for each SET and the RESET", n)
	}
}

// sendPipeline sends each query, with a Sync after each, in one pipeline.
func sendPipeline(t *testing.T, c *pgx.Conn, sqls ...string) *pgconn.Pipeline {
	t.Helper()
	pl := c.PgConn().StartPipeline(ctx10(t))
	for _, sql := range sqls {
		pl.SendQueryParams(sql, nil, nil, nil, nil)
		if err := pl.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	if err := pl.Flush(); err != nil {
		t.Fatal(err)
	}
	return pl
}

// TestCheckWaitsForPipeline: a client that sends more requests before
// the reply to the one that made session state gets every reply (the
// backend is asked about its state only once nothing is in flight).
func TestCheckWaitsForPipeline(t *testing.T) {
	p := startPgmts(t, withConsole("transaction", 2))
	c := p.connect(t)
	pl := sendPipeline(t, c, "CREATE TEMP TABLE pipe_t AS SELECT 7 AS x", "SELECT x + 1 FROM pipe_t", "SELECT x + 2 FROM pipe_t")
	var got []string
	for syncs := 0; syncs < 3; {
		res, err := pl.GetResults()
		if err != nil {
			t.Fatal(err)
		}
		switch r := res.(type) {
		case *pgconn.ResultReader:
			rr := r.Read()
			if rr.Err != nil {
				t.Fatal(rr.Err)
			}
			for _, row := range rr.Rows {
				got = append(got, string(row[0]))
			}
		case *pgconn.PipelineSync:
			syncs++
		}
	}
	if err := pl.Close(); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ",") != "8,9" {
		t.Fatalf("pipelined results %v, want [8 9]", got)
	}
	if pinned := pinnedCircuits(t, p); len(pinned) != 1 || pinned[0] != "pinned: temporary table" {
		t.Fatalf("SHOW CIRCUITS pinned: %q, want the temporary table", pinned)
	}
	var v int
	if err := c.QueryRow(ctx10(t), "SELECT x FROM pipe_t").Scan(&v); err != nil || v != 7 {
		t.Fatalf("the temporary table after the pipeline: %d, %v", v, err)
	}
}

const loader, loaderPass = "pin_loader", "loader-pw"

// loaderClient starts pgmts in mode with max servers and a superuser
// (LOAD outside $libdir/plugins needs one), and connects as that user.
func loaderClient(t *testing.T, mode string, max int) (*pgx.Conn, *pgmts) {
	t.Helper()
	err := cluster.Exec(`DO $$ BEGIN CREATE ROLE ` + loader + ` SUPERUSER LOGIN PASSWORD '` + loaderPass + `';
		EXCEPTION WHEN duplicate_object THEN NULL; END $$`)
	if err != nil {
		t.Fatal(err)
	}
	p := startPgmts(t, func(c *config.Config) {
		withConsole(mode, max)(c)
		c.Users[loader] = config.User{Password: loaderPass}
	})
	return loaderConnect(t, p), p
}

// loaderConnect connects to p as loaderClient's superuser.
func loaderConnect(t *testing.T, p *pgmts) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(ctx10(t), p.dsn(loader, loaderPass, "bench"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// TestLoadClosesBackend: a library a client LOADed cannot be unloaded, so
// its backend is closed when the client leaves, not handed on. (LOAD
// outside $libdir/plugins needs a superuser.)
func TestLoadClosesBackend(t *testing.T) {
	needCluster(t)
	a, p := loaderClient(t, "transaction", 1)
	var pidA, pidB int
	if _, err := a.Exec(ctx10(t), "LOAD 'plpgsql'"); err != nil {
		t.Fatal(err)
	}
	if err := a.QueryRow(ctx10(t), "SELECT pg_backend_pid()").Scan(&pidA); err != nil {
		t.Fatal(err)
	}
	if pinned := pinnedCircuits(t, p); len(pinned) != 1 || pinned[0] != "pinned: LOAD" {
		t.Fatalf("SHOW CIRCUITS pinned: %q, want LOAD", pinned)
	}
	if err := a.Close(ctx10(t)); err != nil {
		t.Fatal(err)
	}
	if err := loaderConnect(t, p).QueryRow(ctx10(t), "SELECT pg_backend_pid()").Scan(&pidB); err != nil {
		t.Fatal(err)
	}
	if pidB == pidA {
		t.Fatalf("the next client got backend %d, which had a library LOADed", pidA)
	}
}

// TestResetReturnsToLoginValue: a client that logged in with work_mem
// (options=-c), SET it and RESET it gets its login value back, as on a
// direct connection, on whichever backend serves it next.
func TestResetReturnsToLoginValue(t *testing.T) {
	p := startPgmts(t, withConsole("transaction", 2))
	a := p.connect(t, "options='-c work_mem=5MB'")
	for _, sql := range []string{"SET work_mem = '7MB'", "RESET work_mem"} {
		if _, err := a.Exec(ctx10(t), sql); err != nil {
			t.Fatal(err)
		}
	}
	waitUnpinned(t, p)
	for range 3 { // with and without another client holding a backend
		var mem string
		if err := a.QueryRow(ctx10(t), "SHOW work_mem").Scan(&mem); err != nil || mem != "5MB" {
			t.Fatalf("work_mem after RESET: %s, %v; want the login value 5MB", mem, err)
		}
		tx, err := p.connect(t).Begin(ctx10(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := a.QueryRow(ctx10(t), "SHOW work_mem").Scan(&mem); err != nil || mem != "5MB" {
			t.Fatalf("work_mem after RESET, on the other backend: %s, %v; want 5MB", mem, err)
		}
		if err := tx.Rollback(ctx10(t)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestStatementModeRefusesSessionState: in statement mode a command that
// makes state outliving it gets ERROR 0A000, the backend that holds the
// state is closed, and nothing pins the client, which goes on on another
// backend. A command whose tag names the state (LISTEN, PREPARE, LOAD)
// gets the error in place of its result, and the rest of its query is
// not relayed; state only the check query finds (a temporary table, a WITH
// HOLD cursor, a session advisory lock) gets it after the query's results,
// before ReadyForQuery.
func TestStatementModeRefusesSessionState(t *testing.T) {
	c, p := loaderClient(t, "statement", 2) // LOAD needs a superuser
	bystander := p.connect(t)
	for _, tc := range []struct {
		name, make, message string
		tagged              bool   // the rest of the query is not relayed
		gone                string // counts what must be left nowhere
	}{
		{"listen", "LISTEN st_l", "LISTEN is not allowed in statement pooling mode", true, ""},
		{"sql prepare", "PREPARE st_p AS SELECT 1", "PREPARE is not allowed in statement pooling mode", true, ""},
		{"load", "LOAD 'plpgsql'", "LOAD is not allowed in statement pooling mode", true, ""},
		{"temp table", "CREATE TEMP TABLE st_t AS SELECT 1 AS x",
			"session state left by the statement (temporary table) is not allowed", false,
			"SELECT count(*)::text FROM pg_class WHERE relname = 'st_t'"},
		{"holdable cursor", "DECLARE st_c CURSOR WITH HOLD FOR SELECT 1",
			"session state left by the statement (WITH HOLD cursor) is not allowed", false, ""},
		{"advisory lock", "SELECT pg_advisory_lock(4343)",
			"session state left by the statement (advisory lock) is not allowed", false,
			"SELECT count(*)::text FROM pg_locks WHERE locktype = 'advisory' AND objid = 4343"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			results, err := c.PgConn().Exec(ctx10(t), "SELECT pg_backend_pid()::text; "+tc.make+"; SELECT 'after'").ReadAll()
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != "0A000" || !strings.Contains(pe.Message, tc.message) {
				t.Fatalf("%s in statement mode: %v, want 0A000 %q", tc.make, err, tc.message)
			}
			if len(results) == 0 || len(results[0].Rows) != 1 {
				t.Fatalf("no backend pid in %d results", len(results))
			}
			pid := string(results[0].Rows[0][0])
			relayed := false
			for _, r := range results {
				for _, row := range r.Rows {
					relayed = relayed || string(row[0]) == "after"
				}
			}
			if relayed == tc.tagged {
				t.Fatalf("the statement after %q relayed: %v, want %v", tc.make, relayed, !tc.tagged)
			}
			waitCount(t, "backends with the refused state", 0, 5*time.Second, func() int {
				return int(atoi(t, queryString(t, bystander, "SELECT count(*)::text FROM pg_stat_activity WHERE pid = "+pid)))
			})
			if tc.gone != "" {
				if n := queryString(t, bystander, tc.gone); n != "0" {
					t.Fatalf("%s: %s, want 0", tc.gone, n)
				}
			}
			if got := queryString(t, c, "SELECT 'goes on'"); got != "goes on" {
				t.Fatal(got)
			}
			if pinned := pinnedCircuits(t, p); len(pinned) != 0 {
				t.Fatalf("pinned circuits in statement mode: %q", pinned)
			}
		})
	}
	// A COPY FROM STDIN later in a refused query gets no data from the
	// client, which was told of the error: pgmts ends it.
	if _, err := bystander.Exec(ctx10(t), "CREATE TABLE IF NOT EXISTS st_copy (x int)"); err != nil {
		t.Fatal(err)
	}
	_, err := c.PgConn().Exec(ctx10(t), "LISTEN st_l2; COPY st_copy FROM STDIN").ReadAll()
	if sqlState(err) != "0A000" {
		t.Fatalf("LISTEN then COPY: %v, want 0A000", err)
	}
	// The extended protocol gets the same error.
	_, err = c.PgConn().ExecParams(ctx10(t), "LISTEN st_x", nil, nil, nil, nil).Close()
	if sqlState(err) != "0A000" {
		t.Fatalf("LISTEN through the extended protocol: %v, want 0A000", err)
	}
	if got := queryString(t, c, "SELECT 'still goes on'"); got != "still goes on" {
		t.Fatal(got)
	}
	refusals := p.poolSum(func(s sharedserver.PoolSnapshot) int64 { return s.Totals.Refusals })
	if refusals != 8 {
		t.Fatalf("%d refusals counted, want 8", refusals)
	}
}

// TestStatementModeRefusesAfterPipeline: in statement mode, state made by
// the first of pipelined queries is refused once nothing is in flight:
// every reply comes, and the error with the last ReadyForQuery.
func TestStatementModeRefusesAfterPipeline(t *testing.T) {
	p := startPgmts(t, withConsole("statement", 2))
	c := p.connect(t)
	pl := sendPipeline(t, c, "CREATE TEMP TABLE pipe_s AS SELECT 7 AS x", "SELECT x + 1 FROM pipe_s", "SELECT 'last'")
	var got []string
	var refused error
	for syncs := 0; syncs < 3; {
		res, err := pl.GetResults()
		if err != nil {
			refused = err
			got = append(got, "error")
			continue
		}
		switch r := res.(type) {
		case *pgconn.ResultReader:
			rr := r.Read()
			if rr.Err != nil {
				refused = rr.Err
				got = append(got, "error")
			}
			for _, row := range rr.Rows {
				got = append(got, string(row[0]))
			}
		case *pgconn.PipelineSync:
			syncs++
			got = append(got, "sync")
		}
	}
	_ = pl.Close()
	if strings.Join(got, ",") != "sync,8,sync,last,error,sync" || sqlState(refused) != "0A000" {
		t.Fatalf("pipelined replies %v (%v), want [sync 8 sync last error sync] and 0A000", got, refused)
	}
	if got := queryString(t, c, "SELECT 'goes on'"); got != "goes on" {
		t.Fatal(got)
	}
	if pinned := pinnedCircuits(t, p); len(pinned) != 0 {
		t.Fatalf("pinned circuits in statement mode: %q", pinned)
	}
}

// TestStatementModeRefusedListenHearsNothing: a query pipelined behind a
// refused LISTEN runs on the backend that listens until it closes; a
// notification that comes meanwhile (here the query's own) is not passed
// on, since the client was told its LISTEN failed.
func TestStatementModeRefusedListenHearsNothing(t *testing.T) {
	p := startPgmts(t, withConsole("statement", 2))
	cfg, err := pgx.ParseConfig(p.dsn(benchUser, benchPass, "bench"))
	if err != nil {
		t.Fatal(err)
	}
	var heard atomic.Int32
	cfg.OnNotification = func(*pgconn.PgConn, *pgconn.Notification) { heard.Add(1) }
	c, err := pgx.ConnectConfig(ctx10(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	pl := sendPipeline(t, c, "LISTEN refused_chan", "SELECT pg_notify('refused_chan', 'x')::text")
	var got []string
	for syncs := 0; syncs < 2; {
		res, err := pl.GetResults()
		if err != nil {
			got = append(got, sqlState(err))
			continue
		}
		switch r := res.(type) {
		case *pgconn.ResultReader:
			if rr := r.Read(); rr.Err != nil {
				got = append(got, sqlState(rr.Err))
			} else {
				got = append(got, "rows")
			}
		case *pgconn.PipelineSync:
			syncs++
			got = append(got, "sync")
		}
	}
	_ = pl.Close()
	if strings.Join(got, ",") != "0A000,sync,rows,sync" {
		t.Fatalf("pipelined replies %v, want [0A000 sync rows sync]", got)
	}
	queryString(t, c, "SELECT 'after'")
	if n := heard.Load(); n != 0 {
		t.Fatalf("the client of a refused LISTEN heard %d notifications", n)
	}
}
