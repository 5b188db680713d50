package integration

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgmts/pgmts/config"
)

// TestPostgresOutageUnderLoad: PostgreSQL stops (fast mode) for a second
// and starts again while clients run queries, with no PAUSE first. Each client's error carries a
// SQLSTATE (nothing hangs); once PostgreSQL is back every client,
// reconnecting if pgmts closed it, runs queries again within
// server_login_retry and a margin; the pool tried to log in about once
// per server_login_retry meanwhile, not once per request; and no backend
// is left over.
func TestPostgresOutageUnderLoad(t *testing.T) {
	const clients, servers, retry = 8, 4, 500 * time.Millisecond
	p := startPgmts(t, func(c *config.Config) {
		setMode("transaction", servers)(c)
		c.Pool.ServerLoginRetry = retry
	})
	var stop atomic.Bool
	var ok [clients]atomic.Int64
	var mu sync.Mutex
	errs := map[string]int{} // SQLSTATE ("" for none) → count
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c *pgx.Conn
			for !stop.Load() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				var err error
				if c == nil {
					c, err = pgx.Connect(ctx, p.dsn(benchUser, benchPass, "bench", "default_query_exec_mode=simple_protocol"))
				}
				if err == nil {
					_, err = c.Exec(ctx, "SELECT pg_sleep(0.001)")
				}
				cancel()
				if err == nil {
					ok[i].Add(1)
					continue
				}
				mu.Lock()
				if errs[sqlState(err)]++; sqlState(err) == "" {
					t.Errorf("client %d: an error with no SQLSTATE: %v", i, err)
				}
				mu.Unlock()
				if c != nil && c.IsClosed() {
					c = nil
				}
				time.Sleep(5 * time.Millisecond)
			}
			if c != nil {
				_ = c.Close(context.Background())
			}
		}()
	}
	time.Sleep(time.Second)
	start := time.Now()
	if err := cluster.Outage(time.Second); err != nil {
		t.Fatal(err)
	}
	down := time.Since(start)
	back := time.Now()
	var before [clients]int64
	for i := range clients {
		before[i] = ok[i].Load()
	}
	for running := 0; running < clients; {
		if time.Since(back) > retry+5*time.Second {
			stop.Store(true)
			wg.Wait()
			t.Fatalf("%d of %d clients run queries again %v after PostgreSQL came back", running, clients, time.Since(back))
		}
		time.Sleep(10 * time.Millisecond)
		running = 0
		for i := range clients {
			if ok[i].Load() > before[i]+5 {
				running++
			}
		}
	}
	recovered := time.Since(back)
	stop.Store(true)
	wg.Wait()
	failures := p.poolSum(loginFailures)
	t.Logf("PostgreSQL was down (stopping, stopped, starting) for %v; all clients ran again %v later; errors by SQLSTATE %v; %d failed backend logins",
		down, recovered, errs, failures)
	// One round of attempts (at most one per server) per server_login_retry.
	if limit := int64(servers) * int64(down/retry+2); failures > limit {
		t.Fatalf("%d backend logins failed while PostgreSQL was down for %v; server_login_retry %v allows %d", failures, down, retry, limit)
	}
	if n, err := cluster.BackendCount(benchUser); err != nil || n > servers {
		t.Fatalf("%d backends of %s after the restart (max %d): %v", n, benchUser, servers, err)
	}
}
