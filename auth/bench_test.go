package auth

import "testing"

// BenchmarkSCRAMServerExchange is the server's share of one SCRAM-SHA-256
// login against a stored verifier: NewSCRAM, both Steps and the keys kept
// for passthrough. The client answers from its ClientKey (no PBKDF2), so
// its few HMACs are the only client work in the loop.
func BenchmarkSCRAMServerExchange(b *testing.B) {
	salt := []byte("0123456789abcdef")
	secret, err := ParseSecret(SCRAMVerifier("s3cret", salt, 4096))
	if err != nil {
		b.Fatal(err)
	}
	keys := SCRAMKeys{ClientKey: clientKeyFor(b, "s3cret", salt, 4096), ServerKey: secret.scram.ServerKey}
	b.ReportAllocs()
	for b.Loop() {
		c := NewSCRAMClient(keys)
		x, err := secret.NewSCRAM("alice", nil)
		if err != nil {
			b.Fatal(err)
		}
		serverFirst, err := x.Step(c.First())
		if err != nil {
			b.Fatal(err)
		}
		final, err := c.Final(serverFirst)
		if err != nil {
			b.Fatal(err)
		}
		serverFinal, err := x.Step(final)
		if err != nil || !x.Done() || x.Keys() == nil {
			b.Fatalf("exchange failed: %v", err)
		}
		if err := c.Verify(serverFinal); err != nil {
			b.Fatal(err)
		}
	}
}
