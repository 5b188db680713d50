//go:build linux

package uring

import (
	"bytes"
	"errors"
	"io"
	"net"
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
	_ = unix.Close(r.fd)
	r.Sendmsg(fd, [][]byte{[]byte("x")}, 1)
	called := false
	err = r.Submit(func(uint64, int32) { called = true })
	if !errors.Is(err, ErrNotRun) || called || r.Queued() != 0 {
		t.Fatalf("Submit on a closed ring: %v (called %v, %d queued); want ErrNotRun, no completion", err, called, r.Queued())
	}
	if head, tail := atomic.LoadUint32(r.sqHead), atomic.LoadUint32(r.sqTail); head != tail {
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
	if head, tail := atomic.LoadUint32(r.sqHead), atomic.LoadUint32(r.sqTail); head != tail || r.Queued() != 0 {
		t.Errorf("the check left operations in the ring: head %d, tail %d, %d queued", head, tail, r.Queued())
	}
	if head, tail := atomic.LoadUint32(r.cqHead), atomic.LoadUint32(r.cqTail); head != tail {
		t.Errorf("the check left %d completions unread", tail-head)
	}
}
