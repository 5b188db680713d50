package dispatcher

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
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

// TestReleaseAfterLogins: releaseAfterLogins, asleep while no login comes,
// wakes for a burst and returns memory once the burst is over.
func TestReleaseAfterLogins(t *testing.T) {
	var logs syncBuffer
	g := &Group{log: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})), loginSeen: make(chan struct{}, 1)}
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		g.releaseAfterLogins(quit)
	}()
	defer func() {
		close(quit)
		<-done
	}()
	time.Sleep(2 * loginQuiet) // asleep by now
	for range loginBurst + 1 {
		g.newClientID()
	}
	want := fmt.Sprintf("logins=%d", loginBurst+1)
	for deadline := time.Now().Add(10 * loginQuiet); !strings.Contains(logs.String(), want); {
		if time.Now().After(deadline) {
			t.Fatalf("no memory release logged %v after a burst of %d logins; log: %q", 10*loginQuiet, loginBurst+1, logs.String())
		}
		time.Sleep(loginQuiet / 10)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
