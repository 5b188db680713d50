package integration

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// TestPreparedStatementsTransactionMode: pgx's default mode names its
// prepared statements after the SQL, so clients sharing backends use the
// same names; each client's statements must be there whenever it uses
// them, whichever backend serves it.
func TestPreparedStatementsTransactionMode(t *testing.T) {
	p := startPgmts(t, setMode("transaction", 2))
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := pgx.Connect(context.Background(), p.dsn(benchUser, benchPass, "bench"))
			if err != nil {
				errs <- err
				return
			}
			defer c.Close(context.Background())
			for j := 0; j < 50; j++ {
				var a, b int
				// The same SQL as every other client, and SQL of its own.
				if err := c.QueryRow(context.Background(), "SELECT $1::int + 1", j).Scan(&a); err != nil {
					errs <- fmt.Errorf("client %d: %w", i, err)
					return
				}
				if err := c.QueryRow(context.Background(), fmt.Sprintf("SELECT $1::int * %d", i+2), j).Scan(&b); err != nil {
					errs <- fmt.Errorf("client %d: %w", i, err)
					return
				}
				if a != j+1 || b != j*(i+2) {
					errs <- fmt.Errorf("client %d: got %d, %d", i, a, b)
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
}

// TestSameStatementNameDifferentText: two clients give the same statement
// name to different queries on one shared backend; each gets its own.
func TestSameStatementNameDifferentText(t *testing.T) {
	p := startPgmts(t, setMode("transaction", 1))
	a, err := pgconn.Connect(ctx10(t), p.dsn(benchUser, benchPass, "bench"))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(context.Background())
	b, err := pgconn.Connect(ctx10(t), p.dsn(benchUser, benchPass, "bench"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	if _, err := a.Prepare(ctx10(t), "s", "SELECT 'from a'", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Prepare(ctx10(t), "s", "SELECT 'from b'", nil); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		for _, c := range []struct {
			conn *pgconn.PgConn
			want string
		}{{a, "from a"}, {b, "from b"}} {
			res := c.conn.ExecPrepared(ctx10(t), "s", nil, nil, nil).Read()
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			if got := string(res.Rows[0][0]); got != c.want {
				t.Fatalf("got %q, want %q", got, c.want)
			}
		}
	}
	// A closed statement is gone for its client only.
	if err := a.Deallocate(ctx10(t), "s"); err != nil {
		t.Fatal(err)
	}
	if res := a.ExecPrepared(ctx10(t), "s", nil, nil, nil).Read(); sqlState(res.Err) != "26000" {
		t.Fatalf("after Close, a's statement: %v", res.Err)
	}
	if res := b.ExecPrepared(ctx10(t), "s", nil, nil, nil).Read(); res.Err != nil || string(res.Rows[0][0]) != "from b" {
		t.Fatalf("b's statement after a closed its own: %v", res.Err)
	}
}
