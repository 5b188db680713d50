//go:build linux && !gc_opt && !poll_opt

package gnet

import (
	"testing"
	"unsafe"
)

// TestConnFootprint guards the per-connection size pgmts trimmed (see
// PGMTS.md): 128 bytes, a size class.
func TestConnFootprint(t *testing.T) {
	if size := unsafe.Sizeof(conn{}); size > 128 {
		t.Fatalf("conn is %d bytes, want at most 128", size)
	}
}
