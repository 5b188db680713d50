package auth

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/xdg-go/scram"
	"github.com/xdg-go/stringprep"
)

const scramPrefix = "SCRAM-SHA-256$"

// ErrBadProof means the client's SCRAM proof was wrong: a wrong password.
var ErrBadProof = errors.New("password authentication failed")

// SCRAMVerifier returns the verifier PostgreSQL would store for password:
// "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>". It panics if
// iterations < 1, or in FIPS 140-only mode if salt is shorter than 16 bytes.
func SCRAMVerifier(password string, salt []byte, iterations int) string {
	creds, err := deriveCredentials(password, salt, iterations)
	if err != nil {
		panic("auth: SCRAMVerifier: " + err.Error())
	}
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("%s%d:%s$%s:%s", scramPrefix, creds.Iters,
		b64([]byte(creds.Salt)), b64(creds.StoredKey), b64(creds.ServerKey))
}

// deriveCredentials computes the SCRAM-SHA-256 keys for password as
// PostgreSQL does: SASLprep first, falling back to the raw password when it
// cannot be prepared (libpq does the same, so both sides agree).
func deriveCredentials(password string, salt []byte, iterations int) (scram.StoredCredentials, error) {
	if iterations < 1 {
		return scram.StoredCredentials{}, fmt.Errorf("iteration count %d is below 1", iterations)
	}
	if prepped, err := stringprep.SASLprep.Prepare(password); err == nil {
		password = prepped
	}
	salted, err := pbkdf2.Key(sha256.New, password, salt, iterations, sha256.Size)
	if err != nil {
		return scram.StoredCredentials{}, err
	}
	clientKey := hmacSHA256(salted, "Client Key")
	storedKey := sha256.Sum256(clientKey)
	return scram.StoredCredentials{
		KeyFactors: scram.KeyFactors{Salt: string(salt), Iters: iterations},
		StoredKey:  storedKey[:],
		ServerKey:  hmacSHA256(salted, "Server Key"),
	}, nil
}

func hmacSHA256(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// parseVerifier parses "SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>".
// Errors never echo the verifier: it is as good as a password against this
// pooler.
func parseVerifier(v string) (scram.StoredCredentials, error) {
	bad := func(format string, args ...any) (scram.StoredCredentials, error) {
		return scram.StoredCredentials{}, fmt.Errorf("malformed SCRAM-SHA-256 verifier: "+format, args...)
	}
	factors, keys, ok := strings.Cut(strings.TrimPrefix(v, scramPrefix), "$")
	if !ok {
		return bad(`want "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>"`)
	}
	iterText, saltText, ok := strings.Cut(factors, ":")
	if !ok {
		return bad(`want "<iterations>:<salt>" after "SCRAM-SHA-256$"`)
	}
	iters, err := strconv.Atoi(iterText)
	if err != nil || iters < 1 {
		return bad("iteration count is not a positive integer")
	}
	salt, err := base64.StdEncoding.DecodeString(saltText)
	if err != nil || len(salt) == 0 {
		return bad("salt is not non-empty base64")
	}
	storedText, serverText, ok := strings.Cut(keys, ":")
	if !ok {
		return bad(`want "<StoredKey>:<ServerKey>" after the salt`)
	}
	storedKey, err := base64.StdEncoding.DecodeString(storedText)
	if err != nil || len(storedKey) != sha256.Size {
		return bad("StoredKey is not %d bytes of base64", sha256.Size)
	}
	serverKey, err := base64.StdEncoding.DecodeString(serverText)
	if err != nil || len(serverKey) != sha256.Size {
		return bad("ServerKey is not %d bytes of base64", sha256.Size)
	}
	return scram.StoredCredentials{
		KeyFactors: scram.KeyFactors{Salt: string(salt), Iters: iters},
		StoredKey:  storedKey,
		ServerKey:  serverKey,
	}, nil
}

// SCRAMExchange is the server side of one SCRAM-SHA-256 authentication.
// It keeps the messages so that a client's proof against a verifier
// yields the SCRAM keys, for passthrough.
type SCRAMExchange struct {
	user  string
	conv  *scram.ServerConversation
	creds scram.StoredCredentials
	// verifier: creds are a stored verifier, not derived by pgmts from a
	// plain password (whose keys PostgreSQL would not accept).
	verifier        bool
	clientFirstBare string
	serverFirst     string
	keys            *SCRAMKeys
}

// NewSCRAM starts a server-side SCRAM-SHA-256 exchange for user, the user
// named in the startup packet. It needs a plain password or a SCRAM
// verifier. binding is the tls-server-end-point data of a TLS connection
// (ServerEndPoint), which offers SCRAM-SHA-256-PLUS; nil without TLS.
func (s Secret) NewSCRAM(user string, binding []byte) (*SCRAMExchange, error) {
	switch s.kind {
	case KindPlain, KindSCRAM:
	case KindMD5:
		return nil, fmt.Errorf("auth: user %q: password is stored as md5; SCRAM needs a plain password or a SCRAM verifier", user)
	default:
		return nil, fmt.Errorf("auth: user %q has no password", user)
	}
	creds := s.scram
	// PostgreSQL clients send an empty SCRAM username ("n=") because the
	// startup packet already named the user, so the lookup ignores it.
	server, err := scram.SHA256.NewServer(func(string) (scram.StoredCredentials, error) {
		return creds, nil
	})
	if err != nil {
		return nil, fmt.Errorf("auth: user %q: %w", user, err)
	}
	x := &SCRAMExchange{user: user, creds: creds, verifier: s.kind == KindSCRAM}
	if binding == nil {
		x.conv = server.NewConversation()
	} else {
		cb := scram.ChannelBinding{Type: scram.ChannelBindingTLSServerEndpoint, Data: binding}
		x.conv = server.NewConversationWithChannelBinding(cb)
	}
	return x, nil
}

// Step takes the client's next message and returns the server's answer: the
// client-first message yields server-first, client-final yields server-final.
// A wrong password gives an error wrapping ErrBadProof.
func (x *SCRAMExchange) Step(clientMessage string) (serverMessage string, err error) {
	msg, err := x.conv.Step(clientMessage)
	switch {
	case msg == scram.ErrInvalidProof:
		return "", fmt.Errorf("%w for user %q", ErrBadProof, x.user)
	case err != nil:
		return "", fmt.Errorf("auth: SCRAM exchange for user %q: %w", x.user, err)
	}
	switch {
	case x.serverFirst == "":
		x.clientFirstBare, x.serverFirst = bareClientFirst(clientMessage), msg
	case x.verifier && x.conv.Valid():
		withoutProof, proof, ok := splitClientFinal(clientMessage)
		authMessage := x.clientFirstBare + "," + x.serverFirst + "," + withoutProof
		if key, valid := recoverClientKey(x.creds.StoredKey, authMessage, proof); ok && valid {
			x.keys = &SCRAMKeys{ClientKey: key, ServerKey: x.creds.ServerKey}
		}
	}
	return msg, nil
}

// Keys returns the SCRAM keys a successful exchange against a stored
// verifier revealed (nil otherwise), to log in to PostgreSQL as the user.
func (x *SCRAMExchange) Keys() *SCRAMKeys { return x.keys }

// Done reports whether the client has proved it knows the password, i.e. the
// last Step returned server-final and authentication succeeded.
func (x *SCRAMExchange) Done() bool { return x.conv.Valid() }
