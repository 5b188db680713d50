package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// TestStartupParametersFollowClients: clients with different settings, some
// through options=-c, interleave transactions over two backends in
// transaction mode; each always sees its own values.
func TestStartupParametersFollowClients(t *testing.T) {
	p := startPgmts(t, setMode("transaction", 2))
	type want struct {
		extra                                []string
		dateStyle, timeZone, searchPath, app string
		stamp                                string // '2020-01-02 03:04:05+00'::timestamptz::text
	}
	clients := []want{
		{[]string{"DateStyle=ISO,DMY", "TimeZone=UTC", "search_path=public", "application_name=alpha"}, "ISO, DMY", "UTC", "public", "alpha", "2020-01-02 03:04:05+00"},
		{[]string{"DateStyle=SQL,DMY", "TimeZone=Asia/Tokyo", "application_name=beta"}, "SQL, DMY", "Asia/Tokyo", `"$user", public`, "beta", "02/01/2020 12:04:05 JST"},
		{[]string{"options='-c DateStyle=German -c TimeZone=Europe/Berlin -c search_path=pg_catalog'", "application_name=gamma"}, "German, DMY", "Europe/Berlin", "pg_catalog", "gamma", "02.01.2020 04:04:05 CET"},
		{[]string{"options=-ctimezone=America/New_York"}, "ISO, MDY", "America/New_York", `"$user", public`, "", "2020-01-01 22:04:05-05"},
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(clients))
	for _, w := range clients {
		// Simple protocol so that the connection uses nothing but the
		// settings under test (pgx's statement cache is another test's).
		c := p.connect(t, append(w.extra, "default_query_exec_mode=simple_protocol")...)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 30; i++ {
				tx, err := c.Begin(context.Background())
				if err != nil {
					errs <- err
					return
				}
				var ds, tz, sp, app, stamp string
				err = tx.QueryRow(context.Background(), `SELECT current_setting('DateStyle'), current_setting('TimeZone'),
					current_setting('search_path'), current_setting('application_name'), '2020-01-02 03:04:05+00'::timestamptz::text`).Scan(&ds, &tz, &sp, &app, &stamp)
				if err == nil {
					var shown string
					err = tx.QueryRow(context.Background(), "SHOW TimeZone").Scan(&shown)
					if err == nil && shown != w.timeZone {
						err = fmt.Errorf("SHOW TimeZone = %q, want %q", shown, w.timeZone)
					}
				}
				if err == nil {
					err = tx.Commit(context.Background())
				}
				if err != nil {
					errs <- err
					return
				}
				if ds != w.dateStyle || tz != w.timeZone || sp != w.searchPath || app != w.app || stamp != w.stamp {
					errs <- fmt.Errorf("client %v saw DateStyle=%q TimeZone=%q search_path=%q application_name=%q stamp=%q; want %q %q %q %q %q",
						w.extra, ds, tz, sp, app, stamp, w.dateStyle, w.timeZone, w.searchPath, w.app, w.stamp)
					return
				}
				if got := c.PgConn().ParameterStatus("TimeZone"); got != w.timeZone {
					errs <- fmt.Errorf("client %v: ParameterStatus TimeZone = %q, want %q", w.extra, got, w.timeZone)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := p.pools.BackendCount(); n > 2 {
		t.Fatalf("%d backends for a pool capped at 2", n)
	}
}

// TestSetFollowsClient: in transaction mode a SET of a reported parameter
// follows the client onto other backends and does not leak to others.
func TestSetFollowsClient(t *testing.T) {
	p := startPgmts(t, setMode("transaction", 2))
	a := p.connect(t, "default_query_exec_mode=simple_protocol")
	b := p.connect(t, "default_query_exec_mode=simple_protocol")
	if _, err := a.Exec(ctx10(t), "SET TimeZone = 'Pacific/Auckland'"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		// Hold one backend in b's transaction so a moves between backends.
		tx, err := b.Begin(ctx10(t))
		if err != nil {
			t.Fatal(err)
		}
		if got := queryString(t, a, "SHOW TimeZone"); got != "Pacific/Auckland" {
			t.Fatalf("a: TimeZone %q after SET", got)
		}
		var tz string
		if err := tx.QueryRow(ctx10(t), "SHOW TimeZone").Scan(&tz); err != nil || tz == "Pacific/Auckland" {
			t.Fatalf("b sees TimeZone %q (%v)", tz, err)
		}
		if err := tx.Commit(ctx10(t)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSessionModeKeepsState: a session-mode client keeps its backend and
// everything on it; another client sees none of it.
func TestSessionModeKeepsState(t *testing.T) {
	p := startPgmts(t, setMode("session", 4))
	a := p.connect(t)
	b := p.connect(t)
	for _, sql := range []string{"SET work_mem = '7MB'", "CREATE TEMP TABLE mine (x int)", "INSERT INTO mine VALUES (1)", "PREPARE q AS SELECT 42"} {
		if _, err := a.Exec(ctx10(t), sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	pid := queryString(t, a, "SELECT pg_backend_pid()::text")
	for i := 0; i < 10; i++ {
		if got := queryString(t, b, "SHOW work_mem"); got == "7MB" {
			t.Fatal("b sees a's work_mem")
		}
		if got := queryString(t, a, "SELECT pg_backend_pid()::text"); got != pid {
			t.Fatalf("a moved from backend %s to %s in session mode", pid, got)
		}
		if got := queryString(t, a, "SHOW work_mem"); got != "7MB" {
			t.Fatalf("a lost its work_mem: %q", got)
		}
		if got := queryString(t, a, "SELECT count(*)::text FROM mine"); got != "1" {
			t.Fatalf("a's temp table has %s rows", got)
		}
		if got := queryString(t, a, "EXECUTE q"); got != "42" {
			t.Fatalf("EXECUTE q = %s", got)
		}
	}
}

// TestTransactionIsolation: two clients interleaving transactions in
// transaction mode never see each other's uncommitted work.
func TestTransactionIsolation(t *testing.T) {
	p := startPgmts(t, setMode("transaction", 2))
	setup := p.connect(t)
	if _, err := setup.Exec(ctx10(t), "DROP TABLE IF EXISTS iso; CREATE TABLE iso (who text, n int)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = setup.Exec(context.Background(), "DROP TABLE IF EXISTS iso") })
	a, b := p.connect(t), p.connect(t)
	for i := 0; i < 20; i++ {
		ta, err := a.Begin(ctx10(t))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ta.Exec(ctx10(t), "INSERT INTO iso VALUES ('a', $1)", i); err != nil {
			t.Fatal(err)
		}
		var seen int
		if err := b.QueryRow(ctx10(t), "SELECT count(*) FROM iso WHERE who = 'a' AND n = $1", i).Scan(&seen); err != nil {
			t.Fatal(err)
		}
		if seen != 0 {
			t.Fatalf("b sees a's uncommitted row %d", i)
		}
		if i%2 == 0 {
			err = ta.Commit(ctx10(t))
		} else {
			err = ta.Rollback(ctx10(t))
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := b.QueryRow(ctx10(t), "SELECT count(*) FROM iso WHERE who = 'a' AND n = $1", i).Scan(&seen); err != nil {
			t.Fatal(err)
		}
		if want := 1 - i%2; seen != want {
			t.Fatalf("after a's %s of row %d, b sees %d rows", map[int]string{0: "commit", 1: "rollback"}[i%2], i, seen)
		}
	}
}

// TestClientVanishesMidTransaction: a client that disconnects inside a
// transaction, with session state on its backend, leaves nothing behind
// for the next client on that backend.
func TestClientVanishesMidTransaction(t *testing.T) {
	for _, mode := range []string{"transaction", "session"} {
		t.Run(mode, func(t *testing.T) {
			p := startPgmts(t, setMode(mode, 1))
			pc, err := pgconn.Connect(ctx10(t), p.dsn(benchUser, benchPass, "bench"))
			if err != nil {
				t.Fatal(err)
			}
			for _, sql := range []string{"BEGIN", "CREATE TEMP TABLE leftover (x int)", "SET LOCAL work_mem = '9MB'", "SELECT pg_advisory_xact_lock(42)"} {
				if _, err := pc.Exec(ctx10(t), sql).ReadAll(); err != nil {
					t.Fatalf("%s: %v", sql, err)
				}
			}
			hj := hijack(t, pc)
			hj.Conn.Close() // no Terminate: the client just vanishes

			next := p.connect(t, "default_query_exec_mode=simple_protocol")
			if got := queryString(t, next, "SELECT coalesce(pg_current_xact_id_if_assigned()::text, 'none')"); got != "none" {
				t.Fatalf("next client inherits a transaction: %s", got)
			}
			if got := queryString(t, next, "SELECT count(*)::text FROM pg_class WHERE relname = 'leftover' AND relpersistence = 't' AND pg_table_is_visible(oid)"); got != "0" {
				t.Fatal("next client sees the vanished client's temp table")
			}
			if got := queryString(t, next, "SHOW work_mem"); got == "9MB" {
				t.Fatal("next client inherits work_mem")
			}
			if got := queryString(t, next, "SELECT pg_try_advisory_xact_lock(42)::text"); got != "true" {
				t.Fatal("the vanished client's advisory lock is still held")
			}
		})
	}
}

// TestSessionResetOnRelease: a session-mode backend handed to the next
// client has been reset with server_reset_query.
func TestSessionResetOnRelease(t *testing.T) {
	p := startPgmts(t, setMode("session", 1))
	a := p.connect(t, "default_query_exec_mode=simple_protocol")
	for _, sql := range []string{"SET work_mem = '5MB'", "CREATE TEMP TABLE t_reset (x int)", "PREPARE s AS SELECT 1"} {
		if _, err := a.Exec(ctx10(t), sql); err != nil {
			t.Fatal(err)
		}
	}
	pid := queryString(t, a, "SELECT pg_backend_pid()::text")
	a.Close(ctx10(t))
	b := p.connect(t, "default_query_exec_mode=simple_protocol")
	if got := queryString(t, b, "SELECT pg_backend_pid()::text"); got != pid {
		t.Fatalf("expected the same backend %s, got %s", pid, got)
	}
	if got := queryString(t, b, "SHOW work_mem"); got == "5MB" {
		t.Fatal("work_mem survived the reset")
	}
	if got := queryString(t, b, "SELECT count(*)::text FROM pg_prepared_statements"); got != "0" {
		t.Fatal("prepared statement survived the reset")
	}
}

// TestCancel: a query cancelled through pgmts stops with 57014 at once.
func TestCancel(t *testing.T) {
	p := startPgmts(t, setMode("transaction", 2))
	c := p.connect(t)
	done := make(chan error, 1)
	go func() {
		_, err := c.Exec(context.Background(), "SELECT pg_sleep(30)")
		done <- err
	}()
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	if err := c.PgConn().CancelRequest(ctx10(t)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if sqlState(err) != "57014" {
			t.Fatalf("cancelled query returned %v, want SQLSTATE 57014", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("cancel took %v", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("query not cancelled within 5s")
	}
	if got := queryString(t, c, "SELECT 'still usable'"); got != "still usable" {
		t.Fatal(got)
	}
}

// TestBackendTerminated: a backend killed under a session-mode client gives
// that client an error; other clients go on; the next request gets a fresh
// backend.
func TestBackendTerminated(t *testing.T) {
	p := startPgmts(t, setMode("session", 4))
	victim := p.connect(t, "default_query_exec_mode=simple_protocol")
	bystander := p.connect(t, "default_query_exec_mode=simple_protocol")
	pid := queryString(t, victim, "SELECT pg_backend_pid()::text")
	queryString(t, bystander, "SELECT 1::text")
	if err := cluster.Exec("SELECT pg_terminate_backend(" + pid + ")"); err != nil {
		t.Fatal(err)
	}
	var err error
	for i := 0; i < 50 && err == nil; i++ {
		_, err = victim.Exec(ctx10(t), "SELECT 1")
		time.Sleep(20 * time.Millisecond)
	}
	if err == nil {
		t.Fatal("the client of a terminated backend saw no error")
	}
	if got := queryString(t, bystander, "SELECT 'fine'"); got != "fine" {
		t.Fatal(got)
	}
	fresh := p.connect(t, "default_query_exec_mode=simple_protocol")
	if got := queryString(t, fresh, "SELECT pg_backend_pid()::text"); got == pid {
		t.Fatal("new client got the dead backend's pid")
	}
}

// TestBackendTerminatedWhileIdleInPool: in transaction mode a pooled
// backend killed between transactions is replaced unnoticed.
func TestBackendTerminatedWhileIdleInPool(t *testing.T) {
	p := startPgmts(t, setMode("transaction", 1))
	c := p.connect(t, "default_query_exec_mode=simple_protocol")
	pid := queryString(t, c, "SELECT pg_backend_pid()::text")
	if err := cluster.Exec("SELECT pg_terminate_backend(" + pid + ")"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for p.pools.BackendCount() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := queryString(t, c, "SELECT pg_backend_pid()::text"); got == pid {
		t.Fatal("still on the terminated backend")
	}
}

// TestStatementMode: single statements pass; a transaction block is
// refused with a clear error.
func TestStatementMode(t *testing.T) {
	p := startPgmts(t, setMode("statement", 2))
	c := p.connect(t, "default_query_exec_mode=simple_protocol")
	if got := queryString(t, c, "SELECT 'one statement'"); got != "one statement" {
		t.Fatal(got)
	}
	_, err := c.Exec(ctx10(t), "BEGIN")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || !strings.Contains(pe.Message, "statement pooling mode") {
		t.Fatalf("BEGIN in statement mode: %v", err)
	}
	other := p.connect(t, "default_query_exec_mode=simple_protocol")
	if got := queryString(t, other, "SELECT 'others unaffected'"); got != "others unaffected" {
		t.Fatal(got)
	}
}

// TestErrorsInsideTransaction: an error aborts the transaction, the client
// sees 25P02 until ROLLBACK, and the backend is fine afterwards.
func TestErrorsInsideTransaction(t *testing.T) {
	p := startPgmts(t, setMode("transaction", 1))
	c := p.connect(t, "default_query_exec_mode=simple_protocol")
	tx, err := c.Begin(ctx10(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx10(t), "SELECT 1/0"); sqlState(err) != "22012" {
		t.Fatalf("1/0: %v", err)
	}
	if _, err := tx.Exec(ctx10(t), "SELECT 1"); sqlState(err) != "25P02" {
		t.Fatalf("after error: %v", err)
	}
	if err := tx.Rollback(ctx10(t)); err != nil {
		t.Fatal(err)
	}
	other := p.connect(t, "default_query_exec_mode=simple_protocol")
	if got := queryString(t, other, "SELECT 'ok'"); got != "ok" {
		t.Fatal(got)
	}
}

// TestNotifyInSession: LISTEN in session mode; a NOTIFY from another
// client is delivered while the listener is idle.
func TestNotifyInSession(t *testing.T) {
	p := startPgmts(t, setMode("session", 4))
	l := p.connect(t)
	if _, err := l.Exec(ctx10(t), "LISTEN pgmts_test"); err != nil {
		t.Fatal(err)
	}
	n := p.connect(t)
	if _, err := n.Exec(ctx10(t), "NOTIFY pgmts_test, 'hello'"); err != nil {
		t.Fatal(err)
	}
	note, err := l.WaitForNotification(ctx10(t))
	if err != nil {
		t.Fatal(err)
	}
	if note.Channel != "pgmts_test" || note.Payload != "hello" {
		t.Fatalf("notification %+v", note)
	}
}

// TestExtendedProtocolFlushAndPipeline drives the extended protocol by
// hand: Parse/Bind/Describe/Execute with Flush and no Sync must be answered
// and keep the backend bound; a pipeline of several Syncs gets one
// ReadyForQuery each.
func TestExtendedProtocolFlushAndPipeline(t *testing.T) {
	p := startPgmts(t, setMode("transaction", 1))
	pc, err := pgconn.Connect(ctx10(t), p.dsn(benchUser, benchPass, "bench"))
	if err != nil {
		t.Fatal(err)
	}
	hj := hijack(t, pc)
	defer hj.Conn.Close()
	fe := pgproto3.NewFrontend(hj.Conn, hj.Conn)
	_ = hj.Conn.SetDeadline(time.Now().Add(10 * time.Second))
	send := func(msgs ...pgproto3.FrontendMessage) {
		for _, m := range msgs {
			fe.Send(m)
		}
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	expect := func(types ...string) {
		t.Helper()
		for _, want := range types {
			m, err := fe.Receive()
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprintf("%T", m); got != "*pgproto3."+want {
				t.Fatalf("got %s, want %s", got, want)
			}
		}
	}
	send(&pgproto3.Parse{Query: "SELECT $1::int + 1"}, &pgproto3.Bind{Parameters: [][]byte{[]byte("41")}},
		&pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Flush{})
	expect("ParseComplete", "BindComplete", "RowDescription", "DataRow", "CommandComplete")
	// The unnamed portal is still ours: another Bind/Execute on the same
	// backend, then Sync.
	send(&pgproto3.Bind{Parameters: [][]byte{[]byte("1")}}, &pgproto3.Execute{}, &pgproto3.Sync{})
	expect("BindComplete", "DataRow", "CommandComplete", "ReadyForQuery")
	// Pipeline: three statements, three Syncs, sent at once.
	var msgs []pgproto3.FrontendMessage
	for i := 0; i < 3; i++ {
		msgs = append(msgs, &pgproto3.Parse{Query: "SELECT 1"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
	}
	send(msgs...)
	for i := 0; i < 3; i++ {
		expect("ParseComplete", "BindComplete", "DataRow", "CommandComplete", "ReadyForQuery")
	}
	send(&pgproto3.Terminate{})
	_ = hj.Conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := hj.Conn.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		var ne net.Error
		if !errors.As(err, &ne) {
			t.Fatalf("after Terminate: %v", err)
		}
	}
}

// TestManyClientsFewServers: 200 pgx clients over 5 backends in
// transaction mode, all at once.
func TestManyClientsFewServers(t *testing.T) {
	p := startPgmts(t, setMode("transaction", 5))
	concurrentClients(t, p, 200, func(ctx context.Context, i int, c *pgx.Conn) error {
		for j := 0; j < 10; j++ {
			var n int
			if err := c.QueryRow(ctx, "SELECT $1::int * 2", i).Scan(&n); err != nil || n != 2*i {
				return fmt.Errorf("got %d, %v", n, err)
			}
		}
		return nil
	})
	if n := p.pools.BackendCount(); n > 5 {
		t.Fatalf("%d backends, cap 5", n)
	}
}
