//go:build linux

package socket

import (
	"net"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// pgmts: sysAccept reports the peer as x/sys/unix would: IPv4 and IPv6
// addresses with their ports, and "@" for an unnamed unix socket peer.
func TestSysAcceptPeer(t *testing.T) {
	t.Run("tcp4", func(t *testing.T) {
		fd, addr := listen(t, unix.AF_INET, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}})
		local := dialAndAccept(t, fd, "tcp", addr)
		sa := local.sa.(*unix.SockaddrInet4)
		want := local.conn.LocalAddr().(*net.TCPAddr)
		if !net.IP(sa.Addr[:]).Equal(want.IP) || sa.Port != want.Port {
			t.Fatalf("peer %v:%d, want %v", net.IP(sa.Addr[:]), sa.Port, want)
		}
	})
	t.Run("tcp6", func(t *testing.T) {
		fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Skip("no IPv6:", err)
		}
		_ = unix.Close(fd)
		fd, addr := listen(t, unix.AF_INET6, &unix.SockaddrInet6{Addr: [16]byte{15: 1}})
		local := dialAndAccept(t, fd, "tcp6", addr)
		sa := local.sa.(*unix.SockaddrInet6)
		want := local.conn.LocalAddr().(*net.TCPAddr)
		if !net.IP(sa.Addr[:]).Equal(want.IP) || sa.Port != want.Port {
			t.Fatalf("peer [%v]:%d, want %v", net.IP(sa.Addr[:]), sa.Port, want)
		}
	})
	t.Run("unix", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "s")
		fd, _ := listen(t, unix.AF_UNIX, &unix.SockaddrUnix{Name: path})
		local := dialAndAccept(t, fd, "unix", path)
		if name := local.sa.(*unix.SockaddrUnix).Name; name != "@" {
			t.Fatalf("unnamed peer's name %q, want %q as x/sys/unix gives", name, "@")
		}
	})
}

func listen(t *testing.T, family int, sa unix.Sockaddr) (int, string) {
	t.Helper()
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Close(fd) })
	if err := unix.Bind(fd, sa); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 8); err != nil {
		t.Fatal(err)
	}
	bound, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	switch a := bound.(type) {
	case *unix.SockaddrInet4:
		return fd, (&net.TCPAddr{IP: a.Addr[:], Port: a.Port}).String()
	case *unix.SockaddrInet6:
		return fd, (&net.TCPAddr{IP: a.Addr[:], Port: a.Port}).String()
	}
	return fd, ""
}

type accepted struct {
	conn net.Conn
	sa   unix.Sockaddr
}

func dialAndAccept(t *testing.T, fd int, network, addr string) accepted {
	t.Helper()
	conn, err := net.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	// The connection is in the accept queue once Dial returns.
	nfd, sa, err := sysAccept(fd)
	if err != nil {
		t.Fatal(err)
	}
	_ = unix.Close(nfd)
	return accepted{conn, sa}
}
