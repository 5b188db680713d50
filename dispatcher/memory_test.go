package dispatcher

import (
	"testing"
	"unsafe"
)

// Every idle client holds a clientConn: what only logins or requests in
// flight need lives in login or on the Dispatcher, not here.
func TestClientConnFootprint(t *testing.T) {
	var cc clientConn
	if size := unsafe.Sizeof(cc); size > 64 {
		t.Fatalf("clientConn is %d bytes, want at most 64", size)
	}
}

func TestLoginBursts(t *testing.T) {
	var b loginBursts
	steps := []struct {
		logins, want uint64
	}{
		{0, 0},
		{500, 0},                           // logging in
		{500, 0},                           // quiet, but too few for a collection
		{loginBurst + 10, 0},               // logging in
		{loginBurst + 10, loginBurst + 10}, // quiet after a burst
		{loginBurst + 10, 0},               // still quiet: released already
		{loginBurst + 20, 0},
		{loginBurst + 20, 0}, // a trickle is not a burst
		{3 * loginBurst, 0},
		{3 * loginBurst, 2*loginBurst - 10},
	}
	for i, s := range steps {
		if got := b.settled(s.logins); got != s.want {
			t.Fatalf("step %d: settled(%d) = %d, want %d", i, s.logins, got, s.want)
		}
	}
}
