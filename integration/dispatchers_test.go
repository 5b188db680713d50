package integration

import (
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestSetDispatchersUnderLoad: dispatchers come and go while pgbench opens
// a new connection for every transaction; no transaction fails, and
// retired dispatchers end up with no client of their own.
func TestSetDispatchersUnderLoad(t *testing.T) {
	p := startPgmts(t, setMode("transaction", 5))
	done := pgbenchAsync(t, p.port, "-S", "-C", "-c", "8", "-j", "2", "-T", "6")
	for _, n := range []int{4, 1, 3} {
		time.Sleep(1500 * time.Millisecond)
		if err := p.group.SetDispatchers(n); err != nil {
			t.Fatal(err)
		}
		if active, _ := p.group.Dispatchers(); active != n {
			t.Fatalf("SetDispatchers(%d): %d active", n, active)
		}
	}
	pgbenchOK(t, <-done)
	deadline := time.Now().Add(10 * time.Second)
	for {
		active, draining := p.group.Dispatchers()
		if active == 3 && draining == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d active dispatchers and %d retired ones with clients, want 3 and 0", active, draining)
		}
		time.Sleep(50 * time.Millisecond)
	}
	checkAlive(t, p)
	if err := p.group.SetDispatchers(0); err == nil {
		t.Fatal("SetDispatchers(0) accepted")
	}
}

// TestServerOnEachDispatcher: two clients on two dispatchers take turns
// with one query at a time. No request ever waits, so the pool would
// never grow past one server; but a request that goes to a server on
// another dispatcher's loop makes the pool open one on the client's own,
// so that from then on each client is served where it is.
func TestServerOnEachDispatcher(t *testing.T) {
	p := startPgmts(t, setMode("transaction", 10))
	clients := map[int]*pgx.Conn{} // by dispatcher
	for i := 0; i < 40 && len(clients) < 2; i++ {
		c := p.connect(t)
		if d := dispatcherOf(t, p, c); clients[d] == nil {
			clients[d] = c
		} else {
			c.Close(ctx10(t))
		}
	}
	if len(clients) < 2 {
		t.Fatalf("40 clients all landed on one dispatcher")
	}
	servers := func() map[uint32]int { // pid: dispatcher
		out := map[uint32]int{}
		for _, pool := range p.pools.Snapshot().Pools {
			for _, s := range pool.Servers {
				out[s.PID] = s.Dispatcher
			}
		}
		return out
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, c := range clients {
			queryString(t, c, "SELECT 1::text")
		}
		seen := map[int]bool{}
		for _, d := range servers() {
			seen[d] = true
		}
		if len(seen) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("servers after 10 s of queries: %v (pid: dispatcher), want one on each dispatcher", servers())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for i := 0; i < 5; i++ {
		all := servers()
		if len(all) != 2 {
			t.Fatalf("%d servers (%v), want 2: one per dispatcher", len(all), all)
		}
		for d, c := range clients {
			pid, err := strconv.ParseUint(queryString(t, c, "SELECT pg_backend_pid()::text"), 10, 32)
			if err != nil {
				t.Fatal(err)
			}
			if got, ok := all[uint32(pid)]; !ok || got != d {
				t.Fatalf("client on dispatcher %d served by backend %d, on dispatcher %d (found %v)", d, pid, got, ok)
			}
		}
	}
}

// dispatcherOf is the dispatcher that owns the client c.
func dispatcherOf(t *testing.T, p *pgmts, c *pgx.Conn) int {
	t.Helper()
	local := c.PgConn().Conn().LocalAddr().String()
	for _, ci := range p.group.Snapshot().Clients {
		if ci.Addr.String() == local {
			return ci.Dispatcher
		}
	}
	t.Fatalf("no client at %s in the dispatchers' snapshot", local)
	return -1
}
