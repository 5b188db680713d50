//go:build linux

package io

import (
	"bytes"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// pgmts: Read, Write and Writev go through RawSyscall; they must keep
// unix.Read/Write/Writev's results and errors.
func TestRawReadWrite(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	buf := make([]byte, 64)
	if n, err := Read(fds[1], buf); n != -1 || err != unix.EAGAIN {
		t.Fatalf("read of an empty socket: %d, %v", n, err)
	}
	if n, err := Write(fds[0], []byte("hello")); n != 5 || err != nil {
		t.Fatalf("write: %d, %v", n, err)
	}
	if n, err := Write(fds[0], nil); n != 0 || err != nil {
		t.Fatalf("empty write: %d, %v", n, err)
	}
	var iov [][]byte
	for i := 0; i < 10; i++ { // more than Writev's stack array
		iov = append(iov, []byte{byte('0' + i)}, nil)
	}
	if n, err := Writev(fds[0], iov); n != 10 || err != nil {
		t.Fatalf("writev: %d, %v", n, err)
	}
	if n, err := Read(fds[1], buf); n != 15 || err != nil || !bytes.Equal(buf[:n], []byte("hello0123456789")) {
		t.Fatalf("read: %d, %v", n, err)
	}
	if n, err := Write(-1, buf); n != -1 || err != unix.EBADF {
		t.Fatalf("write to a bad fd: %d, %v", n, err)
	}
}

// rawSyscall6 passes all six arguments: sendto with an address uses them
// all.
func TestRawSyscallSixArguments(t *testing.T) {
	rfd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(rfd)
	if err := unix.Bind(rfd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(rfd)
	if err != nil {
		t.Fatal(err)
	}
	to := unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: [4]byte{127, 0, 0, 1}}
	port := sa.(*unix.SockaddrInet4).Port
	to.Port = uint16(port>>8) | uint16(port&0xff)<<8 // network byte order
	sfd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(sfd)
	msg := []byte("six")
	n, e := rawSyscall6(unix.SYS_SENDTO, uintptr(sfd), uintptr(unsafe.Pointer(&msg[0])), uintptr(len(msg)), 0,
		uintptr(unsafe.Pointer(&to)), unix.SizeofSockaddrInet4)
	if n != 3 || e != 0 {
		t.Fatalf("sendto: %d, %v", n, e)
	}
	buf := make([]byte, 8)
	var got int
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if got, err = Read(rfd, buf); err != unix.EAGAIN {
			break
		}
	}
	if got != 3 || err != nil || string(buf[:3]) != "six" {
		t.Fatalf("the datagram sent to the address: %d bytes, %v, %q", got, err, buf)
	}
}

// A descriptor that is not a socket (a pipe) falls back to read, write and
// writev.
func TestReadWriteNotSocket(t *testing.T) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_NONBLOCK); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	if n, err := Write(p[1], []byte("ab")); n != 2 || err != nil {
		t.Fatalf("write to a pipe: %d, %v", n, err)
	}
	if n, err := Writev(p[1], [][]byte{[]byte("c"), []byte("de")}); n != 3 || err != nil {
		t.Fatalf("writev to a pipe: %d, %v", n, err)
	}
	buf := make([]byte, 8)
	if n, err := Read(p[0], buf); n != 5 || err != nil || string(buf[:n]) != "abcde" {
		t.Fatalf("read from a pipe: %d, %v, %q", n, err, buf[:n])
	}
}

// A write to a socket whose peer is gone fails with EPIPE and raises no
// SIGPIPE (MSG_NOSIGNAL).
func TestWriteClosedPeer(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGPIPE)
	defer signal.Stop(sigs)
	_ = unix.Close(fds[1])
	if n, err := Write(fds[0], []byte("x")); n != -1 || err != unix.EPIPE {
		t.Fatalf("write to a closed peer: %d, %v", n, err)
	}
	if n, err := Writev(fds[0], [][]byte{[]byte("x"), []byte("y")}); n != -1 || err != unix.EPIPE {
		t.Fatalf("writev to a closed peer: %d, %v", n, err)
	}
	select {
	case s := <-sigs:
		t.Fatalf("got %v", s)
	case <-time.After(50 * time.Millisecond):
	}
}
