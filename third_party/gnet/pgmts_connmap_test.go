//go:build linux && !gc_opt

package gnet

import "testing"

// TestConnTableByFD covers the fd-indexed connection table (conn_map.go,
// pgmts): lookups of present, removed and out-of-range descriptors, growth
// past the first allocation, and iteration over what is left.
func TestConnTableByFD(t *testing.T) {
	var cm connMatrix
	cm.init()
	fds := []int{3, 700, 5, 64, 1000}
	for _, fd := range fds {
		cm.addConn(&conn{fd: fd}, 0)
	}
	for _, fd := range fds {
		if c := cm.getConn(fd); c == nil || c.fd != fd {
			t.Fatalf("getConn(%d) = %v", fd, c)
		}
	}
	for _, fd := range []int{-1, 0, 4, 999, 1001, 1 << 20} {
		if c := cm.getConn(fd); c != nil {
			t.Fatalf("getConn(%d) = conn of fd %d, want nil", fd, c.fd)
		}
	}
	cm.delConn(cm.getConn(700))
	if cm.getConn(700) != nil || cm.loadCount() != 4 {
		t.Fatalf("after delConn(700): getConn %v, count %d", cm.getConn(700), cm.loadCount())
	}
	seen := map[int]bool{}
	cm.iterate(func(c *conn) bool { seen[c.fd] = true; return true })
	if len(seen) != 4 || seen[700] || !seen[1000] || !seen[3] {
		t.Fatalf("iterate saw %v", seen)
	}
	n := 0
	cm.iterate(func(*conn) bool { n++; return false })
	if n != 1 {
		t.Fatalf("iterate went on after false: %d calls", n)
	}
}
