// Package auth holds the password logic for client authentication: parsing
// stored passwords and checking md5 and SCRAM-SHA-256 answers. The wire
// exchange that carries these messages lives elsewhere.
package auth

import (
	"crypto/md5"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"strings"

	"github.com/xdg-go/scram"
)

// Kind is the form a password is stored in.
type Kind int

// The forms PostgreSQL stores passwords in, plus KindNone for "no password".
const (
	KindNone Kind = iota
	KindPlain
	KindMD5
	KindSCRAM
)

// Salt length and iteration count of the verifier derived for plain
// passwords; they match PostgreSQL's defaults.
const (
	plainSaltLen    = 16
	plainIterations = 4096
)

// Secret is a user's stored password in one of PostgreSQL's three forms,
// parsed once at config load.
type Secret struct {
	kind  Kind
	plain string                  // KindPlain
	md5   string                  // KindMD5: "md5" + 32 hex digits
	scram scram.StoredCredentials // KindSCRAM, and KindPlain (derived)
}

// ParseSecret parses a stored password: "" (KindNone), "md5" + 32 lowercase
// hex digits (KindMD5), a "SCRAM-SHA-256$..." verifier (KindSCRAM) or
// anything else as a plain password. For a plain password it derives a SCRAM
// verifier here, once, so that logins do not pay for PBKDF2.
func ParseSecret(stored string) (Secret, error) {
	s, err := parse(stored)
	if err != nil || s.kind != KindPlain {
		return s, err
	}
	salt := make([]byte, plainSaltLen)
	rand.Read(salt) // never fails: crypto/rand aborts the program instead
	s.scram, err = deriveCredentials(stored, salt, plainIterations)
	return s, err
}

// StoredKind reports which form stored is in and checks that it is well
// formed, without ParseSecret's key derivation; config validation uses it.
func StoredKind(stored string) (Kind, error) {
	s, err := parse(stored)
	return s.kind, err
}

// parse classifies stored the way PostgreSQL does and parses a SCRAM verifier.
func parse(stored string) (Secret, error) {
	switch {
	case stored == "":
		return Secret{}, nil
	case strings.HasPrefix(stored, scramPrefix):
		creds, err := parseVerifier(stored)
		if err != nil {
			return Secret{}, err
		}
		return Secret{kind: KindSCRAM, scram: creds}, nil
	case isMD5(stored):
		return Secret{kind: KindMD5, md5: stored}, nil
	}
	return Secret{kind: KindPlain, plain: stored}, nil
}

// isMD5 matches PostgreSQL's test: "md5" and 32 lowercase hex digits. Any
// other spelling is a plain password there too.
func isMD5(s string) bool {
	if len(s) != 3+2*md5.Size || !strings.HasPrefix(s, "md5") {
		return false
	}
	for _, c := range s[3:] {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Kind reports the form the password is stored in.
func (s Secret) Kind() Kind { return s.kind }

// Plain returns the password if it is stored in plain text, e.g. to log in
// to the backend as the same user.
func (s Secret) Plain() (string, bool) { return s.plain, s.kind == KindPlain }

// CheckMD5 reports whether response is the right answer to an md5 challenge
// with salt: "md5" + md5hex(md5hex(password+user) + salt). It works for plain
// and md5 secrets and is false for SCRAM and None.
func (s Secret) CheckMD5(user string, salt [4]byte, response string) bool {
	var stored string
	switch s.kind {
	case KindPlain:
		stored = MD5Password(user, s.plain)
	case KindMD5:
		stored = s.md5
	default:
		return false
	}
	want := "md5" + md5hex(stored[len("md5"):]+string(salt[:]))
	return subtle.ConstantTimeCompare([]byte(want), []byte(response)) == 1
}

// MD5Password returns "md5" + md5hex(password + user), the form PostgreSQL
// stores md5 passwords in.
func MD5Password(user, password string) string {
	return "md5" + md5hex(password+user)
}

func md5hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

// CheckPlain checks a cleartext password (auth_type "plain") against the
// stored secret in any of its forms.
func (s Secret) CheckPlain(user, password string) bool {
	switch s.kind {
	case KindPlain:
		return subtle.ConstantTimeCompare([]byte(s.plain), []byte(password)) == 1
	case KindMD5:
		return subtle.ConstantTimeCompare([]byte(s.md5), []byte(MD5Password(user, password))) == 1
	case KindSCRAM:
		creds, err := deriveCredentials(password, []byte(s.scram.Salt), s.scram.Iters)
		return err == nil && subtle.ConstantTimeCompare(creds.StoredKey, s.scram.StoredKey) == 1
	}
	return false
}
