package sharedserver

import (
	"context"
	"crypto/tls"
	"errors"
	"net"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgmts/pgmts/looptls"
)

// Backend TLS. gnet has no TLS: the login (pgconn, or passthrough.go)
// runs the handshake on a socket that pgmts dials through a
// looptls.Transport; once the server is on its loop, the loop runs the
// session itself, decrypting in HostedTraffic and encrypting in send.

// keptPlain is the largest decrypted-bytes buffer a server keeps between
// replies: a server is one of few, and a large result's wake-ups each
// decrypt up to gnet's 64 KiB read.
const keptPlain = 128 << 10

// dialTransports has cfg's logins dial through a looptls.Transport, so
// that a TLS session's connection can be moved onto a loop.
func dialTransports(cfg *pgconn.Config) {
	dial := cfg.DialFunc
	cfg.DialFunc = func(ctx context.Context, network, address string) (net.Conn, error) {
		conn, err := dial(ctx, network, address)
		if err != nil {
			return nil, err
		}
		return looptls.NewTransport(conn, nil), nil
	}
}

// hostable returns the socket a loop hosts for the login's connection,
// and keeps a TLS session for the loop to run.
func (s *Server) hostable(conn net.Conn) (net.Conn, error) {
	if tc, ok := conn.(*tls.Conn); ok {
		tr, ok := tc.NetConn().(*looptls.Transport)
		if !ok {
			return nil, errors.New("internal error: a backend TLS session on a connection pgmts did not dial")
		}
		s.tlsVersion = tls.VersionName(tc.ConnectionState().Version)
		s.sess = looptls.NewSession(tc, tr, keptPlain)
		return tr.Conn, nil
	}
	if tr, ok := conn.(*looptls.Transport); ok {
		return tr.Conn, nil
	}
	return conn, nil
}

// send writes b to the backend, through its TLS session if it has one.
func (s *Server) send(b []byte) (err error) {
	if s.sess != nil {
		_, err = s.sess.Write(b)
	} else {
		_, err = s.gc.Write(b)
	}
	return err
}
