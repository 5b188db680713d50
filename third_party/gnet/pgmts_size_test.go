//go:build linux && !gc_opt

package gnet

import (
	"testing"
	"unsafe"
)

// TestConnFootprint guards the per-connection size pgmts trimmed (see
// PGMTS.md): 216 bytes lands in the 224-byte size class.
func TestConnFootprint(t *testing.T) {
	if size := unsafe.Sizeof(conn{}); size > 216 {
		t.Fatalf("conn is %d bytes, want at most 216", size)
	}
}
