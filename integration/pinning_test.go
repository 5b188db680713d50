package integration

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgmts/pgmts/config"
)

// In transaction and statement modes a client whose session gains state
// that lives in its backend only (LISTEN, SQL PREPARE) keeps that server
// until it leaves; then the server is cleared with DISCARD ALL.

// afterOtherTakesServer runs sql on a new client, then has another
// client open a transaction, which holds a server until the test ends:
// the most recently parked one, the first client's, were it released.
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
	p := startPgmts(t, setMode("transaction", 3))
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
	p := startPgmts(t, setMode("transaction", 3))
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
