package auth

import (
	"bytes"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"testing"

	"github.com/xdg-go/scram"
)

// clientKeyFor derives ClientKey = HMAC(PBKDF2(password, salt, iters),
// "Client Key") the long way, independently of the code under test.
func clientKeyFor(t testing.TB, password string, salt []byte, iters int) []byte {
	t.Helper()
	salted, err := pbkdf2.Key(sha256.New, password, salt, iters, sha256.Size)
	if err != nil {
		t.Fatal(err)
	}
	return hmacSHA256(salted, "Client Key")
}

// TestRFC7677 checks the proof and ClientKey recovery against the
// SCRAM-SHA-256 example of RFC 7677, section 3.
func TestRFC7677(t *testing.T) {
	salt, _ := base64.StdEncoding.DecodeString("W22ZaJ0SNY7soEsUEjb6gQ==")
	creds, err := deriveCredentials("pencil", salt, 4096)
	if err != nil {
		t.Fatal(err)
	}
	keys := SCRAMKeys{ClientKey: clientKeyFor(t, "pencil", salt, 4096), ServerKey: creds.ServerKey}
	c := &SCRAMClient{keys: keys, clientFirstBare: "n=user,r=rOprNGfwEbeRWgbNEkqO"}
	if c.First() != "n,,n=user,r=rOprNGfwEbeRWgbNEkqO" {
		t.Fatalf("client-first %q", c.First())
	}
	const serverFirst = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
	const clientFinal = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
	got, err := c.Final(serverFirst)
	if err != nil || got != clientFinal {
		t.Fatalf("client-final = %q, %v\nwant %q", got, err, clientFinal)
	}
	if err := c.Verify("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="); err != nil {
		t.Fatal(err)
	}
	if err := c.Verify("v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="); err == nil {
		t.Fatal("a wrong server signature passed")
	}
	if err := c.Verify("e=invalid-proof"); err == nil {
		t.Fatal("a server error passed")
	}

	withoutProof, proof, ok := splitClientFinal(clientFinal)
	authMessage := bareClientFirst(c.First()) + "," + serverFirst + "," + withoutProof
	key, valid := recoverClientKey(creds.StoredKey, authMessage, proof)
	if !ok || !valid || !bytes.Equal(key, keys.ClientKey) {
		t.Fatalf("recovered ClientKey %x (valid %v), want %x", key, valid, keys.ClientKey)
	}
	proof[0] ^= 1
	if _, valid := recoverClientKey(creds.StoredKey, authMessage, proof); valid {
		t.Fatal("a wrong proof gave a valid ClientKey")
	}
}

func TestBareClientFirst(t *testing.T) {
	for msg, want := range map[string]string{
		"n,,n=,r=abc":                      "n=,r=abc",
		"y,,n=u,r=abc":                     "n=u,r=abc",
		"n,a=alice,n=,r=abc":               "n=,r=abc",
		"p=tls-server-end-point,,n=,r=abc": "n=,r=abc",
		"garbage":                          "",
	} {
		if got := bareClientFirst(msg); got != want {
			t.Errorf("bareClientFirst(%q) = %q, want %q", msg, got, want)
		}
	}
}

// TestSCRAMExchangeKeys: a client's login against a stored verifier yields
// its ClientKey and the verifier's ServerKey; a plain password or a wrong
// proof yields nothing.
func TestSCRAMExchangeKeys(t *testing.T) {
	generated := SCRAMVerifier("s3cret", []byte("0123456789abcdef"), 4096)
	for _, tc := range []struct {
		stored, password string
		keys             bool
	}{
		{generated, "s3cret", true},
		{pgVerifierPostgres, "postgres", true},
		{pgVerifierSoftHyph, "pa\u00adss", true},
		{"s3cret", "s3cret", false},
		{generated, "wrong", false},
	} {
		secret := mustParse(t, tc.stored)
		x, err := secret.NewSCRAM("alice", nil)
		if err != nil {
			t.Fatal(err)
		}
		client, _ := scram.SHA256.NewClient("", tc.password, "")
		cc := client.NewConversation()
		msg, _ := cc.Step("")
		msg, err = x.Step(msg)
		if err != nil {
			t.Fatal(err)
		}
		msg, _ = cc.Step(msg)
		_, _ = x.Step(msg)
		got := x.Keys()
		if !tc.keys {
			if got != nil {
				t.Errorf("password %q: keys from a login that must not give any", tc.password)
			}
			continue
		}
		want := clientKeyFor(t, tc.password, []byte(secret.scram.Salt), secret.scram.Iters)
		if tc.password == "pa\u00adss" {
			want = clientKeyFor(t, "pass", []byte(secret.scram.Salt), secret.scram.Iters) // after SASLprep
		}
		if got == nil || !bytes.Equal(got.ClientKey, want) || !bytes.Equal(got.ServerKey, secret.scram.ServerKey) {
			t.Errorf("%s: keys %+v, want ClientKey %x", tc.stored, got, want)
		}
	}
}

// TestSCRAMClientLogsIn: SCRAMClient, holding only the keys, passes
// xdg-go/scram's server check of a PostgreSQL verifier, and checks the
// server's signature; wrong keys fail on either side.
func TestSCRAMClientLogsIn(t *testing.T) {
	secret := mustParse(t, pgVerifierPostgres)
	good := SCRAMKeys{ClientKey: clientKeyFor(t, "postgres", []byte(secret.scram.Salt), secret.scram.Iters), ServerKey: secret.scram.ServerKey}
	if s, c := scramLogin(t, secret, good); s != nil || c != nil {
		t.Fatalf("good keys: server %v, client %v", s, c)
	}
	badClient := good
	badClient.ClientKey = bytes.Clone(good.ClientKey)
	badClient.ClientKey[0] ^= 1
	if s, _ := scramLogin(t, secret, badClient); !errors.Is(s, ErrBadProof) {
		t.Fatalf("wrong ClientKey: server said %v", s)
	}
	badServer := good
	badServer.ServerKey = bytes.Clone(good.ServerKey)
	badServer.ServerKey[0] ^= 1
	if _, c := scramLogin(t, secret, badServer); c == nil {
		t.Fatal("a server signature made with another ServerKey passed")
	}
	if _, err := NewSCRAMClient(good).Final("r=other,s=c2FsdA==,i=4096"); err == nil {
		t.Fatal("a server nonce that does not extend ours passed")
	}
}

// scramLogin runs one SCRAM-SHA-256 login of a SCRAMClient holding keys
// against secret: the server's error, else the client's check of the
// server's signature.
func scramLogin(tb testing.TB, secret Secret, keys SCRAMKeys) (serverErr, clientErr error) {
	x, err := secret.NewSCRAM("alice", nil)
	if err != nil {
		tb.Fatal(err)
	}
	c := NewSCRAMClient(keys)
	serverFirst, err := x.Step(c.First())
	if err != nil {
		tb.Fatal(err)
	}
	clientFinal, err := c.Final(serverFirst)
	if err != nil {
		tb.Fatal(err)
	}
	serverFinal, err := x.Step(clientFinal)
	if err != nil {
		return err, nil
	}
	return nil, c.Verify(serverFinal)
}
