package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
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

// TestServerTLS: pgmts logs in to a PostgreSQL that only accepts TLS for a
// user, with require and verify-full, and fails with disable.
func TestServerTLS(t *testing.T) {
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
