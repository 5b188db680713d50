package auth

import "testing"

// BenchmarkSCRAMServerExchange is the server's share of one SCRAM-SHA-256
// login against a stored verifier (scramLogin): NewSCRAM, both Steps and
// the keys kept for passthrough. The client answers from its ClientKey (no
// PBKDF2), so its few HMACs are the only client work in the loop.
func BenchmarkSCRAMServerExchange(b *testing.B) {
	salt := []byte("0123456789abcdef")
	secret, err := ParseSecret(SCRAMVerifier("s3cret", salt, 4096))
	if err != nil {
		b.Fatal(err)
	}
	keys := SCRAMKeys{ClientKey: clientKeyFor(b, "s3cret", salt, 4096), ServerKey: secret.scram.ServerKey}
	b.ReportAllocs()
	for b.Loop() {
		if s, c := scramLogin(b, secret, keys); s != nil || c != nil {
			b.Fatalf("exchange failed: server %v, client %v", s, c)
		}
	}
}
