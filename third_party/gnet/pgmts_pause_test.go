//go:build linux

package gnet

import (
	"context"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// pauser stops reading each connection as it opens and sends it more than
// the socket takes at once; when that has drained it notes how much it had
// read meanwhile and reads again.
type pauser struct {
	BuiltinEventEngine
	eng        chan Engine
	out        []byte
	read       atomic.Int64
	readBefore atomic.Int64 // read when OnDrained came; -1 before
	drained    atomic.Int32
}

func (h *pauser) OnBoot(eng Engine) Action {
	h.eng <- eng
	return None
}

func (h *pauser) OnOpen(c Conn) ([]byte, Action) {
	if err := c.PauseRead(); err != nil {
		panic(err)
	}
	if _, err := c.Write(h.out); err != nil {
		panic(err)
	}
	return nil, None
}

func (h *pauser) OnTraffic(c Conn) Action {
	n, _ := c.Discard(-1)
	h.read.Add(int64(n))
	return None
}

func (h *pauser) OnDrained(c Conn) {
	h.drained.Add(1)
	h.readBefore.Store(h.read.Load())
	if err := c.ResumeRead(); err != nil {
		panic(err)
	}
}

func TestPauseRead(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	h := &pauser{eng: make(chan Engine, 1), out: make([]byte, 16<<20)}
	h.readBefore.Store(-1)
	done := make(chan error, 1)
	go func() { done <- Run(h, "tcp://"+addr) }()
	eng := <-h.eng
	defer func() {
		if err := eng.Stop(context.Background()); err != nil {
			t.Error(err)
		}
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const sent = 4 << 20
	wrote := make(chan error, 1)
	go func() {
		_, err := c.Write(make([]byte, sent)) // blocks while nobody reads
		wrote <- err
	}()
	time.Sleep(300 * time.Millisecond)
	if n := h.read.Load(); n != 0 {
		t.Fatalf("a paused connection was read: %d bytes", n)
	}
	if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, len(h.out))); err != nil {
		t.Fatalf("reading what the server sent while paused: %v", err)
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); h.read.Load() < sent; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after ResumeRead the server read %d of %d bytes", h.read.Load(), sent)
		}
	}
	if n := h.drained.Load(); n != 1 {
		t.Errorf("OnDrained ran %d times, want once", n)
	}
	if n := h.readBefore.Load(); n != 0 {
		t.Errorf("the connection was read (%d bytes) while its outbound buffer drained", n)
	}
}
