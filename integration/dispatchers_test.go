package integration

import (
	"testing"
	"time"
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
