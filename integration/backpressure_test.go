package integration

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// countingReader counts what a reader gave, for another goroutine to see.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// TestCopyInBlockedBackend: a client streams COPY data into a table
// another session has locked, so PostgreSQL reads none of it. pgmts stops
// reading the client instead of buffering what it sends (its memory stays
// bounded and TCP holds the client back), serves other clients meanwhile,
// and the COPY completes once the lock goes. The same over client TLS,
// where a reader goroutine, not gnet, reads the socket.
func TestCopyInBlockedBackend(t *testing.T) {
	if binDir == "" {
		needCluster(t)
		t.Fatal("no pgmts binary")
	}
	t.Run("plain", func(t *testing.T) { copyInBlocked(t, startDaemon(t)) })
	t.Run("tls", func(t *testing.T) {
		pki := clientPKI(t)
		copyInBlocked(t, startDaemonWith(t, clientTLSLines(pki, "require", false, "")), "sslmode=require")
	})
}

func copyInBlocked(t *testing.T, d *daemon, dsnExtra ...string) {
	pid := d.cmd.Process.Pid
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	direct, err := pgx.Connect(ctx, cluster.DSN(benchUser, benchPass, "bench"))
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close(context.Background())
	table := fmt.Sprintf("copy_blocked_%d_%d", os.Getpid(), time.Now().UnixNano()%1e9)
	if _, err := direct.Exec(ctx, "CREATE TABLE "+table+" (id int, payload text)"); err != nil {
		t.Fatal(err)
	}
	defer func() { _, _ = direct.Exec(context.Background(), "DROP TABLE IF EXISTS "+table) }()
	locker, err := direct.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := locker.Exec(ctx, "LOCK TABLE "+table+" IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}

	c, err := pgx.Connect(ctx, d.dsn(dsnExtra...))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(ctx, "SELECT 1"); err != nil { // its backend is open
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	base, err := vmRSS(pid)
	if err != nil {
		t.Fatal(err)
	}

	const rows = 150_000 // about 150 MB of COPY text
	src := &countingReader{r: newCopyRows(rows)}
	copied := make(chan error, 1)
	go func() {
		tag, err := c.PgConn().CopyFrom(ctx, src, "COPY "+table+" (id, payload) FROM STDIN")
		if err == nil && tag.RowsAffected() != rows {
			err = fmt.Errorf("COPY FROM: %q, want %d rows", tag, rows)
		}
		copied <- err
	}()

	// PostgreSQL waits for the lock and reads nothing; the client sends as
	// fast as pgmts takes.
	time.Sleep(3 * time.Second)
	rss, err := vmRSS(pid)
	if err != nil {
		t.Fatal(err)
	}
	sent := src.n.Load()
	t.Logf("while blocked: the client handed %.1f MB to its socket, pgmts RSS grew %.1f MiB", float64(sent)/1e6, float64(rss-base)/(1<<20))
	if grown := rss - base; grown > 32<<20 {
		t.Errorf("pgmts RSS grew %.1f MiB while the backend read nothing (the client sent %d bytes)", float64(grown)/(1<<20), sent)
	}
	if sent > 64<<20 {
		t.Errorf("the client could send %d bytes to a backend that reads nothing: pgmts kept reading it", sent)
	}

	other, err := pgx.Connect(ctx, d.dsn(dsnExtra...))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(context.Background())
	if got := queryString(t, other, "SELECT 'served meanwhile'"); got != "served meanwhile" {
		t.Fatal(got)
	}

	if err := locker.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-copied; err != nil {
		t.Fatalf("COPY after the lock went: %v", err)
	}
	var n int64
	if err := direct.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != rows {
		t.Errorf("table holds %d rows, want %d", n, rows)
	}
}
