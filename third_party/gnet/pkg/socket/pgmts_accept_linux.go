//go:build linux

package socket

import (
	"unsafe"

	"golang.org/x/sys/unix"

	gio "github.com/panjf2000/gnet/v2/pkg/io"
)

// sysAccept is accept4 through RawSyscall (pgmts): gnet's listeners are
// non-blocking, so it never blocks, and entering a system call the
// scheduler's way would wake a deeply sleeping sysmon (see
// pkg/netpoll/pgmts_wait_linux.go). It converts the peer's address itself,
// as x/sys/unix does, except that x/sys/unix also asks the kernel for the
// listener's protocol (getsockopt SO_PROTOCOL, for L2TP) on every IPv4 and
// IPv6 connection it accepts.
func sysAccept(fd int) (int, unix.Sockaddr, error) {
	var rsa unix.RawSockaddrAny
	size := uint32(unix.SizeofSockaddrAny)
	nfd, _, e := unix.RawSyscall6(unix.SYS_ACCEPT4, uintptr(fd), uintptr(unsafe.Pointer(&rsa)),
		uintptr(unsafe.Pointer(&size)), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
	if e != 0 {
		return -1, nil, e
	}
	sa := peerSockaddr(&rsa)
	if sa == nil {
		_ = gio.Close(int(nfd))
		return -1, nil, unix.EAFNOSUPPORT
	}
	return int(nfd), sa, nil
}

// peerSockaddr is x/sys/unix's conversion for the families gnet listens on,
// nil for any other.
func peerSockaddr(rsa *unix.RawSockaddrAny) unix.Sockaddr {
	switch rsa.Addr.Family {
	case unix.AF_INET:
		pp := (*unix.RawSockaddrInet4)(unsafe.Pointer(rsa))
		port := (*[2]byte)(unsafe.Pointer(&pp.Port))
		return &unix.SockaddrInet4{Port: int(port[0])<<8 | int(port[1]), Addr: pp.Addr}
	case unix.AF_INET6:
		pp := (*unix.RawSockaddrInet6)(unsafe.Pointer(rsa))
		port := (*[2]byte)(unsafe.Pointer(&pp.Port))
		return &unix.SockaddrInet6{Port: int(port[0])<<8 | int(port[1]), ZoneId: pp.Scope_id, Addr: pp.Addr}
	case unix.AF_UNIX:
		pp := (*unix.RawSockaddrUnix)(unsafe.Pointer(rsa))
		if pp.Path[0] == 0 {
			// An abstract or unnamed peer: x/sys/unix writes '@' for
			// the leading NUL.
			pp.Path[0] = '@'
		}
		n := 0
		for n < len(pp.Path) && pp.Path[n] != 0 {
			n++
		}
		return &unix.SockaddrUnix{Name: string(unsafe.Slice((*byte)(unsafe.Pointer(&pp.Path[0])), n))}
	}
	return nil
}
