package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Passthrough is what pgmts may log in to PostgreSQL with as a user whose
// plain password it does not have, learnt from that user's client login:
// the SCRAM keys the client proved, or the md5 hash it was checked against.
type Passthrough struct {
	SCRAM *SCRAMKeys
	MD5   string // "md5" + md5hex(password + user)
}

// SCRAMKeys are the keys behind a SCRAM-SHA-256 verifier. ClientKey is
// never stored anywhere: a client's proof reveals it, and it is enough to
// log in to a server holding the same verifier.
type SCRAMKeys struct {
	ClientKey []byte
	ServerKey []byte
}

// MD5Hash returns the stored hash of an md5 secret.
func (s Secret) MD5Hash() (string, bool) { return s.md5, s.kind == KindMD5 }

// recoverClientKey undoes the client's proof: ClientProof = ClientKey XOR
// HMAC(StoredKey, AuthMessage), and H(ClientKey) must be StoredKey.
func recoverClientKey(storedKey []byte, authMessage string, proof []byte) ([]byte, bool) {
	if len(proof) != sha256.Size {
		return nil, false
	}
	key := xor(proof, hmacSHA256(storedKey, authMessage))
	sum := sha256.Sum256(key)
	return key, hmac.Equal(sum[:], storedKey)
}

// clientProof is ClientKey XOR HMAC(H(ClientKey), AuthMessage).
func clientProof(clientKey []byte, authMessage string) []byte {
	storedKey := sha256.Sum256(clientKey)
	return xor(clientKey, hmacSHA256(storedKey[:], authMessage))
}

func xor(a, b []byte) []byte {
	out := make([]byte, len(a))
	for i := range a {
		out[i] = a[i] ^ b[i]
	}
	return out
}

// splitClientFinal cuts a client-final message into the part the
// AuthMessage covers and the proof, which is its last attribute.
func splitClientFinal(msg string) (withoutProof string, proof []byte, ok bool) {
	i := strings.LastIndex(msg, ",p=")
	if i < 0 {
		return "", nil, false
	}
	proof, err := base64.StdEncoding.DecodeString(msg[i+len(",p="):])
	return msg[:i], proof, err == nil
}

// bareClientFirst drops the GS2 header ("n,," or "y,," or "p=...,", then
// an optional authzid and ",") from a client-first message.
func bareClientFirst(msg string) string {
	for range 2 {
		i := strings.IndexByte(msg, ',')
		if i < 0 {
			return ""
		}
		msg = msg[i+1:]
	}
	return msg
}

// SCRAMClient is the client side of SCRAM-SHA-256 with SCRAMKeys instead of
// a password, for logging in to PostgreSQL (passthrough). It does not use
// channel binding.
type SCRAMClient struct {
	keys            SCRAMKeys
	clientFirstBare string
	authMessage     string
}

// NewSCRAMClient starts an exchange. The user name is left empty, as
// libpq does: PostgreSQL takes it from the startup packet.
func NewSCRAMClient(keys SCRAMKeys) *SCRAMClient {
	nonce := make([]byte, 18)
	rand.Read(nonce) // never fails: crypto/rand aborts the program instead
	return &SCRAMClient{keys: keys, clientFirstBare: "n=,r=" + base64.StdEncoding.EncodeToString(nonce)}
}

// First is the client-first message.
func (c *SCRAMClient) First() string { return "n,," + c.clientFirstBare }

// Final answers the server-first message with the client-final message.
func (c *SCRAMClient) Final(serverFirst string) (string, error) {
	attrs := map[string]string{}
	for _, a := range strings.Split(serverFirst, ",") {
		if k, v, ok := strings.Cut(a, "="); ok {
			attrs[k] = v
		}
	}
	clientNonce := strings.TrimPrefix(c.clientFirstBare[strings.Index(c.clientFirstBare, ",r="):], ",r=")
	nonce := attrs["r"]
	if len(nonce) <= len(clientNonce) || !strings.HasPrefix(nonce, clientNonce) {
		return "", errors.New("SCRAM: the server's nonce does not extend ours")
	}
	if _, err := base64.StdEncoding.DecodeString(attrs["s"]); err != nil || attrs["s"] == "" {
		return "", errors.New("SCRAM: the server sent no valid salt")
	}
	if n, err := strconv.Atoi(attrs["i"]); err != nil || n < 1 {
		return "", errors.New("SCRAM: the server sent no valid iteration count")
	}
	// "biws" is base64("n,,"): no channel binding.
	withoutProof := "c=biws,r=" + nonce
	c.authMessage = c.clientFirstBare + "," + serverFirst + "," + withoutProof
	return withoutProof + ",p=" + base64.StdEncoding.EncodeToString(clientProof(c.keys.ClientKey, c.authMessage)), nil
}

// Verify checks the server-final message: the server proves it holds the
// verifier too.
func (c *SCRAMClient) Verify(serverFinal string) error {
	if e, ok := strings.CutPrefix(serverFinal, "e="); ok {
		return fmt.Errorf("SCRAM: the server refused: %s", e)
	}
	v, ok := strings.CutPrefix(serverFinal, "v=")
	sig, err := base64.StdEncoding.DecodeString(v)
	if !ok || err != nil || !hmac.Equal(sig, hmacSHA256(c.keys.ServerKey, c.authMessage)) {
		return errors.New("SCRAM: the server's signature is wrong: it does not hold the same verifier")
	}
	return nil
}
