//go:build linux && !gc_opt && !poll_opt

package gnet

import (
	"testing"
	"unsafe"
)

// TestConnFootprint guards the per-connection size pgmts trimmed (see
// PGMTS.md): 208 bytes, a size class.
func TestConnFootprint(t *testing.T) {
	if size := unsafe.Sizeof(conn{}); size > 208 {
		t.Fatalf("conn is %d bytes, want at most 208", size)
	}
}
