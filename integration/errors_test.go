package integration

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgmts/pgmts/config"
	"github.com/pgmts/pgmts/dispatcher"
	"github.com/pgmts/pgmts/pgtest"
	"github.com/pgmts/pgmts/sharedserver"
)

// These tests send pgmts what it must refuse and check two things: the
// client gets a clear error, and the daemon goes on serving everyone else.

func trustAuth(c *config.Config) { c.Pgmts.AuthType = "trust" }

// checkAlive logs in through p with pgx and runs SELECT 1. It uses the
// unnamed statement (exec mode): pgx's default statement cache names its
// statements after the SQL text, and pgmts does not yet keep prepared
// statements apart across clients (see TestErrPreparedStatementAcrossClients).
func checkAlive(t *testing.T, p *pgmts) {
	t.Helper()
	ctx := ctx10(t)
	c, err := pgx.Connect(ctx, p.dsn(benchUser, benchPass, "bench", "default_query_exec_mode=exec"))
	if err != nil {
		t.Fatalf("pgmts stopped serving: connect: %v", err)
	}
	defer c.Close(context.Background())
	var n int
	if err := c.QueryRow(ctx, "SELECT 1").Scan(&n); err != nil || n != 1 {
		t.Fatalf("pgmts stopped serving: SELECT 1 = %d, %v", n, err)
	}
}

// waitClients waits until pgmts counts n connected clients.
func waitClients(t *testing.T, p *pgmts, n int) {
	t.Helper()
	waitCount(t, "clients", n, 5*time.Second, p.group.ClientCount)
}

// waitCount waits up to limit until count() is n.
func waitCount(t *testing.T, what string, n int, limit time.Duration, count func() int) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for count() != n {
		if time.Now().After(deadline) {
			t.Fatalf("pgmts counts %d %s, want %d", count(), what, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// connectErr tries a pgx login that must fail and returns the server's
// error.
func connectErr(t *testing.T, dsn string) *pgconn.PgError {
	t.Helper()
	c, err := pgx.Connect(ctx10(t), dsn)
	if err == nil {
		c.Close(context.Background())
		t.Fatalf("connect %q succeeded, want an error", dsn)
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		t.Fatalf("connect %q: %v, want a PostgreSQL error", dsn, err)
	}
	return pe
}

func dialRaw(t *testing.T, p *pgmts) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p.port), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

func rawFrontend(c net.Conn) *pgproto3.Frontend { return pgproto3.NewFrontend(c, c) }

// expectFatal reads the next message, which must be a FATAL ErrorResponse
// with code, and then the end of the connection.
func expectFatal(t *testing.T, fe *pgproto3.Frontend, code string) pgproto3.ErrorResponse {
	t.Helper()
	msg, err := fe.Receive()
	if err != nil {
		t.Fatalf("want FATAL %s, got read error %v", code, err)
	}
	er, ok := msg.(*pgproto3.ErrorResponse)
	if !ok {
		t.Fatalf("want FATAL %s, got %T %+v", code, msg, msg)
	}
	e := *er
	if e.Severity != "FATAL" || e.Code != code {
		t.Fatalf("got %s %s %q, want FATAL %s", e.Severity, e.Code, e.Message, code)
	}
	t.Logf("FATAL %s: %s", e.Code, e.Message)
	expectEOF(t, fe)
	return e
}

// expectEOF checks that the server closes the connection without sending
// anything more.
func expectEOF(t *testing.T, fe *pgproto3.Frontend) {
	t.Helper()
	msg, err := fe.Receive()
	if err == nil {
		t.Fatalf("want the connection closed, got %T %+v", msg, msg)
	}
	if !isClosed(err) {
		t.Fatalf("want the connection closed, got %v", err)
	}
}

func isClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
}

// startupBytes encodes a StartupMessage with an arbitrary version word.
func startupBytes(version uint32, params ...string) []byte {
	b := []byte{0, 0, 0, 0}
	b = binary.BigEndian.AppendUint32(b, version)
	for _, s := range params {
		b = append(b, s...)
		b = append(b, 0)
	}
	b = append(b, 0)
	binary.BigEndian.PutUint32(b, uint32(len(b)))
	return b
}

// sendStartup sends a StartupMessage for bench/bench.
func sendStartup(t *testing.T, fe *pgproto3.Frontend, version uint32, extra map[string]string) {
	t.Helper()
	params := map[string]string{"user": benchUser, "database": "bench"}
	for k, v := range extra {
		params[k] = v
	}
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: version, Parameters: params})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
}

// finishTrustLogin reads AuthenticationOk .. ReadyForQuery and returns the
// reported parameters. gotOK tells that AuthenticationOk was already read.
func finishTrustLogin(t *testing.T, fe *pgproto3.Frontend, authOK ...bool) map[string]string {
	t.Helper()
	params := map[string]string{}
	gotOK, gotKey := len(authOK) > 0 && authOK[0], false
	for {
		msg, err := fe.Receive()
		if err != nil {
			t.Fatalf("login: %v", err)
		}
		switch m := msg.(type) {
		case *pgproto3.AuthenticationOk:
			gotOK = true
		case *pgproto3.ParameterStatus:
			params[m.Name] = m.Value
		case *pgproto3.BackendKeyData:
			gotKey = true
		case *pgproto3.ReadyForQuery:
			if !gotOK || !gotKey || m.TxStatus != 'I' {
				t.Fatalf("ReadyForQuery %c after AuthenticationOk=%v BackendKeyData=%v", m.TxStatus, gotOK, gotKey)
			}
			return params
		case *pgproto3.ErrorResponse:
			t.Fatalf("login: %s %s %s", m.Severity, m.Code, m.Message)
		default:
			t.Fatalf("login: unexpected %T", msg)
		}
	}
}

// rawLogin logs in by hand as bench (pgmts must use auth_type trust).
func rawLogin(t *testing.T, p *pgmts) (net.Conn, *pgproto3.Frontend) {
	t.Helper()
	c := dialRaw(t, p)
	fe := rawFrontend(c)
	sendStartup(t, fe, pgproto3.ProtocolVersion30, nil)
	finishTrustLogin(t, fe)
	return c, fe
}

// simpleQuery runs sql with the simple protocol and returns the first
// column of every row.
func simpleQuery(t *testing.T, fe *pgproto3.Frontend, sql string) []string {
	t.Helper()
	fe.Send(&pgproto3.Query{String: sql})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	var out []string
	for {
		msg, err := fe.Receive()
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		switch m := msg.(type) {
		case *pgproto3.DataRow:
			out = append(out, string(m.Values[0]))
		case *pgproto3.ErrorResponse:
			t.Fatalf("%s: %s %s", sql, m.Code, m.Message)
		case *pgproto3.ReadyForQuery:
			return out
		}
	}
}

func TestErrUnknownDatabase(t *testing.T) {
	p := startPgmts(t, nil)
	pe := connectErr(t, p.dsn(benchUser, benchPass, "nosuchdb"))
	if pe.Code != "3D000" || pe.Severity != "FATAL" || !strings.Contains(pe.Message, "nosuchdb") {
		t.Errorf("got %s %s %q, want FATAL 3D000 naming the database", pe.Severity, pe.Code, pe.Message)
	}
	t.Logf("%s %s: %s (hint: %s)", pe.Severity, pe.Code, pe.Message, pe.Hint)
	checkAlive(t, p)
}

func TestErrUnknownDatabaseFallback(t *testing.T) {
	p := startPgmts(t, func(c *config.Config) {
		c.Databases["*"] = config.Database{Host: "127.0.0.1", Port: cluster.Port}
	})
	pe := connectErr(t, p.dsn(benchUser, benchPass, "nosuchdb"))
	// PostgreSQL's own words: database "nosuchdb" does not exist, without
	// pgmts's hint about the missing section.
	if pe.Code != "3D000" || pe.Severity != "FATAL" || !strings.Contains(pe.Message, `"nosuchdb"`) {
		t.Errorf("got %s %s %q, want PostgreSQL's FATAL 3D000", pe.Severity, pe.Code, pe.Message)
	}
	if strings.Contains(pe.Hint, "pgmts") {
		t.Errorf("error came from pgmts (hint %q), want PostgreSQL's own", pe.Hint)
	}
	t.Logf("%s %s: %s", pe.Severity, pe.Code, pe.Message)
	checkAlive(t, p)
	// A database known only through "*" works.
	c, err := pgx.Connect(ctx10(t), p.dsn(benchUser, benchPass, "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	c.Close(context.Background())
}

func TestErrAuthFailures(t *testing.T) {
	p := startPgmts(t, nil)
	unknown := connectErr(t, p.dsn("nosuchuser", "whatever", "bench"))
	wrong := connectErr(t, p.dsn(benchUser, "wrong-pw", "bench"))
	for _, pe := range []*pgconn.PgError{unknown, wrong} {
		if pe.Code != "28P01" || pe.Severity != "FATAL" {
			t.Errorf("got %s %s %q, want FATAL 28P01", pe.Severity, pe.Code, pe.Message)
		}
	}
	// An unknown user must not be told apart from a wrong password.
	if u, w := strings.ReplaceAll(unknown.Message, "nosuchuser", "X"), strings.ReplaceAll(wrong.Message, benchUser, "X"); u != w {
		t.Errorf("messages differ: unknown user %q, wrong password %q", unknown.Message, wrong.Message)
	}
	if !strings.HasPrefix(wrong.Message, "password authentication failed for user ") {
		t.Errorf("message %q, want PostgreSQL's wording", wrong.Message)
	}
	t.Logf("unknown user: %s; wrong password: %s", unknown.Message, wrong.Message)
	checkAlive(t, p)
}

func TestErrAuthMD5(t *testing.T) {
	p := startPgmts(t, func(c *config.Config) { c.Pgmts.AuthType = "md5" })

	// The server really asks for md5.
	fe := rawFrontend(dialRaw(t, p))
	sendStartup(t, fe, pgproto3.ProtocolVersion30, nil)
	msg, err := fe.Receive()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := msg.(*pgproto3.AuthenticationMD5Password); !ok {
		t.Fatalf("auth_type md5: first reply %T, want AuthenticationMD5Password", msg)
	}

	c := p.connect(t)
	if s := queryString(t, c, "SELECT current_user::text"); s != benchUser {
		t.Errorf("current_user = %q", s)
	}
	pe := connectErr(t, p.dsn(benchUser, "wrong-pw", "bench"))
	if pe.Code != "28P01" {
		t.Errorf("md5 wrong password: got %s %q, want 28P01", pe.Code, pe.Message)
	}
	pe = connectErr(t, p.dsn("nosuchuser", "x", "bench"))
	if pe.Code != "28P01" {
		t.Errorf("md5 unknown user: got %s %q, want 28P01", pe.Code, pe.Message)
	}
	checkAlive(t, p)
}

func TestErrAuthTrust(t *testing.T) {
	p := startPgmts(t, trustAuth)
	// trust asks for no password: a wrong one is never checked.
	c, err := pgx.Connect(ctx10(t), p.dsn(benchUser, "not-checked", "bench"))
	if err != nil {
		t.Fatalf("trust login: %v", err)
	}
	defer c.Close(context.Background())
	if s := queryString(t, c, "SELECT current_user::text"); s != benchUser {
		t.Errorf("current_user = %q", s)
	}
	checkAlive(t, p)
}

func TestErrGarbageFirstPacket(t *testing.T) {
	p := startPgmts(t, nil)
	c := dialRaw(t, p)
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil && !isClosed(err) {
		t.Fatalf("garbage first packet: connection neither answered nor closed within 2 s: %v (read %q)", err, got)
	}
	if len(got) > 0 && got[0] != 'E' {
		t.Fatalf("garbage first packet: reply %q, want an ErrorResponse", got)
	}
	t.Logf("reply: %q", got)
	checkAlive(t, p)
}

func TestErrHugeStartupPacket(t *testing.T) {
	p := startPgmts(t, nil)
	c := dialRaw(t, p)
	var b []byte
	b = binary.BigEndian.AppendUint32(b, 0x7fffffff)
	b = binary.BigEndian.AppendUint32(b, pgproto3.ProtocolVersion30)
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	expectFatal(t, rawFrontend(c), "08P01")
	checkAlive(t, p)
}

func TestErrHugeMessageAfterLogin(t *testing.T) {
	p := startPgmts(t, trustAuth)
	c, fe := rawLogin(t, p)
	if got := simpleQuery(t, fe, "SELECT 7"); !slices.Equal(got, []string{"7"}) {
		t.Fatalf("SELECT 7 = %q", got)
	}

	// Another client, logged in before, must not notice.
	other := p.connect(t)

	msg := []byte{'Q'}
	msg = binary.BigEndian.AppendUint32(msg, 0x7fffffff)
	msg = append(msg, "SELECT 1"...)
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	expectFatal(t, fe, "08P01")

	if s := queryString(t, other, "SELECT 'still here'"); s != "still here" {
		t.Errorf("other client: %q", s)
	}
	checkAlive(t, p)
}

func TestErrProtocolVersions(t *testing.T) {
	p := startPgmts(t, nil)
	for _, v := range []uint32{0x00020000, 0x12345678} {
		t.Run(fmt.Sprintf("%#x", v), func(t *testing.T) {
			c := dialRaw(t, p)
			if _, err := c.Write(startupBytes(v, "user", benchUser, "database", "bench")); err != nil {
				t.Fatal(err)
			}
			expectFatal(t, rawFrontend(c), "0A000")
			checkAlive(t, p)
		})
	}
}

func TestProto32Pgx(t *testing.T) {
	p := startPgmts(t, nil)
	c := p.connect(t, "max_protocol_version=3.2")
	if s := queryString(t, c, "SELECT 'three-two'"); s != "three-two" {
		t.Errorf("got %q", s)
	}
	var n int
	if err := c.QueryRow(ctx10(t), "SELECT $1::int + 1", 41).Scan(&n); err != nil || n != 42 {
		t.Errorf("extended query: %d, %v", n, err)
	}
	checkAlive(t, p)
}

func TestProto32ByHand(t *testing.T) {
	p := startPgmts(t, trustAuth)
	fe := rawFrontend(dialRaw(t, p))
	sendStartup(t, fe, pgproto3.ProtocolVersion32, map[string]string{"_pq_.foo": "bar"})
	msg, err := fe.Receive()
	if err != nil {
		t.Fatal(err)
	}
	npv, ok := msg.(*pgproto3.NegotiateProtocolVersion)
	if !ok {
		t.Fatalf("first reply %T, want NegotiateProtocolVersion", msg)
	}
	if npv.NewestMinorProtocol != 0 || !slices.Equal(npv.UnrecognizedOptions, []string{"_pq_.foo"}) {
		t.Errorf("NegotiateProtocolVersion{%d, %q}, want {0, [_pq_.foo]}", npv.NewestMinorProtocol, npv.UnrecognizedOptions)
	}
	finishTrustLogin(t, fe)
	if got := simpleQuery(t, fe, "SELECT 32"); !slices.Equal(got, []string{"32"}) {
		t.Errorf("SELECT 32 = %q", got)
	}
	checkAlive(t, p)
}

func TestSSLAndGSSENCRequest(t *testing.T) {
	p := startPgmts(t, trustAuth)
	for _, tc := range []struct {
		name string
		code uint32
	}{{"SSLRequest", 80877103}, {"GSSENCRequest", 80877104}} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, p)
			req := binary.BigEndian.AppendUint32([]byte{0, 0, 0, 8}, tc.code)
			if _, err := c.Write(req); err != nil {
				t.Fatal(err)
			}
			var b [1]byte
			if _, err := io.ReadFull(c, b[:]); err != nil {
				t.Fatal(err)
			}
			if b[0] != 'N' {
				t.Fatalf("%s answered %q, want 'N'", tc.name, b[0])
			}
			fe := rawFrontend(c)
			sendStartup(t, fe, pgproto3.ProtocolVersion30, nil)
			finishTrustLogin(t, fe)
			if got := simpleQuery(t, fe, "SELECT 'plain'"); !slices.Equal(got, []string{"plain"}) {
				t.Errorf("got %q", got)
			}
		})
	}
	checkAlive(t, p)
}

func TestErrReplication(t *testing.T) {
	p := startPgmts(t, nil)
	pe := connectErr(t, p.dsn(benchUser, benchPass, "bench", "replication=database"))
	if pe.Severity != "FATAL" || pe.Code == "" || !strings.Contains(pe.Message, "replication") {
		t.Errorf("replication=database: got %s %s %q, want a FATAL about replication", pe.Severity, pe.Code, pe.Message)
	}
	t.Logf("%s %s: %s", pe.Severity, pe.Code, pe.Message)
	checkAlive(t, p)
}

func TestErrSilentAndVanishingClients(t *testing.T) {
	p := startPgmts(t, nil)

	silent := dialRaw(t, p)

	half := dialRaw(t, p)
	pkt := startupBytes(pgproto3.ProtocolVersion30, "user", benchUser, "database", "bench")
	if _, err := half.Write(pkt[:len(pkt)/2]); err != nil {
		t.Fatal(err)
	}
	waitClients(t, p, 2)
	checkAlive(t, p)
	half.Close()
	waitClients(t, p, 1)
	checkAlive(t, p)

	// The silent one was told nothing and is still open.
	_ = silent.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	var b [1]byte
	if n, err := silent.Read(b[:]); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("silent client: read %d bytes, %v; want nothing", n, err)
	}
	silent.Close()
	waitClients(t, p, 0)
}

// TestErrSplitStartupPacket sends a startup packet in two pieces, as a
// slow network may deliver it: the login must still go through.
func TestErrSplitStartupPacket(t *testing.T) {
	p := startPgmts(t, trustAuth)
	c := dialRaw(t, p)
	pkt := startupBytes(pgproto3.ProtocolVersion30, "user", benchUser, "database", "bench")
	if _, err := c.Write(pkt[:12]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if _, err := c.Write(pkt[12:]); err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	fe := rawFrontend(c)
	msg, err := fe.Receive()
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("a startup packet that arrives in two reads (12 bytes, then %d) was never answered", len(pkt)-12)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := msg.(*pgproto3.AuthenticationOk); !ok {
		t.Fatalf("got %T, want AuthenticationOk", msg)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	finishTrustLogin(t, fe, true)
	if got := simpleQuery(t, fe, "SELECT 'joined'"); !slices.Equal(got, []string{"joined"}) {
		t.Errorf("got %q", got)
	}
	checkAlive(t, p)
}

// splitMessageStalls logs in through p, sends a Query in two pieces with a
// pause between them, and reports whether pgmts never answers it.
func splitMessageStalls(t *testing.T, p *pgmts) bool {
	t.Helper()
	ctx := ctx10(t)
	pc, err := pgconn.Connect(ctx, p.dsn(benchUser, benchPass, "bench"))
	if err != nil {
		t.Fatal(err)
	}
	hj := hijack(t, pc)
	c := hj.Conn
	defer c.Close()
	q, _ := (&pgproto3.Query{String: "SELECT 'split'"}).Encode(nil)
	if _, err := c.Write(q[:8]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if _, err := c.Write(q[8:]); err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	fe := rawFrontend(c)
	for {
		msg, err := fe.Receive()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return true
		}
		if err != nil {
			t.Fatalf("split Query: %v", err)
		}
		switch m := msg.(type) {
		case *pgproto3.DataRow:
			if string(m.Values[0]) != "split" {
				t.Fatalf("split Query returned %q", m.Values[0])
			}
		case *pgproto3.ErrorResponse:
			t.Fatalf("split Query: %s %s", m.Code, m.Message)
		case *pgproto3.ReadyForQuery:
			return false
		}
	}
}

// TestErrSplitMessage: a logged-in client's message split across two TCP
// reads must still be framed.
func TestErrSplitMessage(t *testing.T) {
	p := startPgmts(t, nil)
	if splitMessageStalls(t, p) {
		t.Fatal("a message that arrived in two reads (8 bytes, then the rest) was never answered")
	}
	checkAlive(t, p)
}

// TestErrClientGoneMidQuery: a client that disconnects while its query runs,
// or while its big result waits for it to read, must not disturb the
// daemon when the rest of the reply comes back. Run against the binary, so
// that a crash does not take the test process with it.
func TestErrClientGoneMidQuery(t *testing.T) {
	if binDir == "" {
		needCluster(t)
		t.Fatal("no pgmts binary")
	}
	d := startDaemon(t)
	ctx := ctx10(t)
	dsn := d.dsn()
	for _, sql := range []string{
		"SELECT pg_sleep(0.5), 'gone'",                                        // the client leaves before any reply
		"SELECT repeat('x', 1000) FROM generate_series(1, 50000)",             // the client leaves with 50 MB unread
		"SELECT pg_sleep(0.3), repeat('x', 1000) FROM generate_series(1, 20)", // both
	} {
		pc, err := pgconn.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		hj := hijack(t, pc)
		q, _ := (&pgproto3.Query{String: sql}).Encode(nil)
		if _, err := hj.Conn.Write(q); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond) // the query is running, or its reply waits
		hj.Conn.Close()
		time.Sleep(700 * time.Millisecond)
		if d.exited() {
			t.Fatalf("pgmts exited after a client left during %q:\n%s", sql, tail(d.stderr.String(), 1500))
		}
	}
	c, err := pgx.Connect(ctx, dsn+" default_query_exec_mode=exec")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var n int
	if err := c.QueryRow(ctx, "SELECT 1").Scan(&n); err != nil || n != 1 {
		t.Fatalf("SELECT 1 = %d, %v", n, err)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

func TestOptions(t *testing.T) {
	p := startPgmts(t, nil)
	c := p.connect(t, "options='-c search_path=foo'")
	if s := queryString(t, c, "SHOW search_path"); s != "foo" {
		t.Errorf("SHOW search_path = %q, want foo", s)
	}
	c2 := p.connect(t, `options='-c statement_timeout=1234 --application-name=opt\\ app'`)
	if s := queryString(t, c2, "SHOW statement_timeout"); s != "1234ms" {
		t.Errorf("SHOW statement_timeout = %q, want 1234ms", s)
	}
	if s := queryString(t, c2, "SHOW application_name"); s != "opt app" {
		t.Errorf("SHOW application_name = %q, want %q", s, "opt app")
	}
	checkAlive(t, p)
}

func TestOptionsMalformed(t *testing.T) {
	p := startPgmts(t, nil)
	pe := connectErr(t, p.dsn(benchUser, benchPass, "bench", "options=-x"))
	if pe.Severity != "FATAL" || pe.Code != "22023" {
		t.Errorf("options=-x: got %s %s %q, want FATAL 22023", pe.Severity, pe.Code, pe.Message)
	}
	t.Logf("%s %s: %s", pe.Severity, pe.Code, pe.Message)
	checkAlive(t, p)
}

func socketDir(t *testing.T) string {
	dir := t.TempDir()
	if len(dir)+len("/.s.PGSQL.65535") > 90 {
		var err error
		if dir, err = os.MkdirTemp("/tmp", "pgmts"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
	}
	return dir
}

func runPsql(t *testing.T, host string, port int) string {
	t.Helper()
	psql, err := pgtest.FindBin("psql")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, psql, "-X", "-h", host, "-p", strconv.Itoa(port), "-U", benchUser, "-d", "bench", "-Atc", "select 42")
	cmd.Env = append(os.Environ(), "PGPASSWORD="+benchPass, "PGCONNECT_TIMEOUT=10")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("psql -h %s: %v: %s", host, err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// tryStartPgmts is startPgmts that returns Start's error instead of
// failing the test.
func tryStartPgmts(t *testing.T, edit func(*config.Config)) (*pgmts, error) {
	t.Helper()
	needCluster(t)
	cfg := baseConfig(t)
	edit(cfg)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	pools := sharedserver.NewPools(cfg, log)
	group, err := dispatcher.New(cfg, pools, log)
	if err != nil {
		pools.Close()
		t.Fatal(err)
	}
	pools.SetLoops(group)
	if err := group.Start(); err != nil {
		pools.Close()
		return nil, err
	}
	_, port, _ := net.SplitHostPort(cfg.Pgmts.Listen)
	p := &pgmts{cfg: cfg, pools: pools, group: group}
	p.port, _ = strconv.Atoi(port)
	t.Cleanup(p.stop)
	return p, nil
}

// startUnixPgmts starts pgmts with a unix socket, skipping on the known
// bugs that keep it from starting.
func startUnixPgmts(t *testing.T, dispatchers int) (*pgmts, string) {
	t.Helper()
	dir := socketDir(t)
	p, err := tryStartPgmts(t, func(c *config.Config) {
		c.Pgmts.UnixSocketDir = dir
		c.Pgmts.Dispatchers = dispatchers
	})
	if err != nil {
		t.Fatal(err)
	}
	return p, dir
}

func TestUnixSocket(t *testing.T) {
	p, dir := startUnixPgmts(t, 1)
	testUnixSocket(t, p, dir)
}

func TestUnixSocketManyDispatchers(t *testing.T) {
	p, dir := startUnixPgmts(t, 2)
	testUnixSocket(t, p, dir)
}

func testUnixSocket(t *testing.T, p *pgmts, dir string) {
	if _, err := os.Stat(filepath.Join(dir, ".s.PGSQL."+strconv.Itoa(p.port))); err != nil {
		t.Fatal(err)
	}
	dsn := fmt.Sprintf("host=%s port=%d user=%s password=%s dbname=bench default_query_exec_mode=exec", dir, p.port, benchUser, benchPass)
	c, err := pgx.Connect(ctx10(t), dsn)
	if err != nil {
		t.Fatalf("pgx over the unix socket: %v", err)
	}
	defer c.Close(context.Background())
	if s := queryString(t, c, "SELECT 'unix'"); s != "unix" {
		t.Errorf("got %q", s)
	}
	if out := runPsql(t, dir, p.port); out != "42" {
		t.Errorf("psql over the unix socket printed %q, want 42", out)
	}
	checkAlive(t, p)
}

func TestPsqlTCP(t *testing.T) {
	p := startPgmts(t, nil)
	if out := runPsql(t, "127.0.0.1", p.port); out != "42" {
		t.Errorf("psql over TCP printed %q, want 42", out)
	}
	checkAlive(t, p)
}
