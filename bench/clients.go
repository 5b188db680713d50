package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// idleResult is what opening many idle clients at once did to a pooler.
type idleResult struct {
	Connected       int
	FirstErr        error
	RSSPerClientKiB float64
}

// openIdle logs n clients in (SCRAM) with at most parallel logins at a
// time, measures the pooler's RSS growth once they are all idle, then
// closes them.
func openIdle(ctx context.Context, dsn string, n, parallel, pid int) (idleResult, error) {
	var r idleResult
	before, err := statusKiB(pid, "VmRSS")
	if err != nil {
		return r, err
	}
	conns := make([]*pgconn.PgConn, n)
	var (
		next     atomic.Int64
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	for range parallel {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				c, err := pgconn.Connect(cctx, dsn)
				cancel()
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					continue
				}
				conns[i] = c
			}
		})
	}
	wg.Wait()
	defer closeAll(conns, parallel)
	for _, c := range conns {
		if c != nil {
			r.Connected++
		}
	}
	r.FirstErr = firstErr
	// Let the pooler finish what each login set in motion.
	time.Sleep(time.Second)
	after, err := statusKiB(pid, "VmRSS")
	if err != nil {
		return r, err
	}
	if r.Connected > 0 {
		r.RSSPerClientKiB = float64(after-before) / float64(r.Connected)
	}
	return r, nil
}

func closeAll(conns []*pgconn.PgConn, parallel int) {
	var wg sync.WaitGroup
	work := make(chan *pgconn.PgConn)
	for range parallel {
		wg.Go(func() {
			for c := range work {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_ = c.Close(ctx)
				cancel()
			}
		})
	}
	for _, c := range conns {
		if c != nil {
			work <- c
		}
	}
	close(work)
	wg.Wait()
}

// readBig runs query, reads every row and keeps none; it returns the
// column bytes received per second, in MB.
func readBig(ctx context.Context, dsn, query string) (float64, error) {
	c, err := pgconn.Connect(ctx, dsn)
	if err != nil {
		return 0, err
	}
	defer c.Close(context.Background())
	start := time.Now()
	var n int64
	rr := c.ExecParams(ctx, query, nil, nil, nil, nil)
	for rr.NextRow() {
		for _, v := range rr.Values() {
			n += int64(len(v))
		}
	}
	if _, err := rr.Close(); err != nil {
		return 0, fmt.Errorf("%s: %v", query, err)
	}
	return float64(n) / 1e6 / time.Since(start).Seconds(), nil
}
