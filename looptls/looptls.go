// Package looptls carries a TLS session on over an event loop once its
// handshake is done. gnet has no TLS; crypto/tls reads and writes a
// net.Conn. A Transport is that net.Conn: during the handshake, which
// blocks and so runs on a goroutine, the socket itself; then, once the
// socket is one of the loop's connections, the bytes the loop read
// (offered to Decrypt) and the loop's connection for what the session
// writes. The loop then decrypts and encrypts in the wake-up that reads or
// writes, with no goroutine and no hand-off.
//
// crypto/tls cannot resume a handshake that stopped for want of bytes,
// but after it, a read that fails with a temporary error leaves no trace:
// the bytes of a partial record stay in the session and the next read
// goes on from there. A Transport with nothing left to offer fails reads
// that way (ErrNoMoreBytes); TestTransportOnTheLoop holds crypto/tls to it.
package looptls

import (
	"crypto/tls"
	"io"
	"net"
	"time"
)

// Transport is a TLS session's connection (see the package comment). Its
// loop side is used on the loop only.
type Transport struct {
	net.Conn           // the socket, during the handshake
	prefix   []byte    // read from the socket before the handshake began
	out      io.Writer // the loop's connection; nil during the handshake
	in       []byte    // the bytes Decrypt offers
}

// NewTransport returns the transport of a session on conn, where prefix
// holds what was read from conn before the handshake began.
func NewTransport(conn net.Conn, prefix []byte) *Transport {
	return &Transport{Conn: conn, prefix: prefix}
}

// OnLoop moves the session onto the loop: from now on it writes to out,
// the loop's connection for the same socket, and reads what Decrypt
// offers. The socket (Conn) is the loop's: its addresses stay readable.
func (t *Transport) OnLoop(out io.Writer) { t.out = out }

// ErrNoMoreBytes ends a read on the loop once the bytes offered are used
// up; it is temporary, so crypto/tls keeps no record of it.
var ErrNoMoreBytes net.Error = noMoreBytes{}

type noMoreBytes struct{}

func (noMoreBytes) Error() string   { return "tls: waiting for the rest of a record" }
func (noMoreBytes) Timeout() bool   { return true }
func (noMoreBytes) Temporary() bool { return true }

func (t *Transport) Read(b []byte) (int, error) {
	if t.out != nil {
		if len(t.in) == 0 {
			return 0, ErrNoMoreBytes
		}
		n := copy(b, t.in)
		t.in = t.in[n:]
		return n, nil
	}
	if len(t.prefix) > 0 {
		n := copy(b, t.prefix)
		t.prefix = t.prefix[n:]
		return n, nil
	}
	return t.Conn.Read(b)
}

func (t *Transport) Write(b []byte) (int, error) {
	if t.out != nil {
		return t.out.Write(b)
	}
	return t.Conn.Write(b)
}

// Close closes the socket during the handshake; on the loop, the loop's
// connection is closed by its owner.
func (t *Transport) Close() error {
	if t.out != nil {
		return nil
	}
	return t.Conn.Close()
}

// SetDeadline and the two below apply during the handshake; on the loop
// nothing blocks (crypto/tls sets one around close_notify).
func (t *Transport) SetDeadline(d time.Time) error {
	if t.out != nil {
		return nil
	}
	return t.Conn.SetDeadline(d)
}

func (t *Transport) SetReadDeadline(d time.Time) error {
	if t.out != nil {
		return nil
	}
	return t.Conn.SetReadDeadline(d)
}

func (t *Transport) SetWriteDeadline(d time.Time) error {
	if t.out != nil {
		return nil
	}
	return t.Conn.SetWriteDeadline(d)
}

// Session is a TLS session that a loop runs once its handshake is done:
// the bytes the loop reads from the socket go in through Decrypt, and the
// plaintext waits in the session until its owner has used it.
type Session struct {
	*tls.Conn            // Write encrypts to the loop's connection
	tr        *Transport // Conn's transport
	keep      int        // the largest plaintext buffer kept between messages
	plain     []byte     // decrypted, not used yet
	buf       []byte     // plain's buffer, from its start
}

// NewSession returns the session of conn, whose transport is tr, keeping a
// plaintext buffer of up to keep bytes between messages.
func NewSession(conn *tls.Conn, tr *Transport, keep int) *Session {
	return &Session{Conn: conn, tr: tr, keep: keep}
}

// OnLoop moves the session onto the loop (Transport.OnLoop), or onto a new
// connection of it for the same socket.
func (s *Session) OnLoop(out io.Writer) { s.tr.OnLoop(out) }

// Inbound is the loop's connection as Decrypt reads it (a gnet.Conn).
type Inbound interface {
	Peek(n int) ([]byte, error)
	Discard(n int) (int, error)
}

// Decrypt takes the bytes the loop read from the socket (all of them,
// unless the session fails) and adds what they decrypt to Plain: every
// whole record; a partial one waits in the session. It returns the first
// error other than running out of bytes (io.EOF after close_notify).
func (s *Session) Decrypt(from Inbound) error {
	raw, _ := from.Peek(-1)
	s.tr.in = raw
	var err error
	for {
		if cap(s.plain)-len(s.plain) < 512 {
			grown := make([]byte, len(s.plain), 2*len(s.plain)+1024)
			copy(grown, s.plain)
			s.plain, s.buf = grown, grown
		}
		n, rerr := s.Read(s.plain[len(s.plain):cap(s.plain)])
		s.plain = s.plain[:len(s.plain)+n]
		if rerr != nil {
			if rerr != ErrNoMoreBytes {
				err = rerr
			}
			break
		}
	}
	if used := len(raw) - len(s.tr.in); used > 0 {
		_, _ = from.Discard(used)
	}
	s.tr.in = nil
	return err
}

// Plain is what the session decrypted that its owner has not used.
func (s *Session) Plain() []byte { return s.plain }

// Used drops the first n bytes of Plain.
func (s *Session) Used(n int) {
	s.plain = s.plain[n:]
	if len(s.plain) == 0 {
		if cap(s.buf) > s.keep {
			s.buf = nil // let a large message's buffer go
		}
		s.plain = s.buf[:0]
	}
}
