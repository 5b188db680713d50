package dispatcher

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"

	"github.com/panjf2000/gnet/v2"

	"github.com/pgmts/pgmts/auth"
	"github.com/pgmts/pgmts/config"
	"github.com/pgmts/pgmts/looptls"
	"github.com/pgmts/pgmts/queue"
	"github.com/pgmts/pgmts/wire"
)

// Client TLS. gnet has no TLS, so a client that asks for it is handed from
// gnet to a tlsConn: a goroutine runs the handshake on the socket (it
// blocks, and crypto/tls cannot resume a handshake that stopped for want
// of bytes), then hands the socket back to the dispatcher's loop, which
// from then on decrypts what it reads and encrypts what it writes itself,
// in the same wake-up as a plaintext client. Startup, authentication,
// framing and replies stay on the loop throughout, through the same
// request and response queues as a plaintext client. The loop sees a
// tlsConn as a conn.

// tlsOffer is the client-side TLS pgmts offers; replaced whole on reload.
type tlsOffer struct {
	config *tls.Config
	// binding is the tls-server-end-point data of the certificate, for
	// SCRAM-SHA-256-PLUS.
	binding []byte
}

// alpnPostgres is the ALPN protocol PostgreSQL 17 clients send; it is
// required for direct TLS (no SSLRequest first).
const alpnPostgres = "postgresql"

// loadTLS reads the client TLS certificate, key and CA files. It returns
// nil when client_tls_mode is "disable".
func loadTLS(g config.Global) (*tlsOffer, error) {
	if g.ClientTLSMode == "disable" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(g.ClientTLSCertFile, g.ClientTLSKeyFile)
	if err != nil {
		return nil, fmt.Errorf("client_tls_cert_file / client_tls_key_file: %w", err)
	}
	binding, err := auth.ServerEndPoint(cert.Leaf)
	if err != nil {
		return nil, fmt.Errorf("client_tls_cert_file: %w", err)
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{alpnPostgres},
	}
	if g.ClientTLSCAFile != "" {
		pool, err := config.LoadCAFile(g.ClientTLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("client_tls_ca_file: %w", err)
		}
		// As PostgreSQL with ssl_ca_file: a certificate a client shows is
		// checked; verify-ca and verify-full demand one.
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
		if g.ClientTLSMode == "verify-ca" || g.ClientTLSMode == "verify-full" {
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	return &tlsOffer{config: cfg, binding: binding}, nil
}

// startTLS hands the connection from gnet to a TLS session. pending is what
// the client sent that gnet already read: the start of the TLS handshake
// for direct TLS, nothing after an SSLRequest.
func (cc *clientConn) startTLS(offer *tlsOffer, pending []byte, direct bool) gnet.Action {
	gc := cc.c.(gnet.Conn)
	raw, err := detach(gc)
	if err != nil {
		cc.d.log.Error("cannot hand a client to TLS", "addr", gc.RemoteAddr(), "err", err)
		return cc.fatal(wire.Fatal("XX000", "pgmts cannot start TLS: %v", err))
	}
	t := &tlsConn{cc: cc, raw: raw, addr: gc.RemoteAddr()}
	cc.c = t
	cc.d.g.addTLS(t)
	cc.d.g.wg.Go(func() { t.serve(offer.config, append([]byte(nil), pending...), direct) })
	cc.login.tlsBinding = offer.binding
	return gnet.None
}

// detach duplicates a gnet connection's socket for a goroutine to serve;
// the caller then lets gnet close its own descriptor.
func detach(gc gnet.Conn) (net.Conn, error) {
	fd, err := gc.Dup()
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "client")
	defer f.Close()
	raw, err := net.FileConn(f)
	if err != nil {
		return nil, err
	}
	gc.SetContext(nil) // gnet's OnClose for it is not a client leaving
	return raw, nil
}

// tlsConn is a client's TLS session. The conn methods run on the loop;
// until the handshake is over (gc is set) what they do waits in the
// fields under mu, for HostedOpen.
type tlsConn struct {
	cc    *clientConn
	raw   net.Conn
	sess  *looptls.Session // made for the handshake, run by the loop after it
	addr  net.Addr
	state tls.ConnectionState // the handshake's, for the loop
	// gc is the socket back on the loop, set by HostedOpen: the session's
	// own connection of the loop from then on.
	gc gnet.Conn
	// client is the logged-in client, for Stop (which runs off the loop).
	client atomic.Pointer[queue.Client]

	// Before HostedOpen.
	mu         sync.Mutex
	out        []byte // written by the loop (at most an error before a close)
	closing    bool   // Close was called
	readPaused bool   // PauseRead was called last
}

// tlsState is a TLS client's handshake state once the handshake is done
// (the session is on the loop), nil for a plaintext client.
func (cc *clientConn) tlsState() *tls.ConnectionState {
	if t, ok := cc.c.(*tlsConn); ok && t.gc != nil {
		return &t.state
	}
	return nil
}

// tlsKeptPlain is the largest decrypted-bytes buffer a client's session
// keeps between messages: the first one made, which a small query fits.
const tlsKeptPlain = 1 << 10

func (t *tlsConn) InboundBuffered() int { return len(t.Plain()) }

func (t *tlsConn) Peek(int) ([]byte, error) { return t.Plain(), nil }

func (t *tlsConn) Discard(n int) (int, error) {
	t.sess.Used(n)
	return n, nil
}

// Plain is what the session decrypted that the loop has not used.
func (t *tlsConn) Plain() []byte {
	if t.gc == nil {
		return nil
	}
	return t.sess.Plain()
}

func (t *tlsConn) Write(b []byte) (int, error) {
	if t.gc != nil {
		if _, err := t.sess.Write(b); err != nil {
			_ = t.gc.Close() // the socket failed: OnClose ends the client
		}
		return len(b), nil
	}
	t.mu.Lock()
	t.out = append(t.out, b...)
	t.mu.Unlock()
	return len(b), nil
}

func (t *tlsConn) OutboundBuffered() int {
	if t.gc != nil {
		return t.gc.OutboundBuffered()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.out)
}

// Close sends close_notify after what is buffered, then closes. During
// the handshake the socket closes at once, which also ends a handshake
// that stalls.
func (t *tlsConn) Close() error {
	if t.gc != nil {
		_ = t.sess.Close() // close_notify, written to gc
		return t.gc.Close()
	}
	t.mu.Lock()
	t.closing = true
	t.mu.Unlock()
	return t.raw.Close()
}

func (t *tlsConn) RemoteAddr() net.Addr { return t.addr }

// PauseRead implements conn.
func (t *tlsConn) PauseRead() error {
	if t.gc != nil {
		return t.gc.PauseRead()
	}
	t.mu.Lock()
	t.readPaused = true
	t.mu.Unlock()
	return nil
}

// ResumeRead implements conn. The session may hold whole records read
// before the pause: they are decrypted now, for the client's next turn.
func (t *tlsConn) ResumeRead() error {
	if t.gc == nil {
		t.mu.Lock()
		t.readPaused = false
		t.mu.Unlock()
		return nil
	}
	if err := t.gc.ResumeRead(); err != nil {
		return err
	}
	if err := t.sess.Decrypt(t.gc); err != nil {
		t.ended(err)
	}
	return nil
}

// serve runs the handshake, then hands the socket to the loop.
func (t *tlsConn) serve(cfg *tls.Config, pending []byte, direct bool) {
	d := t.cc.d
	err := t.handshake(cfg, pending, direct)
	if err == nil {
		t.mu.Lock()
		if t.closing {
			err = errors.New("closed during the handshake")
		}
		t.mu.Unlock()
	}
	if err == nil {
		t.state = t.sess.ConnectionState()
		// The loop takes a duplicate of the socket and runs HostedOpen.
		if err = d.Host(t.raw, t); err != nil {
			err = fmt.Errorf("cannot hand the connection back to the dispatcher: %w", err)
		}
	}
	if err != nil {
		d.g.removeTLS(t)
		d.log.Info("client TLS handshake failed", "addr", t.addr, "err", err)
		_ = t.raw.Close()
		d.run(func() { d.closed(t.cc) })
	}
}

func (t *tlsConn) handshake(cfg *tls.Config, pending []byte, direct bool) error {
	if !direct {
		if _, err := t.raw.Write([]byte{'S'}); err != nil {
			return err
		}
	}
	tr := looptls.NewTransport(t.raw, pending)
	t.sess = looptls.NewSession(tls.Server(tr, cfg), tr, tlsKeptPlain)
	if err := t.sess.Handshake(); err != nil {
		return err
	}
	if direct && t.sess.ConnectionState().NegotiatedProtocol != alpnPostgres {
		// As PostgreSQL: direct TLS without ALPN could be a non-PostgreSQL
		// client talking to the wrong port.
		return errors.New(`direct TLS connection without the ALPN protocol "postgresql"`)
	}
	return nil
}

// HostedOpen implements queue.Hosted: the socket is on the loop, the
// handshake over. What the loop did meanwhile is carried out, and what the
// client sent along with its last handshake message is decrypted.
func (t *tlsConn) HostedOpen(gc gnet.Conn) {
	t.gc = gc
	t.sess.OnLoop(gc)
	t.mu.Lock()
	out, closing, paused := t.out, t.closing, t.readPaused
	t.out = nil
	t.mu.Unlock()
	if closing {
		_ = gc.Close()
		return
	}
	if paused {
		_ = gc.PauseRead()
	}
	if len(out) > 0 {
		_, _ = t.Write(out)
	}
	t.HostedTraffic(gc)
}

// HostedTraffic implements queue.Hosted: the client sent something.
func (t *tlsConn) HostedTraffic(gnet.Conn) gnet.Action {
	err := t.sess.Decrypt(t.gc)
	if len(t.sess.Plain()) > 0 && !t.cc.closed {
		t.cc.resume() // what came before an error or close_notify counts
	}
	if err != nil {
		t.ended(err)
	}
	return gnet.None
}

// HostedDrained implements queue.Hosted; a client's backlog is read when
// replies are delivered.
func (t *tlsConn) HostedDrained(gnet.Conn) {}

// HostedClose implements queue.Hosted: the client is gone.
func (t *tlsConn) HostedClose(gnet.Conn, error) {
	t.cc.d.g.removeTLS(t)
	t.cc.d.closed(t.cc)
}

// ended closes a session whose client closed it or sent what TLS refuses.
func (t *tlsConn) ended(err error) {
	if !errors.Is(err, io.EOF) {
		t.cc.d.log.Info("client TLS session failed", "addr", t.addr, "err", err)
	}
	_ = t.gc.Close()
}

// addTLS and removeTLS track the TLS sessions, which gnet does not know
// about, so that Stop can close them.
func (g *Group) addTLS(t *tlsConn) {
	g.mu.Lock()
	g.tlsConns[t] = struct{}{}
	g.mu.Unlock()
}

func (g *Group) removeTLS(t *tlsConn) {
	g.mu.Lock()
	delete(g.tlsConns, t)
	g.mu.Unlock()
}

// closeTLS closes every TLS session, once the loops have stopped.
func (g *Group) closeTLS() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for t := range g.tlsConns {
		_ = t.raw.Close() // a session still in its handshake
		t.mu.Lock()
		t.closing = true
		t.mu.Unlock()
		if c := t.client.Load(); c != nil {
			c.Close()
		}
	}
}
