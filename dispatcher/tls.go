package dispatcher

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/pgmts/pgmts/auth"
	"github.com/pgmts/pgmts/config"
	"github.com/pgmts/pgmts/queue"
	"github.com/pgmts/pgmts/wire"
)

// Client TLS. gnet has no TLS, so a client that asks for it is handed from
// gnet to a tlsConn: its socket is read and written by two goroutines that
// decrypt and encrypt, while startup, authentication, framing and replies
// stay on the dispatcher's loop, through the same request and response
// queues as a plaintext client. The loop sees a tlsConn as a conn.

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

// tlsConn is a client's TLS session. Loop side: the conn methods. Socket
// side: serve (handshake, then reading) and flush, a goroutine that runs
// only while there is something to send, so an idle client has one
// goroutine (its reader), not two.
type tlsConn struct {
	cc   *clientConn
	raw  net.Conn
	tc   *tls.Conn
	addr net.Addr
	in   []byte // decrypted bytes not consumed yet (loop-owned)
	// client is the logged-in client, for Stop (which runs off the loop).
	client atomic.Pointer[queue.Client]

	mu        sync.Mutex
	out       []byte // bytes to encrypt and send
	spare     []byte
	writing   int  // bytes being sent now
	closing   bool // close after sending out
	handshook bool // the handshake is done: flush may run
	flushing  bool // flush runs (or ended the connection)
	// The reader waits before its next Read while readPaused
	// (PauseRead), or while the bytes it handed to the loop that the loop
	// has not taken in yet (queued) reach tlsReadAhead; resumed, made by
	// a waiting reader, is closed to let it look again.
	readPaused bool
	queued     int
	resumed    chan struct{}
}

func (t *tlsConn) InboundBuffered() int { return len(t.in) }

func (t *tlsConn) Peek(int) ([]byte, error) { return t.in, nil }

func (t *tlsConn) Discard(n int) (int, error) {
	t.in = t.in[n:]
	if len(t.in) == 0 {
		t.in = nil // let a large message's buffer go
	}
	return n, nil
}

func (t *tlsConn) Write(b []byte) (int, error) {
	t.mu.Lock()
	t.out = append(t.out, b...)
	t.startFlush()
	t.mu.Unlock()
	return len(b), nil
}

// startFlush starts flush if it has something to do and is not running
// (with t.mu held).
func (t *tlsConn) startFlush() {
	if !t.handshook || t.flushing || len(t.out) == 0 && !t.closing {
		return
	}
	t.flushing = true
	t.cc.d.g.wg.Go(t.flush)
}

func (t *tlsConn) OutboundBuffered() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.out) + t.writing
}

// Close sends what is buffered, then closes. Before the handshake is over
// there is nothing to send: the socket closes at once, which also ends a
// handshake that stalls.
func (t *tlsConn) Close() error {
	t.mu.Lock()
	t.closing = true
	handshook := t.handshook
	t.startFlush()
	t.wakeReader() // it must see the socket close, and tell the loop
	t.mu.Unlock()
	if !handshook {
		return t.raw.Close()
	}
	return nil
}

func (t *tlsConn) RemoteAddr() net.Addr { return t.addr }

// PauseRead implements conn: the reader stops before its next Read.
func (t *tlsConn) PauseRead() error {
	t.mu.Lock()
	t.readPaused = true
	t.mu.Unlock()
	return nil
}

// ResumeRead implements conn.
func (t *tlsConn) ResumeRead() error {
	t.mu.Lock()
	t.readPaused = false
	t.wakeReader()
	t.mu.Unlock()
	return nil
}

// tlsReadAhead is how far the reader may get ahead of the loop, so that a
// client sending faster than the loop takes its bytes in costs bounded
// memory: four TLS records.
const tlsReadAhead = 64 << 10

// wakeReader lets a reader waiting in waitToRead look again (t.mu held).
// Close and closeTLS call it too, so a waiting reader sees its socket
// closed and tells the loop.
func (t *tlsConn) wakeReader() {
	if t.resumed != nil {
		close(t.resumed)
		t.resumed = nil
	}
}

// waitToRead blocks the reader while reading is paused or the loop is
// tlsReadAhead behind, until the connection closes.
func (t *tlsConn) waitToRead() {
	t.mu.Lock()
	for !t.closing && (t.readPaused || t.queued >= tlsReadAhead) {
		if t.resumed == nil {
			t.resumed = make(chan struct{})
		}
		ch := t.resumed
		t.mu.Unlock()
		<-ch
		t.mu.Lock()
	}
	t.mu.Unlock()
}

// serve runs the handshake, then reads the client and hands what it sent
// to the loop, until the connection ends.
func (t *tlsConn) serve(cfg *tls.Config, pending []byte, direct bool) {
	d := t.cc.d
	defer d.g.removeTLS(t)
	err := t.handshake(cfg, pending, direct)
	if err == nil {
		t.mu.Lock()
		if t.closing {
			err = errors.New("closed during the handshake")
		} else {
			t.handshook = true
			t.startFlush()
		}
		t.mu.Unlock()
	}
	if err != nil {
		d.log.Info("client TLS handshake failed", "addr", t.addr, "err", err)
		_ = t.raw.Close()
		d.run(func() { d.closed(t.cc) })
		return
	}
	state := t.tc.ConnectionState()
	d.run(func() { t.cc.tlsState = &state })
	// An idle client's reader waits in Read with its buffer: a small one of
	// its own, and a TLS record's worth (16 KiB, pooled) only while reads
	// fill the small one.
	small := make([]byte, 512)
	buf := small
	var big *[]byte
	for {
		t.waitToRead()
		n, err := t.tc.Read(buf)
		if n > 0 {
			data := append([]byte(nil), buf[:n]...)
			t.mu.Lock()
			t.queued += n
			t.mu.Unlock()
			d.run(func() {
				t.mu.Lock()
				t.queued -= len(data)
				if t.queued < tlsReadAhead {
					t.wakeReader()
				}
				t.mu.Unlock()
				if !t.cc.closed {
					t.in = append(t.in, data...)
					t.cc.resume()
				}
			})
		}
		switch {
		case big == nil && n == len(small):
			big = tlsReadBuffers.Get().(*[]byte)
			buf = *big
		case big != nil && n < len(small):
			tlsReadBuffers.Put(big)
			big, buf = nil, small
		}
		if err != nil {
			if big != nil {
				tlsReadBuffers.Put(big)
			}
			t.mu.Lock()
			t.closing = true
			t.startFlush()
			t.mu.Unlock()
			d.run(func() { d.closed(t.cc) })
			return
		}
	}
}

// tlsReadBuffers are the TLS readers' record-sized buffers.
var tlsReadBuffers = sync.Pool{New: func() any {
	b := make([]byte, 16<<10) // one TLS record at most
	return &b
}}

func (t *tlsConn) handshake(cfg *tls.Config, pending []byte, direct bool) error {
	if !direct {
		if _, err := t.raw.Write([]byte{'S'}); err != nil {
			return err
		}
	}
	t.tc = tls.Server(&prefixConn{Conn: t.raw, prefix: pending}, cfg)
	if err := t.tc.Handshake(); err != nil {
		return err
	}
	if direct && t.tc.ConnectionState().NegotiatedProtocol != alpnPostgres {
		// As PostgreSQL: direct TLS without ALPN could be a non-PostgreSQL
		// client talking to the wrong port.
		return errors.New(`direct TLS connection without the ALPN protocol "postgresql"`)
	}
	return nil
}

// flush encrypts and sends what the loop wrote until nothing is left,
// then closes the connection if asked to. After closing, or an error,
// flushing stays set: nothing is sent any more.
func (t *tlsConn) flush() {
	for {
		t.mu.Lock()
		data, closing := t.out, t.closing
		if len(data) > 0 {
			t.out, t.writing = t.spare[:0], len(data)
		} else if !closing {
			t.flushing = false
			// An idle client keeps no big reply's buffers.
			if cap(t.out) > 4<<10 {
				t.out = nil
			}
			if cap(t.spare) > 4<<10 {
				t.spare = nil
			}
			t.mu.Unlock()
			return
		}
		t.mu.Unlock()
		if len(data) == 0 {
			_ = t.tc.SetWriteDeadline(time.Now().Add(time.Second)) // close_notify may not be read
			_ = t.tc.Close()
			return
		}
		_, err := t.tc.Write(data)
		t.mu.Lock()
		t.spare, t.writing = data[:0], 0
		t.mu.Unlock()
		if err != nil {
			_ = t.raw.Close() // serve sees it and tells the loop
			return
		}
	}
}

// prefixConn replays bytes already read from a socket before reading more.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (p *prefixConn) Read(b []byte) (int, error) {
	if len(p.prefix) > 0 {
		n := copy(b, p.prefix)
		p.prefix = p.prefix[n:]
		return n, nil
	}
	return p.Conn.Read(b)
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
		_ = t.raw.Close()
		t.mu.Lock()
		t.closing = true
		t.wakeReader()
		t.mu.Unlock()
		if c := t.client.Load(); c != nil {
			c.Close()
		}
	}
}
