package integration

import (
	"context"
	"crypto/md5"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgmts/pgmts/config"
	"github.com/pgmts/pgmts/pgtest"
)

// clientPKI makes a CA with pgmts's certificate (server.crt/key) and client
// certificates for the users bench and app (bench.crt/key, app.crt/key).
func clientPKI(t *testing.T) *testPKI {
	t.Helper()
	pki := newPKI(t, t.TempDir())
	pki.issue(t, "server", "127.0.0.1", true)
	pki.issue(t, "bench", benchUser, false)
	pki.issue(t, "app", appUser, false)
	return pki
}

func (p *testPKI) path(name string) string { return filepath.Join(p.dir, name) }

// withClientTLS turns client TLS on in mode, with the certificates of pki.
func withClientTLS(pki *testPKI, mode string, more ...func(*config.Config)) func(*config.Config) {
	return func(c *config.Config) {
		c.Pgmts.ClientTLSMode = mode
		c.Pgmts.ClientTLSCertFile = pki.path("server.crt")
		c.Pgmts.ClientTLSKeyFile = pki.path("server.key")
		c.Pgmts.ClientTLSCAFile = pki.path("ca.crt")
		for _, m := range more {
			m(c)
		}
	}
}

// clientTLSLines adds client TLS settings with pki's files (ca.crt only
// when withCA) to a configTOML text.
func clientTLSLines(pki *testPKI, mode string, withCA bool, extra string) func(string) string {
	lines := "client_tls_mode = " + strconv.Quote(mode) + "\n" +
		"client_tls_cert_file = " + strconv.Quote(pki.path("server.crt")) + "\n" +
		"client_tls_key_file = " + strconv.Quote(pki.path("server.key")) + "\n"
	if withCA {
		lines += "client_tls_ca_file = " + strconv.Quote(pki.path("ca.crt")) + "\n"
	}
	return func(toml string) string {
		return strings.Replace(toml, "[pgmts]\n", "[pgmts]\n"+lines+extra, 1)
	}
}

// tlsLogin connects as user with the connection string options given, runs
// a query and reports whether the session to pgmts was TLS.
func tlsLogin(t *testing.T, p *pgmts, user, password string, opts ...string) (bool, error) {
	t.Helper()
	c, err := pgx.Connect(ctx10(t), p.dsn(user, password, "bench", opts...))
	if err != nil {
		return false, err
	}
	defer c.Close(ctx10(t))
	if got := queryString(t, c, "SELECT 'through'"); got != "through" {
		t.Fatalf("got %q", got)
	}
	_, onTLS := c.PgConn().Conn().(*tls.Conn)
	return onTLS, nil
}

// TestClientTLSModes: what each client_tls_mode accepts and refuses.
func TestClientTLSModes(t *testing.T) {
	pki := clientPKI(t)
	verifyFull := "sslmode=verify-full sslrootcert=" + pki.path("ca.crt")
	for i, tc := range []struct {
		mode       string
		sslmode    string
		wantTLS    bool
		wantRefuse string // SQLSTATE, or "tls" for a failed handshake
	}{
		{"disable", "sslmode=prefer", false, ""},
		{"disable", "sslmode=require", false, "tls"},
		{"allow", "sslmode=disable", false, ""},
		{"prefer", "sslmode=prefer", true, ""},
		{"prefer", verifyFull, true, ""},
		{"require", "sslmode=disable", false, "28000"},
		{"require", "sslmode=require", true, ""},
		{"require", verifyFull, true, ""},
		{"verify-ca", "sslmode=require", false, "tls"}, // no client certificate
		{"verify-ca", "sslmode=require sslcert=" + pki.path("bench.crt") + " sslkey=" + pki.path("bench.key"), true, ""},
		{"verify-full", "sslmode=require sslcert=" + pki.path("app.crt") + " sslkey=" + pki.path("app.key"), false, "28000"},
		{"verify-full", "sslmode=require sslcert=" + pki.path("bench.crt") + " sslkey=" + pki.path("bench.key"), true, ""},
	} {
		t.Run(strconv.Itoa(i)+"_"+tc.mode, func(t *testing.T) {
			p := startPgmts(t, withClientTLS(pki, tc.mode))
			onTLS, err := tlsLogin(t, p, benchUser, benchPass, tc.sslmode)
			switch {
			case tc.wantRefuse == "" && err != nil:
				t.Fatalf("client_tls_mode = %s, %s: %v", tc.mode, tc.sslmode, err)
			case tc.wantRefuse == "tls" && err == nil:
				t.Fatalf("client_tls_mode = %s, %s: logged in, want a TLS failure", tc.mode, tc.sslmode)
			case tc.wantRefuse != "" && tc.wantRefuse != "tls" && sqlState(err) != tc.wantRefuse:
				t.Fatalf("client_tls_mode = %s, %s: %v, want SQLSTATE %s", tc.mode, tc.sslmode, err, tc.wantRefuse)
			case err == nil && onTLS != tc.wantTLS:
				t.Fatalf("client_tls_mode = %s, %s: on TLS = %v, want %v", tc.mode, tc.sslmode, onTLS, tc.wantTLS)
			}
			tlsAlive(t, p, pki)
		})
	}
}

// tlsAlive checks that p still serves a client with pki's certificate for
// bench (over TLS unless TLS is off).
func tlsAlive(t *testing.T, p *pgmts, pki *testPKI) {
	t.Helper()
	opts := "sslmode=require sslcert=" + pki.path("bench.crt") + " sslkey=" + pki.path("bench.key")
	if p.cfg.Pgmts.ClientTLSMode == "disable" {
		opts = "sslmode=disable"
	}
	if _, err := tlsLogin(t, p, benchUser, benchPass, opts); err != nil {
		t.Fatalf("pgmts stopped serving: %v", err)
	}
}

// TestClientTLSRequireUnixSocket: client_tls_mode = require still lets
// local unix-socket clients in (libpq never uses TLS there).
func TestClientTLSRequireUnixSocket(t *testing.T) {
	pki := clientPKI(t)
	sock := t.TempDir()
	p := startPgmts(t, withClientTLS(pki, "require", func(c *config.Config) { c.Pgmts.UnixSocketDir = sock }))
	c, err := pgx.Connect(ctx10(t), strings.Replace(p.dsn(benchUser, benchPass, "bench"), "host=127.0.0.1", "host="+sock, 1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx10(t))
	if got := queryString(t, c, "SELECT 'unix'"); got != "unix" {
		t.Fatal(got)
	}
}

// TestClientCertAuth: auth_type = "cert" lets in a client whose verified
// certificate names the user, and nobody else.
func TestClientCertAuth(t *testing.T) {
	pki := clientPKI(t)
	other := newPKI(t, t.TempDir())
	other.issue(t, "bench", benchUser, false)
	p := startPgmts(t, withClientTLS(pki, "prefer", func(c *config.Config) { c.Pgmts.AuthType = "cert" }))
	cert := func(p *testPKI, name string) string {
		return "sslmode=require sslcert=" + p.path(name+".crt") + " sslkey=" + p.path(name+".key")
	}
	if _, err := tlsLogin(t, p, benchUser, "unused", cert(pki, "bench")); err != nil {
		t.Fatalf("bench with its certificate: %v", err)
	}
	for _, tc := range []struct{ name, opts, want string }{
		{"another user's certificate", cert(pki, "app"), "certificate authentication failed"},
		{"no certificate", "sslmode=require", "requires a valid client certificate"},
		{"no TLS", "sslmode=disable", "certificate authentication failed"},
	} {
		_, err := tlsLogin(t, p, benchUser, "unused", tc.opts)
		if sqlState(err) != "28000" || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want 28000 %q", tc.name, err, tc.want)
		}
	}
	if _, err := tlsLogin(t, p, benchUser, "unused", cert(other, "bench")); err == nil || sqlState(err) != "" {
		t.Errorf("a certificate from an unknown CA: %v, want a failed handshake", err)
	}
	tlsAlive(t, p, pki)
}

// TestClientTLSHBA: hostssl and hostnossl lines see whether the client is
// on TLS, and cert works as an hba method.
func TestClientTLSHBA(t *testing.T) {
	pki := clientPKI(t)
	rules := "hostssl all app 127.0.0.1/32 cert\n" +
		"hostssl all all 127.0.0.1/32 scram-sha-256\n" +
		"hostnossl all all 127.0.0.1/32 reject\n"
	path := filepath.Join(t.TempDir(), "hba.conf")
	if err := os.WriteFile(path, []byte(rules), 0o600); err != nil {
		t.Fatal(err)
	}
	tlsLines := clientTLSLines(pki, "prefer", true, "auth_hba_file = "+strconv.Quote(path)+"\n")
	p := startPgmts(t, withConfigFile(t, func(toml string) string {
		return strings.Replace(tlsLines(toml), `auth_type = "scram-sha-256"`, `auth_type = "hba"`, 1)
	}))
	if _, err := tlsLogin(t, p, benchUser, benchPass, "sslmode=require"); err != nil {
		t.Fatalf("hostssl scram-sha-256: %v", err)
	}
	if _, err := tlsLogin(t, p, appUser, "unused", "sslmode=require sslcert="+pki.path("app.crt")+" sslkey="+pki.path("app.key")); err != nil {
		t.Fatalf("hostssl cert: %v", err)
	}
	_, err := tlsLogin(t, p, benchUser, benchPass, "sslmode=disable")
	if sqlState(err) != "28000" || !strings.Contains(err.Error(), "no encryption") {
		t.Fatalf("hostnossl reject: %v", err)
	}
}

// TestSCRAMChannelBinding: over TLS, pgmts offers SCRAM-SHA-256-PLUS and
// clients that require channel binding (pgx, psql) get it.
func TestSCRAMChannelBinding(t *testing.T) {
	pki := clientPKI(t)
	p := startPgmts(t, withClientTLS(pki, "require"))
	if _, err := tlsLogin(t, p, benchUser, benchPass, "sslmode=require channel_binding=require"); err != nil {
		t.Fatalf("pgx with channel_binding=require: %v", err)
	}
	if _, err := tlsLogin(t, p, benchUser, "wrong", "sslmode=require channel_binding=require"); sqlState(err) != "28P01" {
		t.Fatalf("wrong password with channel binding: %v, want 28P01", err)
	}
	psql, err := pgtest.FindBin("psql")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(psql, "-XAtc", "SELECT 'bound'", p.dsn(benchUser, benchPass, "bench", "sslmode=require channel_binding=require"))
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "bound" {
		t.Fatalf("psql with channel_binding=require: %v: %s", err, out)
	}
}

// TestDirectTLS: PostgreSQL 17's sslnegotiation=direct (a TLS handshake
// with ALPN "postgresql" and no SSLRequest) works; without ALPN it does not.
func TestDirectTLS(t *testing.T) {
	pki := clientPKI(t)
	p := startPgmts(t, withClientTLS(pki, "require"))
	if onTLS, err := tlsLogin(t, p, benchUser, benchPass, "sslmode=require sslnegotiation=direct"); err != nil || !onTLS {
		t.Fatalf("sslnegotiation=direct: TLS = %v, %v", onTLS, err)
	}
	raw := dialRaw(t, p)
	tc := tls.Client(raw, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err == nil {
		if _, err = tc.Read(make([]byte, 1)); err == nil {
			t.Fatal("direct TLS without ALPN was accepted")
		}
	}
	tlsAlive(t, p, pki)

	plain := startPgmts(t, nil)
	if _, err := tlsLogin(t, plain, benchUser, benchPass, "sslmode=require sslnegotiation=direct"); err == nil {
		t.Fatal("direct TLS accepted with client_tls_mode = disable")
	}
	checkAlive(t, plain)
}

// TestTLSStalledHandshake: a client that asks for TLS and then says
// nothing is dropped after client_login_timeout, and TLS clients log in
// meanwhile.
func TestTLSStalledHandshake(t *testing.T) {
	pki := clientPKI(t)
	p := startPgmts(t, withClientTLS(pki, "require", func(c *config.Config) { c.Pgmts.ClientLoginTimeout = time.Second }))
	stalled := dialRaw(t, p)
	if _, err := stalled.Write(binary.BigEndian.AppendUint32([]byte{0, 0, 0, 8}, 80877103)); err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	if _, err := io.ReadFull(stalled, b[:]); err != nil || b[0] != 'S' {
		t.Fatalf("SSLRequest answered %q, %v; want 'S'", b[0], err)
	}
	start := time.Now()
	concurrentClients(t, p, 20, func(ctx context.Context, _ int, c *pgx.Conn) error {
		var one int
		return c.QueryRow(ctx, "SELECT 1").Scan(&one)
	}, "sslmode=require")
	_ = stalled.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := stalled.Read(b[:]); err == nil || !isClosed(err) {
		t.Fatalf("stalled TLS client: read %v, want the connection closed", err)
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Fatalf("stalled TLS client dropped after %v, want about 1s", waited)
	}
	waitClients(t, p, 0)
}

// TestClientTLSWorkload: pgbench with sslmode=require through pgmts, and
// a large result over TLS, in transaction mode.
func TestClientTLSWorkload(t *testing.T) {
	pki := clientPKI(t)
	p := startPgmts(t, withClientTLS(pki, "require", setMode("transaction", 4)))
	// client_tls_mode = require refuses pgbench unless it uses TLS.
	t.Setenv("PGSSLMODE", "require")
	p.pgbench(t, "-S", "-c", "8", "-j", "2", "-t", "200")
	c := p.connect(t, "sslmode=require")
	var n int64
	if err := c.QueryRow(ctx10(t), "SELECT sum(length(repeat('x', 1000) || g)) FROM generate_series(1, 20000) g").Scan(&n); err != nil {
		t.Fatal(err)
	}
	rows, err := c.Query(ctx10(t), "SELECT repeat('y', 1000) FROM generate_series(1, 20000)")
	if err != nil {
		t.Fatal(err)
	}
	count := 0
	for rows.Next() {
		count++
	}
	if rows.Err() != nil || count != 20000 {
		t.Fatalf("20,000 rows over TLS: got %d, %v", count, rows.Err())
	}
}

// TestTLSCertificateReload: SIGHUP makes pgmts read its certificate files
// again; new clients see the new certificate and connected clients stay.
func TestTLSCertificateReload(t *testing.T) {
	dir := t.TempDir()
	old := newPKI(t, dir)
	old.issue(t, "server", "127.0.0.1", true)
	tlsLines := clientTLSLines(old, "require", false, "")
	d := startDaemonWith(t, func(toml string) string {
		return strings.Replace(tlsLines(toml), `log_level = "warn"`, `log_level = "info"`, 1)
	})
	oldCA := filepath.Join(t.TempDir(), "old-ca.crt")
	if err := os.Rename(old.path("ca.crt"), oldCA); err != nil {
		t.Fatal(err)
	}
	connected, err := pgx.Connect(ctx10(t), d.dsn("sslmode=verify-full sslrootcert="+oldCA))
	if err != nil {
		t.Fatal(err)
	}
	defer connected.Close(ctx10(t))

	fresh := newPKI(t, dir) // new ca.crt, server.crt and server.key in place
	fresh.issue(t, "server", "127.0.0.1", true)
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	var c *pgx.Conn
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err = pgx.Connect(ctx10(t), d.dsn("sslmode=verify-full sslrootcert="+fresh.path("ca.crt")))
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("new certificate after SIGHUP: %v\n%s", err, d.stderr)
	}
	c.Close(ctx10(t))
	if got := queryString(t, connected, "SELECT 'still here'"); got != "still here" {
		t.Fatal(got)
	}
	if !strings.Contains(d.stderr.String(), "TLS certificates reloaded") {
		t.Errorf("no log line about the reload:\n%s", d.stderr)
	}
}

// TestLongSessionResults: one client alone on its loop, plaintext and
// over TLS, runs hundreds of small queries, so that gnet's loop moves its
// connection and its backend's to the wait through io_uring (a calm
// window of 256 wake-ups, then 64 reads: third_party/gnet/PGMTS.md);
// results of several MiB that follow must come back whole, checked
// against the md5 PostgreSQL computes of the same value.
func TestLongSessionResults(t *testing.T) {
	pki := clientPKI(t)
	for _, tc := range []struct{ name, sslmode string }{{"plaintext", "disable"}, {"tls", "require"}} {
		t.Run(tc.name, func(t *testing.T) {
			p := startPgmts(t, withClientTLS(pki, "allow", setMode("transaction", 2)))
			c := p.connect(t, "sslmode="+tc.sslmode)
			const big = "SELECT string_agg(md5(g::text), '' ORDER BY g) FROM generate_series(1, %d) g"
			for round := 0; round < 3; round++ {
				for i := 0; i < 400; i++ {
					var got int
					if err := c.QueryRow(ctx10(t), "SELECT $1::int", i).Scan(&got); err != nil || got != i {
						t.Fatalf("round %d, query %d: %d, %v", round, i, got, err)
					}
				}
				n := 50000 * (round + 1) // 1.6, 3.2 and 4.8 MB
				var s, want string
				if err := c.QueryRow(ctx10(t), fmt.Sprintf(big, n)).Scan(&s); err != nil {
					t.Fatal(err)
				}
				if err := c.QueryRow(ctx10(t), fmt.Sprintf("SELECT md5((%s))", fmt.Sprintf(big, n))).Scan(&want); err != nil {
					t.Fatal(err)
				}
				if got := fmt.Sprintf("%x", md5.Sum([]byte(s))); len(s) != 32*n || got != want {
					t.Fatalf("round %d: %d bytes with md5 %s, want %d bytes with md5 %s", round, len(s), got, 32*n, want)
				}
			}
		})
	}
}
