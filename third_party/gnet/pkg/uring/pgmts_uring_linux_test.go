//go:build linux

package uring

import (
	"bytes"
	"errors"
	"io"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// pair returns a loopback TCP connection's two ends: the sender as a raw
// non-blocking descriptor, the receiver as a net.Conn.
func pair(t *testing.T, ln net.Listener) (int, net.Conn) {
	t.Helper()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	f, err := c.(*net.TCPConn).File() // a duplicate, in blocking mode
	if err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	fd := int(f.Fd())
	if err := unix.SetNonblock(fd, true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close(); _ = peer.Close() })
	return fd, peer
}

func newRing(t *testing.T, entries uint32) *Ring {
	t.Helper()
	r, err := New(entries)
	if err != nil {
		t.Skipf("no io_uring here: %v", err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func TestSendmsgSends(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	r := newRing(t, 4)
	if r.Cap() != 4 {
		t.Fatalf("Cap = %d, want 4", r.Cap())
	}
	var fds []int
	var peers []net.Conn
	for i := 0; i < 3; i++ {
		fd, peer := pair(t, ln)
		fds, peers = append(fds, fd), append(peers, peer)
	}
	// Two rounds: the second reuses the ring's slots past its first tail.
	for round := 0; round < 2; round++ {
		want := map[uint64]int32{}
		for i, fd := range fds {
			msg := bytes.Repeat([]byte{byte('a' + i)}, 10*(i+1))
			// Split in pieces, with an empty one to skip.
			r.Sendmsg(fd, [][]byte{msg[:3], nil, msg[3:]}, uint64(100+i))
			want[uint64(100+i)] = int32(len(msg))
		}
		if r.Queued() != 3 {
			t.Fatalf("Queued = %d, want 3", r.Queued())
		}
		got := map[uint64]int32{}
		if err := r.Submit(func(tag uint64, res int32) { got[tag] = res }); err != nil {
			t.Fatal(err)
		}
		if r.Queued() != 0 || len(got) != 3 {
			t.Fatalf("round %d: %d queued after Submit, results %v", round, r.Queued(), got)
		}
		for tag, n := range want {
			if got[tag] != n {
				t.Errorf("round %d: send %d: result %d, want %d", round, tag, got[tag], n)
			}
		}
		for i, peer := range peers {
			buf := make([]byte, 10*(i+1))
			_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadFull(peer, buf); err != nil {
				t.Fatal(err)
			}
			if want := bytes.Repeat([]byte{byte('a' + i)}, len(buf)); !bytes.Equal(buf, want) {
				t.Errorf("peer %d got %q, want %q", i, buf, want)
			}
		}
	}
}

// TestSendmsgNeverWaits checks that a send to a socket with no room ends
// the call at once, with a short count or -EAGAIN, instead of waiting for
// the peer to read (Submit would then hang).
func TestSendmsgNeverWaits(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	r := newRing(t, 2)
	fd, peer := pair(t, ln)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4096)
	big := make([]byte, 1<<20)
	filled := 0
	for { // fill the socket and the peer's receive buffer
		n, err := unix.Write(fd, big)
		if err == unix.EAGAIN {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		filled += n
	}
	var res int32 = 1
	done := make(chan error, 1)
	go func() {
		r.Sendmsg(fd, [][]byte{big}, 7)
		done <- r.Submit(func(_ uint64, n int32) { res = n })
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		_ = peer.Close() // unblocks the send, so the goroutine ends
		t.Fatal("Submit waited for room on a full socket")
	}
	if res != -int32(unix.EAGAIN) && (res < 0 || res >= int32(len(big))) {
		t.Errorf("send to a full socket: result %d, want -EAGAIN or a short count", res)
	}
}

// TestRecv reads what waits on one socket and finds nothing on another:
// an empty socket ends the call at once, with -EAGAIN.
func TestRecv(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	r := newRing(t, 4)
	full, fullPeer := pair(t, ln)
	empty, _ := pair(t, ln)
	if _, err := fullPeer.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // loopback delivers at once; be sure
	a, b := make([]byte, 64), make([]byte, 64)
	res := map[uint64]int32{}
	done := make(chan error, 1)
	go func() {
		r.Recv(full, a, 1)
		r.Recv(empty, b, 2)
		done <- r.Submit(func(tag uint64, n int32) { res[tag] = n })
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Submit waited for data on an empty socket")
	}
	if res[1] != 5 || string(a[:5]) != "hello" {
		t.Errorf("receive: result %d, %q; want 5, \"hello\"", res[1], a[:5])
	}
	if res[2] != -int32(unix.EAGAIN) {
		t.Errorf("receive on an empty socket: result %d, want -EAGAIN", res[2])
	}
}

// TestSubmitNotRun: when the kernel takes none of a batch (here the
// ring's descriptor is gone), Submit says so and keeps none of it.
func TestSubmitNotRun(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	r := newRing(t, 2)
	fd, _ := pair(t, ln)
	_ = unix.Close(r.ring.fd)
	r.Sendmsg(fd, [][]byte{[]byte("x")}, 1)
	called := false
	err = r.Submit(func(uint64, int32) { called = true })
	if !errors.Is(err, ErrNotRun) || called || r.Queued() != 0 {
		t.Fatalf("Submit on a closed ring: %v (called %v, %d queued); want ErrNotRun, no completion", err, called, r.Queued())
	}
	if head, tail := atomic.LoadUint32(r.ring.sqHead), atomic.LoadUint32(r.ring.sqTail); head != tail {
		t.Errorf("the ring keeps %d operations the kernel never took", tail-head)
	}
}

// TestNeverWaits runs New's check of the kernel again on an open ring:
// it must pass wherever New did, and leave the ring empty.
func TestNeverWaits(t *testing.T) {
	r := newRing(t, 4)
	if err := r.neverWaits(); err != nil {
		t.Fatal(err)
	}
	if head, tail := atomic.LoadUint32(r.ring.sqHead), atomic.LoadUint32(r.ring.sqTail); head != tail || r.Queued() != 0 {
		t.Errorf("the check left operations in the ring: head %d, tail %d, %d queued", head, tail, r.Queued())
	}
	if head, tail := atomic.LoadUint32(r.ring.cqHead), atomic.LoadUint32(r.ring.cqTail); head != tail {
		t.Errorf("the check left %d completions unread", tail-head)
	}
}

// TestCoreWaits drives a Core the way gnet's wait through io_uring does
// (pgmts_ringwait_linux.go): a blocking receive and a poll wait in one
// Enter; a queued send grows before it is submitted; CancelFD ends a
// pending receive.
func TestCoreWaits(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// SINGLE_ISSUER: only the thread that made the ring may enter it.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	c, err := Open(8, SetupCoopTaskrun|SetupSingleIssuer|SetupDeferTaskrun)
	if err != nil {
		t.Skipf("no io_uring with DEFER_TASKRUN here: %v", err)
	}
	defer c.Close()
	fd, peer := pair(t, ln)
	buf := make([]byte, 64)
	c.Recv(fd, buf, 0, 1)
	pipe := make([]int, 2)
	if err := unix.Pipe2(pipe, unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pipe[0])
	defer unix.Close(pipe[1])
	c.PollAdd(pipe[0], unix.POLLIN, 2)
	msg := []byte("hello, world")
	slot := c.Send(fd, msg[:5], unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL, 3)
	c.SetSendLen(slot, len(msg))
	if c.Queued() != 3 {
		t.Fatalf("Queued = %d, want 3", c.Queued())
	}
	// The send completes during the call; the receive and the poll wait.
	if e := c.Enter(1); e != 0 {
		t.Fatal(e)
	}
	if tag, res, ok := c.Next(); !ok || tag != 3 || res != int32(len(msg)) {
		t.Fatalf("first completion: tag %d, res %d, ok %v; want the send of %d bytes", tag, res, ok, len(msg))
	}
	if _, _, ok := c.Next(); ok {
		t.Fatal("a completion with no data and no poll event")
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(peer, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("peer read %q, %v; want %q", got, err, msg)
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		_, _ = peer.Write([]byte("pong"))
		_, _ = unix.Write(pipe[1], []byte{1})
	}()
	seen := map[uint64]int32{}
	for len(seen) < 2 {
		if e := c.Enter(1); e != 0 && e != unix.EINTR {
			t.Fatal(e)
		}
		for tag, res, ok := c.Next(); ok; tag, res, ok = c.Next() {
			seen[tag] = res
		}
	}
	if seen[1] != 4 || string(buf[:4]) != "pong" || seen[2]&unix.POLLIN == 0 {
		t.Fatalf("completions %v, buffer %q; want a receive of \"pong\" and POLLIN", seen, buf[:4])
	}
	// A receive no data comes for ends when cancelled.
	c.Recv(fd, buf, 0, 4)
	if e := c.Enter(0); e != 0 {
		t.Fatal(e)
	}
	c.CancelFD(fd)
	if e := c.Enter(0); e != 0 { // with DEFER_TASKRUN, posts what is done
		t.Fatal(e)
	}
	if tag, res, ok := c.Next(); !ok || tag != 4 || res != -int32(unix.ECANCELED) {
		t.Fatalf("after CancelFD: tag %d, res %d, ok %v; want the receive, -ECANCELED", tag, res, ok)
	}
}
