package dispatcher

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

// TestTLSTransportOnTheLoop drives a server session the way the loop does
// after the handshake: its transport offers bytes as they come, here one
// at a time, and says when they are used up. crypto/tls must keep what it
// read of a partial record and carry on at the next read, decrypt the
// record once it is whole, write through the loop's connection, and
// report close_notify as io.EOF. A crypto/tls that made the temporary
// error stick would fail here, not in production.
func TestTLSTransportOnTheLoop(t *testing.T) {
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
	tr := &tlsTransport{Conn: serverSide}
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
	tr.out = &loopOut
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
	var got []byte
	buf := make([]byte, 512)
	for len(got) < len(query) {
		chunk, ok := <-ciphertext
		if !ok {
			t.Fatalf("the client's bytes ended after %d of %d decrypted", len(got), len(query))
		}
		for _, b := range chunk {
			tr.in = []byte{b}
			for {
				n, err := server.Read(buf)
				got = append(got, buf[:n]...)
				if err == errNoMoreBytes {
					break
				}
				if err != nil {
					t.Fatalf("read after %d bytes: %v", len(got), err)
				}
			}
		}
	}
	if !bytes.Equal(got, query) {
		t.Fatalf("decrypted %d bytes that differ from the %d sent", len(got), len(query))
	}

	// A reply written on the loop reaches the client.
	if _, err := server.Write([]byte("reply")); err != nil {
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
		tr.in = chunk
		if _, last = server.Read(buf); last != errNoMoreBytes {
			break
		}
	}
	if !errors.Is(last, io.EOF) {
		t.Fatalf("after close_notify: %v, want io.EOF", last)
	}
}
