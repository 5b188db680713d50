package auth

import (
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/xdg-go/scram"
)

// Verifiers and md5 hashes below were produced by PostgreSQL 15:
//
//	SET password_encryption = 'scram-sha-256';
//	CREATE ROLE v1 PASSWORD 'postgres';
//	CREATE ROLE v2 PASSWORD U&'pa\00ADss'; -- soft hyphen, removed by SASLprep
//	SET password_encryption = 'md5';
//	CREATE ROLE v3 PASSWORD 'postgres';
//	SELECT rolname, rolpassword FROM pg_authid;
const (
	pgVerifierPostgres = "SCRAM-SHA-256$4096:JuAhxcHTlVljM63SvcAF1Q==$As/0xcGO0gAA2xu61CQ+KogBz6vzugIHwOn6wwV0ANU=:E8bxuuamfanfIjsYRJTvmZIEYsHbwlJutCPulNLIFuM="
	pgVerifierSoftHyph = "SCRAM-SHA-256$4096:vXIJE2kzZ98RABRw90MDXQ==$81XiwKlW9lsHYku7Nlx+W+VQMFVVBQMbptk4IU9feX8=:Qtw4R4BELc/JSXMkh7Dpy7ggr+kwBaLqSfL7kp5JINA="
	pgMD5V3            = "md5d01b489cdd9e5cb1e9ec310785c2fbd4"
)

func mustParse(t *testing.T, stored string) Secret {
	t.Helper()
	s, err := ParseSecret(stored)
	if err != nil {
		t.Fatalf("ParseSecret(%q): %v", stored, err)
	}
	return s
}

func TestKinds(t *testing.T) {
	for _, tc := range []struct {
		stored string
		want   Kind
	}{
		{"", KindNone},
		{"postgres", KindPlain},
		{pgMD5V3, KindMD5},
		{strings.ToUpper(pgMD5V3[3:]), KindPlain},
		{"md5" + strings.ToUpper(pgMD5V3[3:]), KindPlain}, // PostgreSQL only knows lowercase hex
		{"md5abc", KindPlain},
		{pgVerifierPostgres, KindSCRAM},
	} {
		s := mustParse(t, tc.stored)
		if s.Kind() != tc.want {
			t.Errorf("ParseSecret(%q).Kind() = %v, want %v", tc.stored, s.Kind(), tc.want)
		}
		if k, err := StoredKind(tc.stored); err != nil || k != tc.want {
			t.Errorf("StoredKind(%q) = %v, %v, want %v", tc.stored, k, err, tc.want)
		}
		p, ok := s.Plain()
		if ok != (tc.want == KindPlain) || ok && p != tc.stored {
			t.Errorf("ParseSecret(%q).Plain() = %q, %v", tc.stored, p, ok)
		}
	}
}

func TestMD5Password(t *testing.T) {
	if got := MD5Password("postgres", "postgres"); got != "md53175bce1d3201d16594cebf9d7eb3f9d" {
		t.Errorf("MD5Password(postgres, postgres) = %q", got)
	}
	if got := MD5Password("v3", "postgres"); got != pgMD5V3 {
		t.Errorf("MD5Password(v3, postgres) = %q, want PostgreSQL's %q", got, pgMD5V3)
	}
}

// clientMD5 computes a client's md5 answer independently of the package.
func clientMD5(user, password string, salt [4]byte) string {
	inner := md5.Sum([]byte(password + user))
	outer := md5.Sum(append([]byte(hex.EncodeToString(inner[:])), salt[:]...))
	return "md5" + hex.EncodeToString(outer[:])
}

func TestCheckMD5(t *testing.T) {
	salt := [4]byte{0x01, 0xfe, 0x00, 0x7f}
	plain := mustParse(t, "postgres")
	hashed := mustParse(t, pgMD5V3)
	for _, tc := range []struct {
		name     string
		secret   Secret
		user     string
		response string
		want     bool
	}{
		{"plain", plain, "v3", clientMD5("v3", "postgres", salt), true},
		{"md5", hashed, "v3", clientMD5("v3", "postgres", salt), true},
		{"plain wrong password", plain, "v3", clientMD5("v3", "postgre", salt), false},
		{"md5 wrong password", hashed, "v3", clientMD5("v3", "postgre", salt), false},
		{"md5 other user", hashed, "v4", clientMD5("v4", "postgres", salt), false},
		{"wrong salt", hashed, "v3", clientMD5("v3", "postgres", [4]byte{1, 2, 3, 4}), false},
		{"empty response", plain, "v3", "", false},
		{"scram", mustParse(t, pgVerifierPostgres), "v1", clientMD5("v1", "postgres", salt), false},
		{"none", mustParse(t, ""), "v1", clientMD5("v1", "", salt), false},
	} {
		if got := tc.secret.CheckMD5(tc.user, salt, tc.response); got != tc.want {
			t.Errorf("%s: CheckMD5 = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// exchange runs a SCRAM-SHA-256 exchange between xdg-go/scram's client, as
// scramUser/password, and secret's server side for the startup user "alice".
// It returns the server's first message and the first error.
func exchange(t *testing.T, secret Secret, scramUser, password string) (string, error) {
	t.Helper()
	client, err := scram.SHA256.NewClient(scramUser, password, "")
	if err != nil {
		t.Fatal(err)
	}
	cc := client.NewConversation()
	x, err := secret.NewSCRAM("alice", nil)
	if err != nil {
		t.Fatal(err)
	}
	clientFirst, err := cc.Step("")
	if err != nil {
		t.Fatal(err)
	}
	if scramUser == "" && !strings.HasPrefix(clientFirst, "n,,n=,r=") {
		t.Fatalf("client-first %q does not look like libpq's", clientFirst)
	}
	serverFirst, err := x.Step(clientFirst)
	if err != nil {
		return "", err
	}
	clientFinal, err := cc.Step(serverFirst)
	if err != nil {
		t.Fatal(err)
	}
	serverFinal, err := x.Step(clientFinal)
	if err != nil {
		if x.Done() {
			t.Error("Done() after a failed exchange")
		}
		return serverFirst, err
	}
	if !x.Done() {
		t.Error("not Done() after a successful exchange")
	}
	// The client checks the server's signature: proof the server holds the keys.
	if _, err := cc.Step(serverFinal); err != nil || !cc.Valid() {
		t.Errorf("client rejected server-final %q: %v", serverFinal, err)
	}
	return serverFirst, nil
}

func TestSCRAMExchange(t *testing.T) {
	generated := SCRAMVerifier("s3cret", []byte("0123456789abcdef"), 4096)
	for _, tc := range []struct {
		name     string
		stored   string
		password string
	}{
		{"plain", "s3cret", "s3cret"},
		{"generated verifier", generated, "s3cret"},
		{"PostgreSQL verifier", pgVerifierPostgres, "postgres"},
		{"PostgreSQL verifier after SASLprep", pgVerifierSoftHyph, "pa\u00adss"},
		{"plain after SASLprep", "pa\u00adss", "pass"},
	} {
		secret := mustParse(t, tc.stored)
		// libpq sends an empty SCRAM username; others may repeat the user.
		for _, scramUser := range []string{"", "alice", "mallory"} {
			if _, err := exchange(t, secret, scramUser, tc.password); err != nil {
				t.Errorf("%s, scram user %q: %v", tc.name, scramUser, err)
			}
			_, err := exchange(t, secret, scramUser, tc.password+"x")
			if !errors.Is(err, ErrBadProof) {
				t.Errorf("%s, scram user %q, wrong password: err = %v, want ErrBadProof", tc.name, scramUser, err)
			}
		}
	}
}

func TestSCRAMErrorMessage(t *testing.T) {
	_, err := exchange(t, mustParse(t, "s3cret"), "", "wrong")
	if want := `password authentication failed for user "alice"`; err == nil || err.Error() != want {
		t.Errorf("err = %v, want %q", err, want)
	}
}

func TestPlainVerifierDerivedOnce(t *testing.T) {
	secret := mustParse(t, "s3cret")
	first, err := exchange(t, secret, "", "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	second, err := exchange(t, secret, "", "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	salt, iters := saltAndIters(t, first)
	if len(salt) != 16 || iters != "4096" {
		t.Errorf("plain secret: salt %d bytes, %s iterations; want 16 bytes, 4096", len(salt), iters)
	}
	if salt2, _ := saltAndIters(t, second); string(salt2) != string(salt) {
		t.Error("plain secret: salt differs between logins; the verifier must be derived once")
	}
	if other, _ := saltAndIters(t, mustExchange(t, mustParse(t, "s3cret"))); string(other) == string(salt) {
		t.Error("two parses of the same password share a salt; it must be random")
	}
}

func mustExchange(t *testing.T, s Secret) string {
	t.Helper()
	serverFirst, err := exchange(t, s, "", "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	return serverFirst
}

// saltAndIters extracts s= and i= from a server-first message "r=...,s=...,i=...".
func saltAndIters(t *testing.T, serverFirst string) ([]byte, string) {
	t.Helper()
	var salt []byte
	var iters string
	for _, field := range strings.Split(serverFirst, ",") {
		switch {
		case strings.HasPrefix(field, "s="):
			var err error
			if salt, err = base64.StdEncoding.DecodeString(field[2:]); err != nil {
				t.Fatalf("server-first %q: %v", serverFirst, err)
			}
		case strings.HasPrefix(field, "i="):
			iters = field[2:]
		}
	}
	return salt, iters
}

func TestSCRAMVerifierMatchesPostgreSQL(t *testing.T) {
	for _, tc := range []struct{ password, verifier string }{
		{"postgres", pgVerifierPostgres},
		{"pa\u00adss", pgVerifierSoftHyph},
	} {
		creds, err := parseVerifier(tc.verifier)
		if err != nil {
			t.Fatal(err)
		}
		if got := SCRAMVerifier(tc.password, []byte(creds.Salt), creds.Iters); got != tc.verifier {
			t.Errorf("SCRAMVerifier(%q) = %q, want PostgreSQL's %q", tc.password, got, tc.verifier)
		}
	}
}

func TestNewSCRAMNeedsUsableSecret(t *testing.T) {
	for _, tc := range []struct{ stored, want string }{
		{pgMD5V3, `auth: user "alice": password is stored as md5; SCRAM needs a plain password or a SCRAM verifier`},
		{"", `auth: user "alice" has no password`},
	} {
		_, err := mustParse(t, tc.stored).NewSCRAM("alice", nil)
		if err == nil || err.Error() != tc.want {
			t.Errorf("NewSCRAM with %q: err = %v, want %q", tc.stored, err, tc.want)
		}
	}
}

func TestSCRAMBadClientMessages(t *testing.T) {
	for _, msg := range []string{"", "garbage", "p=tls-server-end-point,,n=,r=abc"} {
		x, err := mustParse(t, "s3cret").NewSCRAM("alice", nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := x.Step(msg); err == nil || errors.Is(err, ErrBadProof) {
			t.Errorf("Step(%q): err = %v, want a protocol error", msg, err)
		}
		if x.Done() {
			t.Errorf("Step(%q): Done() after an error", msg)
		}
	}
}

func TestMalformedVerifiers(t *testing.T) {
	key := base64.StdEncoding.EncodeToString(make([]byte, 32))
	short := base64.StdEncoding.EncodeToString(make([]byte, 31))
	for _, tc := range []struct{ stored, want string }{
		{"SCRAM-SHA-256$", `want "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>"`},
		{"SCRAM-SHA-256$4096$" + key + ":" + key, `want "<iterations>:<salt>"`},
		{"SCRAM-SHA-256$x:c2FsdA==$" + key + ":" + key, "iteration count is not a positive integer"},
		{"SCRAM-SHA-256$0:c2FsdA==$" + key + ":" + key, "iteration count is not a positive integer"},
		{"SCRAM-SHA-256$4096:not base64$" + key + ":" + key, "salt is not non-empty base64"},
		{"SCRAM-SHA-256$4096:$" + key + ":" + key, "salt is not non-empty base64"},
		{"SCRAM-SHA-256$4096:c2FsdA==$" + key, `want "<StoredKey>:<ServerKey>"`},
		{"SCRAM-SHA-256$4096:c2FsdA==$" + short + ":" + key, "StoredKey is not 32 bytes of base64"},
		{"SCRAM-SHA-256$4096:c2FsdA==$" + key + ":%%%", "ServerKey is not 32 bytes of base64"},
	} {
		_, err := ParseSecret(tc.stored)
		if err == nil || !strings.HasPrefix(err.Error(), "malformed SCRAM-SHA-256 verifier: ") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseSecret(%q): err = %v, want %q", tc.stored, err, tc.want)
		}
		if _, err := StoredKind(tc.stored); err == nil {
			t.Errorf("StoredKind(%q) accepted a malformed verifier", tc.stored)
		}
	}
}

func TestCheckPlain(t *testing.T) {
	for _, stored := range []string{"s3cret", MD5Password("alice", "s3cret"), SCRAMVerifier("s3cret", []byte("0123456789abcdef"), 4096)} {
		s, err := ParseSecret(stored)
		if err != nil {
			t.Fatal(err)
		}
		if !s.CheckPlain("alice", "s3cret") {
			t.Errorf("%.20s: right password refused", stored)
		}
		if s.CheckPlain("alice", "wrong") {
			t.Errorf("%.20s: wrong password accepted", stored)
		}
	}
	var none Secret
	if none.CheckPlain("alice", "") {
		t.Error("no secret accepted a password")
	}
}
