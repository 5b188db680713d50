package dispatcher

import "testing"

func TestRegistry(t *testing.T) {
	var r registry
	a, b, c := &clientConn{}, &clientConn{}, &clientConn{}
	r.add(a)
	r.add(b)
	if a.pid != 1 || b.pid != 2 || r.get(1) != a || r.get(2) != b {
		t.Fatalf("pids %d %d, want 1 and 2", a.pid, b.pid)
	}
	if a.key == b.key {
		t.Fatal("two clients got the same secret key")
	}
	for _, pid := range []uint32{0, 3, 1 << 31} {
		if r.get(pid) != nil {
			t.Fatalf("get(%d) found a client", pid)
		}
	}
	r.remove(a)
	r.remove(a) // a second remove must not free the slot twice
	if r.get(1) != nil || r.count() != 1 {
		t.Fatalf("after remove: get(1) = %p, count %d", r.get(1), r.count())
	}
	oldKey := a.key
	r.add(c) // reuses a's slot
	if c.pid != 1 || r.get(1) != c {
		t.Fatalf("c got pid %d, want the freed 1", c.pid)
	}
	if c.key == oldKey {
		t.Fatal("a reused slot kept the previous client's key")
	}
	r.remove(a) // a is gone: must not free c's slot
	if r.get(1) != c {
		t.Fatal("removing a departed client freed its successor's slot")
	}
	var seen []*clientConn
	r.each(func(cc *clientConn) { seen = append(seen, cc) })
	if len(seen) != 2 || seen[0] != c || seen[1] != b {
		t.Fatalf("each saw %v", seen)
	}
	r.remove(b)
	r.remove(c)
	if r.count() != 0 || r.slots != nil || r.free != nil {
		t.Fatalf("empty registry kept %d slots, %d free", len(r.slots), len(r.free))
	}
	r.remove(c) // after the reset
	r.add(a)
	if a.pid != 1 {
		t.Fatalf("after the reset, pid %d, want 1", a.pid)
	}
}
