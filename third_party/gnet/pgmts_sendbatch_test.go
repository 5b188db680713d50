//go:build linux && !poll_opt

package gnet

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// batcher answers each client's message with reply(id), in three writes.
// The first message it gets holds the loop for a while, so the other
// clients' messages come in one wake-up and their writes are batched;
// queued counts writes that were left in the outbound buffer for the
// batch. A client whose id is odd gets a short reply, after which its
// reads are paused and resumed: that polls the connection for writes
// while its batched bytes wait, and the batch then sends them all.
type batcher struct {
	BuiltinEventEngine
	eng    chan Engine
	held   atomic.Bool
	queued atomic.Int32
}

func reply(id byte) [][]byte {
	size := 15000
	if id%2 == 1 {
		size = 150
	}
	return [][]byte{bytes.Repeat([]byte{id}, 100), bytes.Repeat([]byte{id + 1}, size), bytes.Repeat([]byte{id + 2}, 2*size)}
}

func (h *batcher) OnBoot(eng Engine) Action {
	h.eng <- eng
	return None
}

func (h *batcher) OnTraffic(c Conn) Action {
	msg, _ := c.Next(-1)
	if h.held.CompareAndSwap(false, true) {
		time.Sleep(300 * time.Millisecond)
	}
	parts := reply(msg[0])
	if _, err := c.Write(parts[0]); err != nil {
		panic(err)
	}
	if c.OutboundBuffered() == len(parts[0]) {
		h.queued.Add(1)
	}
	if _, err := c.Writev(parts[1:]); err != nil {
		panic(err)
	}
	if msg[0]%2 == 1 {
		if err := c.PauseRead(); err != nil {
			panic(err)
		}
		if err := c.ResumeRead(); err != nil {
			panic(err)
		}
	}
	return None
}

func cpuTime(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func TestSendBatching(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	h := &batcher{eng: make(chan Engine, 1)}
	done := make(chan error, 1)
	// Small socket buffers: a batched send of 45 KB cannot go out at
	// once, and the rest goes out as the client reads.
	go func() {
		done <- Run(h, "tcp://"+addr, WithSendBatching(true), WithSocketSendBuffer(8192))
	}()
	eng := <-h.eng
	defer func() {
		if err := eng.Stop(context.Background()); err != nil {
			t.Error(err)
		}
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	const clients = 12
	conns := make([]net.Conn, clients)
	dialer := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) {
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
	}}
	for i := range conns {
		if conns[i], err = dialer.Dial("tcp", addr); err != nil {
			t.Fatal(err)
		}
		defer conns[i].Close()
	}
	// The first message holds the loop; the rest arrive meanwhile.
	for i, c := range conns {
		if _, err := c.Write([]byte{byte(3 * i)}); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			time.Sleep(50 * time.Millisecond)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i, c := range conns {
		wg.Add(1)
		go func(i int, c net.Conn) {
			defer wg.Done()
			if i%4 == 2 {
				time.Sleep(200 * time.Millisecond) // the server's socket fills meanwhile
			}
			want := bytes.Join(reply(byte(3*i)), nil)
			got := make([]byte, len(want)+1)
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.ReadFull(c, got[:len(want)]); err != nil {
				errs <- fmt.Errorf("client %d: %v", i, err)
				return
			}
			if !bytes.Equal(got[:len(want)], want) {
				errs <- fmt.Errorf("client %d got its reply out of order or mangled", i)
			}
			_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			if n, _ := c.Read(got[len(want):]); n > 0 {
				errs <- fmt.Errorf("client %d got more than its reply", i)
			}
		}(i, c)
	}
	read := make(chan struct{})
	go func() { wg.Wait(); close(read) }()
	select {
	case <-read:
	case <-time.After(20 * time.Second):
		t.Fatal("the clients did not get their replies in 20 s")
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := h.queued.Load(); n < 2 {
		t.Skipf("%d writes waited for a batch: io_uring is not usable here, or the messages came one per wake-up", n)
	}
	// A connection polled for writes with nothing left to write must not
	// keep waking the loop.
	before := cpuTime(t)
	time.Sleep(300 * time.Millisecond)
	if used := cpuTime(t) - before; used > 100*time.Millisecond {
		t.Errorf("the idle engine used %v of CPU in 300 ms: a loop is spinning", used)
	}
}
