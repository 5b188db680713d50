package sharedserver

import (
	"crypto/tls"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
)

// hostable returns a connection a loop can host: the login's own socket,
// or for a TLS session one end of a socket pair whose other end two
// goroutines relay through the session (gnet has no TLS).
func (s *Server) hostable(conn net.Conn) (net.Conn, error) {
	tc, ok := conn.(*tls.Conn)
	if !ok {
		return conn, nil
	}
	s.tlsVersion = tls.VersionName(tc.ConnectionState().Version)
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	loopSide, err := fileConn(fds[0])
	if err != nil {
		_ = syscall.Close(fds[1])
		return nil, err
	}
	relaySide, err := fileConn(fds[1])
	if err != nil {
		_ = loopSide.Close()
		return nil, err
	}
	var once sync.Once
	closeBoth := func() {
		once.Do(func() {
			_ = tc.Close()
			_ = relaySide.Close()
		})
	}
	s.bridge = closerFunc(closeBoth)
	wg := &s.pool.parent.wg
	wg.Go(func() {
		_, _ = io.Copy(tc, relaySide)
		closeBoth()
	})
	wg.Go(func() {
		_, _ = io.Copy(relaySide, tc)
		closeBoth()
	})
	return loopSide, nil
}

// fileConn makes a net.Conn of a socket descriptor, which it takes over.
func fileConn(fd int) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), "bridge")
	defer f.Close()
	return net.FileConn(f)
}

type closerFunc func()

func (f closerFunc) Close() error { f(); return nil }
