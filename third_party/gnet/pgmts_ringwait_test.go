//go:build linux && !poll_opt

package gnet

import (
	"bytes"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// ringEcho answers every message with the same bytes, in two writes, and
// counts the reads the loop's ring delivered. With pause set it pauses
// and resumes reading after each message.
type ringEcho struct {
	BuiltinEventEngine
	eng    chan Engine
	ring   atomic.Int64
	closed chan struct{}
	pause  bool
	// stopOn, when not zero, is a message's first byte that has the
	// engine shut down.
	stopOn byte
}

func (h *ringEcho) OnBoot(eng Engine) Action {
	h.eng <- eng
	return None
}

func (h *ringEcho) OnTraffic(c Conn) Action {
	cc := c.(*conn)
	if cc.loop.rw.holds(cc.fd) {
		h.ring.Add(1)
	}
	msg, _ := c.Next(-1)
	if h.stopOn != 0 && msg[0] == h.stopOn {
		return Shutdown
	}
	half := len(msg) / 2
	if _, err := c.Write(msg[:half]); err != nil {
		panic(err)
	}
	if _, err := c.Writev([][]byte{msg[half:]}); err != nil {
		panic(err)
	}
	if h.pause {
		if err := c.PauseRead(); err != nil {
			panic(err)
		}
		if err := c.ResumeRead(); err != nil {
			panic(err)
		}
	}
	return None
}

func (h *ringEcho) OnClose(Conn, error) Action {
	select {
	case h.closed <- struct{}{}:
	default:
	}
	return None
}

// TestRingWait: one client's messages, some larger than a ring region,
// come back whole and in order once its connection is read through the
// ring; a client that leaves is seen closing.
func TestRingWait(t *testing.T) {
	for _, pause := range []bool{false, true} {
		h := &ringEcho{eng: make(chan Engine, 1), closed: make(chan struct{}, 1), pause: pause}
		addr := startEngine(t, h, h.eng, WithIOBatching(true))
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		for i := 0; i < 3000; i++ {
			size := 1 + i%200
			if i%500 == 499 {
				size = 3*rwRegion + 7 // spans regions and receives
			}
			msg := bytes.Repeat([]byte{byte(i)}, size)
			if _, err := c.Write(msg); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, size)
			if _, err := io.ReadFull(c, got); err != nil {
				t.Fatalf("message %d: %v", i, err)
			}
			if !bytes.Equal(got, msg) {
				t.Fatalf("message %d came back other than sent", i)
			}
		}
		if pause {
			// Paused reads leave the ring: at most the first message after
			// each entry is read there.
			t.Logf("pausing: %d reads through the ring", h.ring.Load())
		} else if n := h.ring.Load(); n < 2000 {
			t.Fatalf("only %d of 3000 reads came through the ring", n)
		}
		c.Close()
		select {
		case <-h.closed:
		case <-time.After(5 * time.Second):
			t.Fatal("the server did not see the client close")
		}
	}
}

// TestRingWaitShutdown: a Shutdown from OnTraffic, for bytes read
// through the ring, ends the engine as it does for bytes read on epoll.
func TestRingWaitShutdown(t *testing.T) {
	h := &ringEcho{eng: make(chan Engine, 1), closed: make(chan struct{}, 1), stopOn: 0xff}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	done := make(chan error, 1)
	go func() { done <- Run(h, "tcp://"+addr, WithIOBatching(true)) }()
	<-h.eng
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	got := make([]byte, 1)
	for i := 0; i < 3000 && h.ring.Load() < 10; i++ {
		if _, err := c.Write([]byte{1}); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatal(err)
		}
	}
	if h.ring.Load() < 10 {
		t.Fatal("the connection was never read through the ring")
	}
	if _, err := c.Write([]byte{0xff}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the engine did not shut down")
	}
}
