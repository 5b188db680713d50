package dispatcher

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgmts/pgmts/auth"
	"github.com/pgmts/pgmts/circuits"
	"github.com/pgmts/pgmts/config"
	"github.com/pgmts/pgmts/queue"
	"github.com/pgmts/pgmts/wire"
)

// fakeConn is a client connection as the loop sees it, without a socket:
// what the client sent waits in in, and every Write is kept apart.
type fakeConn struct {
	in     []byte
	writes [][]byte
	closed bool
}

func (f *fakeConn) InboundBuffered() int { return len(f.in) }
func (f *fakeConn) Peek(int) ([]byte, error) {
	return f.in, nil
}
func (f *fakeConn) Discard(n int) (int, error) { f.in = f.in[n:]; return n, nil }
func (f *fakeConn) Write(b []byte) (int, error) {
	f.writes = append(f.writes, append([]byte(nil), b...))
	return len(b), nil
}
func (f *fakeConn) OutboundBuffered() int { return 0 }
func (f *fakeConn) PauseRead() error      { return nil }
func (f *fakeConn) ResumeRead() error     { return nil }
func (f *fakeConn) Close() error          { f.closed = true; return nil }
func (f *fakeConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 50000}
}

// fakeBackend knows its server's parameters at once, as a warm pool does.
type fakeBackend struct{ params map[string]string }

func (b fakeBackend) Prepare(done func(map[string]string, error)) { done(b.params, nil) }
func (fakeBackend) Cancel(*queue.Client)                          {}
func (fakeBackend) Passthrough(auth.Passthrough)                  {}

type fakeRouter struct {
	pool *queue.Pool
	err  error
}

func (r fakeRouter) Route(string, string) (*queue.Pool, error) { return r.pool, r.err }
func (fakeRouter) LookupUser(_, _ string, done func(auth.Secret, error)) {
	done(auth.Secret{}, nil)
}

// loginRig is a dispatcher (never started) whose only user, bench, has
// the SCRAM verifier of password "bench", and a client that knows its keys.
type loginRig struct {
	d    *Dispatcher
	keys auth.SCRAMKeys
}

func newLoginRig(tb testing.TB, routeErr error) *loginRig {
	tb.Helper()
	salt := []byte("0123456789abcdef")
	cfg := config.Default()
	cfg.Users = map[string]config.User{"bench": {Password: auth.SCRAMVerifier("bench", salt, 4096)}}
	params := map[string]string{
		"application_name": "", "client_encoding": "UTF8", "DateStyle": "ISO, MDY",
		"integer_datetimes": "on", "IntervalStyle": "postgres", "is_superuser": "off",
		"server_encoding": "UTF8", "server_version": "15.18", "session_authorization": "bench",
		"standard_conforming_strings": "on", "TimeZone": "UTC",
	}
	pool := &queue.Pool{Name: "bench/bench", Database: "bench", User: "bench", Mode: circuits.Transaction,
		Requests: &queue.RequestQueue{}, Backend: fakeBackend{params}}
	g, err := New(&cfg, fakeRouter{pool: pool, err: routeErr}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		tb.Fatal(err)
	}
	salted, err := pbkdf2.Key(sha256.New, "bench", salt, 4096, sha256.Size)
	if err != nil {
		tb.Fatal(err)
	}
	mac := func(msg string) []byte {
		m := hmac.New(sha256.New, salted)
		m.Write([]byte(msg))
		return m.Sum(nil)
	}
	return &loginRig{d: g.newDispatcher(0), keys: auth.SCRAMKeys{ClientKey: mac("Client Key"), ServerKey: mac("Server Key")}}
}

// send hands the client's bytes to the loop and returns what it wrote.
func send(tb testing.TB, cc *clientConn, f *fakeConn, msg []byte) [][]byte {
	tb.Helper()
	f.in, f.writes = msg, nil
	if cc.onTraffic() != 0 {
		f.closed = true
	}
	return f.writes
}

// saslData is the data of the AuthenticationSASLContinue in w.
func saslData(tb testing.TB, w [][]byte) string {
	tb.Helper()
	if len(w) != 1 || len(w[0]) < 9 || w[0][0] != 'R' || binary.BigEndian.Uint32(w[0][5:9]) != 11 {
		tb.Fatalf("want one AuthenticationSASLContinue, got %q", w)
	}
	return string(w[0][9:])
}

// login runs one SCRAM-SHA-256 login up to the server's last answer,
// which it returns (the writes of that step).
func (r *loginRig) login(tb testing.TB) (*clientConn, *fakeConn, [][]byte) {
	tb.Helper()
	f := &fakeConn{}
	cc := &clientConn{d: r.d, c: f, need: 4}
	startup := wire.Append(nil, &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters: map[string]string{"user": "bench", "database": "bench", "application_name": "pgbench"}})
	if w := send(tb, cc, f, startup); len(w) != 1 || w[0][0] != 'R' {
		tb.Fatalf("startup: want AuthenticationSASL, got %q", w)
	}
	client := auth.NewSCRAMClient(r.keys)
	first := wire.Append(nil, &pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte(client.First())})
	final, err := client.Final(saslData(tb, send(tb, cc, f, first)))
	if err != nil {
		tb.Fatal(err)
	}
	return cc, f, send(tb, cc, f, wire.Append(nil, &pgproto3.SASLResponse{Data: []byte(final)}))
}

// types lists the message types in b.
func types(tb testing.TB, b []byte) string {
	tb.Helper()
	var out []byte
	for len(b) > 0 {
		typ, size, ok := wire.Header(b)
		if !ok || size > len(b) {
			tb.Fatalf("truncated message in %q", b)
		}
		out, b = append(out, typ), b[size:]
	}
	return string(out)
}

// The end of a login (SASL final, AuthenticationOk, ParameterStatus,
// BackendKeyData, ReadyForQuery) is one write: one system call, one
// wake-up of the client.
func TestSCRAMLoginEndsInOneWrite(t *testing.T) {
	r := newLoginRig(t, nil)
	cc, f, w := r.login(t)
	if len(w) != 1 || f.closed {
		t.Fatalf("want the end of the login in one write, got %d writes (closed: %v)", len(w), f.closed)
	}
	if got, want := types(t, w[0]), "RR"+strings.Repeat("S", 11)+"KZ"; got != want {
		t.Fatalf("message types %q, want SASL final, AuthenticationOk, 11 ParameterStatus, BackendKeyData, ReadyForQuery", got)
	}
	if cc.phase != phaseReady || cc.login != nil {
		t.Fatalf("phase %v, login %v: not logged in", cc.phase, cc.login)
	}
	r.d.closed(cc)
}

// A client the router refuses after a good password gets
// AuthenticationOk and the FATAL together, then the connection closes.
func TestRefusedLoginOneWrite(t *testing.T) {
	r := newLoginRig(t, wire.Fatal("57P03", "database \"bench\" is disabled"))
	_, f, w := r.login(t)
	if len(w) != 1 || !f.closed {
		t.Fatalf("want one write and a close, got %d writes (closed: %v)", len(w), f.closed)
	}
	if got := types(t, w[0]); got != "RRE" {
		t.Fatalf("message types %q, want SASL final, AuthenticationOk, ErrorResponse", got)
	}
}

// BenchmarkSCRAMLogin is the loop's share of one SCRAM-SHA-256 login
// against a warm pool, from the startup packet to ReadyForQuery and the
// close, without sockets (the client's SCRAM messages are in the figure).
func BenchmarkSCRAMLogin(b *testing.B) {
	r := newLoginRig(b, nil)
	b.ReportAllocs()
	for b.Loop() {
		cc, _, w := r.login(b)
		if len(w) != 1 || cc.phase != phaseReady {
			b.Fatal("login failed")
		}
		r.d.closed(cc)
	}
}
