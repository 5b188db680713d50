package integration

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgmts/pgmts/config"
	"github.com/pgmts/pgmts/pgtest"
)

// testPKI is a throwaway CA whose files live in dir.
type testPKI struct {
	dir    string
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	serial int64
}

// newPKI makes a CA and writes it to dir as ca.crt.
func newPKI(t *testing.T, dir string) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pgmts test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	writePEM(t, filepath.Join(dir, "ca.crt"), &pem.Block{Type: "CERTIFICATE", Bytes: der})
	return &testPKI{dir: dir, cert: cert, key: key, serial: 1}
}

// issue writes name.crt and name.key: a certificate signed by the CA for
// the server 127.0.0.1 / localhost (server = true) or for a client whose
// common name is cn.
func (p *testPKI) issue(t *testing.T, name, cn string, server bool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p.serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(p.serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	if server {
		tmpl.IPAddresses, tmpl.DNSNames = []net.IP{net.ParseIP("127.0.0.1")}, []string{"localhost"}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(p.dir, name+".crt"), &pem.Block{Type: "CERTIFICATE", Bytes: der})
	writePEM(t, filepath.Join(p.dir, name+".key"), &pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
}

func writePEM(t *testing.T, path string, b *pem.Block) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(b), 0o600); err != nil {
		t.Fatal(err)
	}
}

// testCA makes a CA and a server certificate for 127.0.0.1, written as PEM
// files into dir: ca.crt, server.crt, server.key.
func testCA(t *testing.T, dir string) {
	t.Helper()
	newPKI(t, dir).issue(t, "server", "127.0.0.1", true)
}

// giveToPostgres hands dir and its files to the postgres OS user when we
// run as root, since PostgreSQL must read its key (and refuses a key that
// others can read).
func giveToPostgres(t *testing.T, dir string) {
	if os.Geteuid() != 0 {
		return
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if err := os.Chown(filepath.Join(dir, e.Name()), uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
}

// tlsOnlyCluster starts a PostgreSQL whose user tlsonly (password tls-pw,
// database tlsdb) may log in over TLS only; dir holds its CA (ca.crt).
func tlsOnlyCluster(t *testing.T) (cluster *pgtest.Cluster, dir string) {
	needCluster(t)
	dir, err := os.MkdirTemp("", "pgmts-tls-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	testCA(t, dir)
	giveToPostgres(t, dir)
	tlsCluster, err := pgtest.Start(pgtest.Options{
		Users:     []pgtest.User{{Name: "tlsonly", Password: "tls-pw"}},
		Databases: []string{"tlsdb"},
		Conf: map[string]string{
			"ssl":           "on",
			"ssl_cert_file": "'" + filepath.Join(dir, "server.crt") + "'",
			"ssl_key_file":  "'" + filepath.Join(dir, "server.key") + "'",
		},
		HBA: "local all all trust\nhostssl all tlsonly 127.0.0.1/32 scram-sha-256\nhostnossl all tlsonly 127.0.0.1/32 reject\n",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tlsCluster.Stop() })
	return tlsCluster, dir
}

// TestServerTLS: pgmts logs in to a PostgreSQL that only accepts TLS for a
// user, with require and verify-full, and fails with disable.
func TestServerTLS(t *testing.T) {
	tlsCluster, dir := tlsOnlyCluster(t)

	// The same logins again with pg_authid's verifier in pgmts and no
	// plain password: SCRAM passthrough over TLS.
	admin, err := pgx.Connect(ctx10(t), tlsCluster.DSN("postgres", "", "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	verifier := queryString(t, admin, "SELECT rolpassword FROM pg_authid WHERE rolname = 'tlsonly'")
	admin.Close(ctx10(t))

	otherCA := t.TempDir()
	testCA(t, otherCA)
	for _, secret := range []struct{ suffix, stored string }{{"", "tls-pw"}, {"/passthrough", verifier}} {
		for _, tc := range []struct {
			mode, ca string
			refusal  string // "" when the login must work
		}{
			{"disable", "", "no encryption"},
			{"prefer", "", ""},
			{"require", "", ""},
			{"verify-full", filepath.Join(dir, "ca.crt"), ""},
			{"verify-ca", filepath.Join(otherCA, "ca.crt"), "certificate"},
		} {
			t.Run(tc.mode+secret.suffix, func(t *testing.T) {
				p := startPgmts(t, func(c *config.Config) {
					c.Pgmts.ServerTLSMode = tc.mode
					c.Pgmts.ServerTLSCAFile = tc.ca
					c.Users["tlsonly"] = config.User{Password: secret.stored}
					c.Databases["tlsdb"] = config.Database{Host: "127.0.0.1", Port: tlsCluster.Port}
				})
				conn, err := pgx.Connect(ctx10(t), p.dsn("tlsonly", "tls-pw", "tlsdb"))
				if tc.refusal != "" {
					if err == nil || !strings.Contains(err.Error(), tc.refusal) {
						t.Fatalf("server_tls_mode = %s: %v, want an error about %q", tc.mode, err, tc.refusal)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close(ctx10(t))
				if got := queryString(t, conn, "SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()"); got != "true" {
					t.Fatalf("backend connection not on TLS: ssl = %s", got)
				}
			})
		}
	}
}

// TestServerTLSWorkload: with backend TLS, which the loops run themselves,
// many clients at once get their own answers, a slow reader of a large
// result (the server stops reading its backend, then reads on: the
// session moves with the socket) gets every row, and COPY IN works.
func TestServerTLSWorkload(t *testing.T) {
	tlsCluster, _ := tlsOnlyCluster(t)
	p := startPgmts(t, func(c *config.Config) {
		c.Pgmts.ServerTLSMode = "require"
		c.Users["tlsonly"] = config.User{Password: "tls-pw"}
		c.Databases["tlsdb"] = config.Database{Host: "127.0.0.1", Port: tlsCluster.Port}
	})
	dsn := p.dsn("tlsonly", "tls-pw", "tlsdb")

	concurrentConns(t, dsn, 16, func(ctx context.Context, i int, c *pgx.Conn) error {
		for j := range 100 {
			var got int
			if err := c.QueryRow(ctx, "SELECT $1::int * 1000 + $2::int", i, j).Scan(&got); err != nil {
				return err
			}
			if got != i*1000+j {
				return fmt.Errorf("query %d: got %d", j, got)
			}
		}
		return nil
	})

	c, err := pgx.Connect(ctx10(t), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx10(t))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rows, err := c.Query(ctx, "SELECT g, repeat(md5(g::text), 32) FROM generate_series(1, 20000) g")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rows.Next() {
		var g int
		var s string
		if err := rows.Scan(&g, &s); err != nil {
			t.Fatal(err)
		}
		n++
		if g != n || len(s) != 1024 {
			t.Fatalf("row %d: g = %d, %d bytes", n, g, len(s))
		}
		if n%2000 == 0 {
			time.Sleep(100 * time.Millisecond) // let pgmts's 1 MiB backlog fill
		}
	}
	if rows.Err() != nil || n != 20000 {
		t.Fatalf("read %d rows, %v", n, rows.Err())
	}

	if _, err := c.Exec(ctx10(t), "CREATE TEMP TABLE copied (v text)"); err != nil {
		t.Fatal(err)
	}
	var in strings.Builder
	for i := range 5000 {
		fmt.Fprintf(&in, "line %d %s\n", i, strings.Repeat("z", 200))
	}
	tag, err := c.PgConn().CopyFrom(ctx10(t), strings.NewReader(in.String()), "COPY copied FROM STDIN")
	if err != nil || tag.RowsAffected() != 5000 {
		t.Fatalf("COPY: %v, %v", tag, err)
	}
}
