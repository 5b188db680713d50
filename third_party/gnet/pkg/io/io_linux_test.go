//go:build linux

package io

import (
	"bytes"
	"testing"

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
