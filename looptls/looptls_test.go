package looptls

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"testing"
	"time"
)

// inbound is a loop connection's inbound bytes.
type inbound []byte

func (b *inbound) Peek(int) ([]byte, error) { return *b, nil }

func (b *inbound) Discard(n int) (int, error) {
	*b = (*b)[n:]
	return n, nil
}

// selfSigned returns a server certificate for 127.0.0.1.
func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "pgmts test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestTransportOnTheLoop drives a server session the way a loop does
// after the handshake: Session.Decrypt offers the bytes as they come, here
// one at a time. crypto/tls must keep what it
// read of a partial record and carry on at the next read, decrypt the
// record once it is whole, write through the loop's connection, and
// report close_notify as io.EOF. A crypto/tls that made the temporary
// error stick would fail here, not in production.
func TestTransportOnTheLoop(t *testing.T) {
	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(version), func(t *testing.T) { testTLSOnTheLoop(t, version) })
	}
}

func testTLSOnTheLoop(t *testing.T, version uint16) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	clientSide, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer clientSide.Close()
	serverSide, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer serverSide.Close()

	// The handshake, on the socket, as serve runs it.
	tr := NewTransport(serverSide, nil)
	server := tls.Server(tr, &tls.Config{Certificates: []tls.Certificate{selfSigned(t)},
		MinVersion: version, MaxVersion: version})
	client := tls.Client(clientSide, &tls.Config{InsecureSkipVerify: true, MinVersion: version, MaxVersion: version})
	handshook := make(chan error, 1)
	go func() { handshook <- server.Handshake() }()
	if err := client.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-handshook; err != nil {
		t.Fatal(err)
	}

	// On the loop: what the server writes goes to loopOut, and what the
	// client sends is read off the socket and offered byte by byte.
	var loopOut bytes.Buffer
	tr.OnLoop(&loopOut)
	ciphertext := make(chan []byte, 16)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := serverSide.Read(buf)
			if n > 0 {
				ciphertext <- append([]byte(nil), buf[:n]...)
			}
			if err != nil {
				close(ciphertext)
				return
			}
		}
	}()
	query := bytes.Repeat([]byte("SELECT 1;"), 300) // more than one small read
	if _, err := client.Write(query); err != nil {
		t.Fatal(err)
	}
	sess := NewSession(server, tr, 64)
	var from inbound
	for len(sess.Plain()) < len(query) {
		chunk, ok := <-ciphertext
		if !ok {
			t.Fatalf("the client's bytes ended after %d of %d decrypted", len(sess.Plain()), len(query))
		}
		for _, b := range chunk {
			from = append(from, b)
			if err := sess.Decrypt(&from); err != nil || len(from) != 0 {
				t.Fatalf("Decrypt after %d bytes: %d left, %v", len(sess.Plain()), len(from), err)
			}
		}
	}
	got := append([]byte(nil), sess.Plain()...)
	sess.Used(len(got))
	if len(sess.Plain()) != 0 || cap(sess.Plain()) != 0 {
		t.Fatalf("after Used: %d bytes, a buffer of %d kept (keep 64)", len(sess.Plain()), cap(sess.Plain()))
	}
	if !bytes.Equal(got, query) {
		t.Fatalf("decrypted %d bytes that differ from the %d sent", len(got), len(query))
	}

	// A reply written on the loop reaches the client.
	if _, err := sess.Write([]byte("reply")); err != nil {
		t.Fatal(err)
	}
	if _, err := serverSide.Write(loopOut.Bytes()); err != nil {
		t.Fatal(err)
	}
	loopOut.Reset()
	reply := make([]byte, 5)
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(client, reply); err != nil || string(reply) != "reply" {
		t.Fatalf("client read %q, %v", reply, err)
	}

	// close_notify from the client ends the session with io.EOF.
	if err := client.Close(); err != nil {
		t.Fatal(err)
	}
	var last error
	for chunk := range ciphertext {
		from = append(from, chunk...)
		if last = sess.Decrypt(&from); last != nil {
			break
		}
	}
	if !errors.Is(last, io.EOF) {
		t.Fatalf("after close_notify: %v, want io.EOF", last)
	}
}
