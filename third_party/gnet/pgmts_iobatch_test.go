//go:build linux && !poll_opt

package gnet

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
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

// startEngine runs h on a free loopback port with opts and returns the
// address; the engine stops when the test ends.
func startEngine(t *testing.T, h EventHandler, eng <-chan Engine, opts ...Option) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	done := make(chan error, 1)
	go func() { done <- Run(h, "tcp://"+addr, opts...) }()
	e := <-eng
	t.Cleanup(func() {
		if err := e.Stop(context.Background()); err != nil {
			t.Error(err)
		}
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return addr
}

// expectExactly checks that each conns[i] receives want[i] and nothing
// more, reading them all at once (client i waits pause(i) first).
func expectExactly(t *testing.T, conns []net.Conn, want [][]byte, pause func(i int) time.Duration) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(conns))
	for i, c := range conns {
		wg.Add(1)
		go func(i int, c net.Conn) {
			defer wg.Done()
			time.Sleep(pause(i))
			got := make([]byte, len(want[i])+1)
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.ReadFull(c, got[:len(want[i])]); err != nil {
				errs <- fmt.Errorf("client %d: %v", i, err)
				return
			}
			if !bytes.Equal(got[:len(want[i])], want[i]) {
				errs <- fmt.Errorf("client %d got other bytes than it should, or out of order", i)
			}
			_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			if n, _ := c.Read(got[len(want[i]):]); n > 0 {
				errs <- fmt.Errorf("client %d got more than it should", i)
			}
		}(i, c)
	}
	read := make(chan struct{})
	go func() { wg.Wait(); close(read) }()
	select {
	case <-read:
	case <-time.After(20 * time.Second):
		t.Fatal("the clients did not get their bytes in 20 s")
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestBatchedWrites(t *testing.T) {
	h := &batcher{eng: make(chan Engine, 1)}
	// Small socket buffers: a batched send of 45 KB cannot go out at
	// once, and the rest goes out as the client reads.
	addr := startEngine(t, h, h.eng, WithIOBatching(true), WithSocketSendBuffer(8192))
	const clients = 12
	conns := make([]net.Conn, clients)
	want := make([][]byte, clients)
	dialer := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) {
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
	}}
	for i := range conns {
		c, err := dialer.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns[i], want[i] = c, bytes.Join(reply(byte(3*i)), nil)
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
	expectExactly(t, conns, want, func(i int) time.Duration {
		if i%4 == 2 {
			return 200 * time.Millisecond // the server's socket fills meanwhile
		}
		return 0
	})
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

// echoer sends back what each connection sends; the first message it
// gets holds the loop (and runs onHold, if set), so that the others are
// read in one batch.
type echoer struct {
	BuiltinEventEngine
	eng        chan Engine
	onHold     func()
	held       atomic.Bool
	batch      atomic.Int32 // most reads one wake-up made together
	heldBatch  atomic.Bool  // the loop batched when the first message came
	batchingOn atomic.Bool  // the loop batched at the last message
}

func (h *echoer) OnBoot(eng Engine) Action {
	h.eng <- eng
	return None
}

func (h *echoer) OnTraffic(c Conn) Action {
	b := c.(*conn).loop.batch
	if h.held.CompareAndSwap(false, true) {
		h.heldBatch.Store(b != nil)
		if h.onHold != nil {
			h.onHold()
		}
		time.Sleep(300 * time.Millisecond)
	}
	h.batchingOn.Store(c.(*conn).loop.batch != nil)
	if b != nil && int32(cap(b.read)) > h.batch.Load() {
		h.batch.Store(int32(cap(b.read)))
	}
	data, _ := c.Next(-1)
	if _, err := c.Write(data); err != nil {
		panic(err)
	}
	return None
}

// TestBatchedReads has twelve clients' messages read in one wake-up: some
// larger than a read's slot (the rest is read after), one client that
// hangs up after its message (it still gets its echo), one that hangs up
// without a message. Each must get back exactly what it sent.
func TestBatchedReads(t *testing.T) {
	h := &echoer{eng: make(chan Engine, 1)}
	addr := startEngine(t, h, h.eng, WithIOBatching(true))
	const clients = 12
	conns := make([]net.Conn, clients)
	msgs := make([][]byte, clients)
	for i := range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		size := 100 + i
		if i%4 == 3 {
			size = 20000 + i // more than a slot of 64 KiB / 12
		}
		conns[i], msgs[i] = c, bytes.Repeat([]byte{byte(i + 1)}, size)
	}
	time.Sleep(50 * time.Millisecond) // every connection open on the loop
	for i, c := range conns {
		switch {
		case i == clients-1:
			_ = c.Close() // hangs up without a message
		default:
			if _, err := c.Write(msgs[i]); err != nil {
				t.Fatal(err)
			}
			if i == 5 {
				_ = c.(*net.TCPConn).CloseWrite() // hangs up after its message
			}
		}
		if i == 0 {
			time.Sleep(50 * time.Millisecond) // the loop is held by now
		}
	}
	expectExactly(t, conns[:clients-1], msgs, func(int) time.Duration { return 0 })
	if n := h.batch.Load(); n < 2 {
		t.Skipf("at most %d reads were made together: io_uring is not usable here, or the messages came one per wake-up", n)
	}
}

// TestRingFailure: a ring that stops working (its descriptor closed
// while the loop is held) turns batching off for the loop; the batch it
// refused is read and answered with plain system calls, and no client
// notices.
func TestRingFailure(t *testing.T) {
	h := &echoer{eng: make(chan Engine, 1)}
	h.onHold = func() {
		fds, _ := os.ReadDir("/proc/self/fd")
		for _, e := range fds {
			if link, _ := os.Readlink("/proc/self/fd/" + e.Name()); link == "anon_inode:[io_uring]" {
				fd, _ := strconv.Atoi(e.Name())
				_ = syscall.Close(fd)
			}
		}
	}
	addr := startEngine(t, h, h.eng, WithIOBatching(true))
	const clients = 8
	conns := make([]net.Conn, clients)
	msgs := make([][]byte, clients)
	for i := range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns[i], msgs[i] = c, bytes.Repeat([]byte{byte(i + 1)}, 100+i)
	}
	time.Sleep(50 * time.Millisecond)
	for i, c := range conns {
		if _, err := c.Write(msgs[i]); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			time.Sleep(50 * time.Millisecond) // the loop is held by now
		}
	}
	expectExactly(t, conns, msgs, func(int) time.Duration { return 0 })
	if !h.heldBatch.Load() {
		t.Skip("the loop did not batch to begin with: io_uring is not usable here")
	}
	if h.batchingOn.Load() {
		t.Error("the loop still batches with a broken ring")
	}
}
