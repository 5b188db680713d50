package sharedserver

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/pgmts/pgmts/config"
	"github.com/pgmts/pgmts/queue"
)

func mustParse(t *testing.T, toml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(toml))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestDetachedPoolForgotten: a pool a reload detached stays (swept,
// counted by WAIT_CLOSE) while a connection routed to it is open or it has
// a server, and is dropped once it has neither.
func TestDetachedPoolForgotten(t *testing.T) {
	var logs bytes.Buffer
	p := NewPools(mustParse(t, "[databases.a]\nhost = \"127.0.0.1\"\nport = 1\n[databases.b]\nhost = \"127.0.0.1\"\nport = 1\n"),
		slog.New(slog.NewTextHandler(&logs, nil)))
	defer p.Close()
	q, err := p.Route("b", "u")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Route("b", "u"); err != nil {
		t.Fatal(err)
	}
	if n := q.Connections(); n != 2 {
		t.Fatalf("after two routes the pool counts %d connections, want 2", n)
	}
	if names := p.Reload(mustParse(t, "[databases.a]\nhost = \"127.0.0.1\"\nport = 1\n")); len(names) != 1 || names[0] != "b/u" {
		t.Fatalf("reload detached %v, want [b/u]", names)
	}
	draining := func() int {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.draining)
	}

	q.Leave()
	p.forgetDrained()
	if draining() != 1 {
		t.Fatal("a detached pool with a connection left was forgotten")
	}
	q.Leave()
	pool := p.all()[0]
	pool.mu.Lock()
	pool.starting = []*queue.ResponseQueue{nil} // a server still opening
	pool.mu.Unlock()
	p.forgetDrained()
	if draining() != 1 {
		t.Fatal("a detached pool with a server opening was forgotten")
	}
	pool.mu.Lock()
	pool.starting = nil
	pool.mu.Unlock()

	p.forgetDrained()
	if draining() != 0 {
		t.Fatal("a detached pool with no connection and no server is still kept")
	}
	if !strings.Contains(logs.String(), "pool detached by a reload has no clients or servers left") {
		t.Errorf("no log line for the forgotten pool:\n%s", logs.String())
	}
	pool.mu.Lock()
	closed := pool.closed
	pool.mu.Unlock()
	if !closed {
		t.Error("the forgotten pool can still open servers")
	}
}
