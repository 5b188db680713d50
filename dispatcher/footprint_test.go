package dispatcher

import (
	"testing"
	"unsafe"
)

// Every idle client holds a clientConn: what only logins or requests in
// flight need lives in login or on the Dispatcher, not here.
func TestClientConnFootprint(t *testing.T) {
	var cc clientConn
	if size := unsafe.Sizeof(cc); size > 96 {
		t.Fatalf("clientConn is %d bytes, want at most 96", size)
	}
}
