// Package wire holds the small pieces of the PostgreSQL wire protocol that
// pgmts must understand itself: message framing, the startup packet, and the
// messages the pooler sends of its own. Everything else is forwarded as raw
// bytes (see docs/ARCHITECTURE.md).
package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Request codes that stand in place of a protocol version in the first packet.
const (
	CancelRequestCode = 80877102
	SSLRequestCode    = 80877103
	GSSENCRequestCode = 80877104

	// MaxStartupPacket is PostgreSQL's own limit (MAX_STARTUP_PACKET_LENGTH).
	MaxStartupPacket = 10000
)

// Protocol versions as sent in a StartupMessage.
const (
	Protocol30 = 3 << 16
	Protocol32 = 3<<16 | 2
)

// Header reads a regular message header: the type byte and the whole
// message length including the type byte. ok is false when fewer than five
// bytes are there. A length field below 4 is malformed; callers check it
// with Valid.
func Header(b []byte) (typ byte, size int, ok bool) {
	if len(b) < 5 {
		return 0, 0, false
	}
	return b[0], int(binary.BigEndian.Uint32(b[1:5])) + 1, true
}

// ErrMessageTooLarge and ErrMessageTooSmall describe a bad length field.
var (
	ErrMessageTooLarge = errors.New("message length exceeds max_packet_size")
	ErrMessageTooSmall = errors.New("message length field is below 4")
)

// CheckSize validates a message size from Header against the limit.
func CheckSize(size, max int) error {
	if size < 5 {
		return ErrMessageTooSmall
	}
	if size > max {
		return ErrMessageTooLarge
	}
	return nil
}

// StartupKind tells what the first packet of a connection asks for.
type StartupKind int

const (
	KindStartup StartupKind = iota
	KindSSL
	KindGSSENC
	KindCancel
)

// Startup is a parsed first packet.
type Startup struct {
	Kind StartupKind
	// Protocol is the version the client asked for (KindStartup only).
	Protocol uint32
	// Params are the StartupMessage parameters in the order sent.
	Params []Param
	// CancelPID and CancelKey come with a CancelRequest.
	CancelPID uint32
	CancelKey []byte
}

// Param is one name/value pair of a StartupMessage.
type Param struct{ Name, Value string }

// Get returns a startup parameter's value; a repeated parameter's last
// value wins, as in PostgreSQL.
func (s *Startup) Get(name string) string {
	v := ""
	for _, p := range s.Params {
		if p.Name == name {
			v = p.Value
		}
	}
	return v
}

// StartupError is a startup packet the pooler refuses, with the SQLSTATE
// PostgreSQL itself uses for it.
type StartupError struct {
	Code    string
	Message string
}

func (e *StartupError) Error() string { return e.Message }

// StartupLength reads the length word of a startup packet and checks it
// against PostgreSQL's bounds. ok is false when fewer than 4 bytes are there.
func StartupLength(b []byte) (size int, ok bool, err error) {
	if len(b) < 4 {
		return 0, false, nil
	}
	size = int(binary.BigEndian.Uint32(b))
	if size < 8 || size > MaxStartupPacket {
		return size, true, &StartupError{Code: "08P01", Message: fmt.Sprintf("invalid length of startup packet: %d", size)}
	}
	return size, true, nil
}

// ParseStartup parses a whole startup packet (including its length word).
// Protocol versions other than 3.x are refused as PostgreSQL does.
func ParseStartup(pkt []byte) (*Startup, error) {
	if len(pkt) < 8 {
		return nil, &StartupError{Code: "08P01", Message: "invalid length of startup packet"}
	}
	code := binary.BigEndian.Uint32(pkt[4:8])
	body := pkt[8:]
	switch code {
	case SSLRequestCode:
		return &Startup{Kind: KindSSL}, nil
	case GSSENCRequestCode:
		return &Startup{Kind: KindGSSENC}, nil
	case CancelRequestCode:
		// 3.0 keys are 4 bytes; 3.2 keys up to 256 bytes.
		if len(body) < 8 || len(body) > 4+256 {
			return nil, &StartupError{Code: "08P01", Message: "invalid length of cancel request packet"}
		}
		return &Startup{Kind: KindCancel, CancelPID: binary.BigEndian.Uint32(body), CancelKey: append([]byte(nil), body[4:]...)}, nil
	}
	major := code >> 16
	if major != 3 {
		return nil, &StartupError{Code: "0A000", Message: fmt.Sprintf("unsupported frontend protocol %d.%d: server supports 3.0 to 3.2", major, code&0xffff)}
	}
	// One allocation for the parameters (a name and a value per pair of
	// NULs; capped, as NULs cost a client nothing), of at least 4 (128
	// bytes): an appended slice would leave garbage arrays, and one of 2
	// would be garbage, in the size classes of long-lived per-client
	// objects (32 and 64 bytes).
	s := &Startup{Kind: KindStartup, Protocol: code, Params: make([]Param, 0, max(min(bytes.Count(body, []byte{0})/2, 16), 4))}
	terminated := false
	for len(body) > 0 {
		name, rest, ok := cstring(body)
		if !ok {
			return nil, &StartupError{Code: "08P01", Message: "invalid startup packet layout: expected terminator as last byte"}
		}
		if name == "" {
			if len(rest) != 0 {
				return nil, &StartupError{Code: "08P01", Message: "invalid startup packet layout: expected terminator as last byte"}
			}
			terminated = true
			break
		}
		value, rest2, ok := cstring(rest)
		if !ok {
			return nil, &StartupError{Code: "08P01", Message: fmt.Sprintf("invalid startup packet: no value for parameter %q", name)}
		}
		s.Params = append(s.Params, Param{name, value})
		body = rest2
	}
	if !terminated {
		return nil, &StartupError{Code: "08P01", Message: "invalid startup packet layout: expected terminator as last byte"}
	}
	if s.Get("user") == "" {
		return nil, &StartupError{Code: "28000", Message: "no PostgreSQL user name specified in startup packet"}
	}
	return s, nil
}

func cstring(b []byte) (string, []byte, bool) {
	for i, c := range b {
		if c == 0 {
			return string(b[:i]), b[i+1:], true
		}
	}
	return "", nil, false
}

// Error is an ErrorResponse (or NoticeResponse) the pooler sends itself or
// carries from a backend login failure.
type Error struct {
	Severity string // ERROR, FATAL, ...
	Code     string // SQLSTATE
	Message  string
	Detail   string
	Hint     string
}

func (e *Error) Error() string {
	s := e.Severity + ": " + e.Message + " (SQLSTATE " + e.Code + ")"
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// Fatal builds a FATAL error.
func Fatal(code, format string, args ...any) *Error {
	return &Error{Severity: "FATAL", Code: code, Message: fmt.Sprintf(format, args...)}
}

// Encode appends the ErrorResponse to dst.
func (e *Error) Encode(dst []byte) []byte {
	msg := pgproto3.ErrorResponse{
		Severity:            e.Severity,
		SeverityUnlocalized: e.Severity,
		Code:                e.Code,
		Message:             e.Message,
		Detail:              e.Detail,
		Hint:                e.Hint,
	}
	return Append(dst, &msg)
}

// Append encodes a message the pooler builds itself. The pgproto3 types
// only fail to encode on values we never produce (e.g. oversized fields), so
// a failure here is a programming error.
func Append(dst []byte, m pgproto3.Message) []byte {
	out, err := m.Encode(dst)
	if err != nil {
		panic(fmt.Sprintf("wire: encode %T: %v", m, err))
	}
	return out
}

// ReadyIdle is a ReadyForQuery with status idle ('I'): a session between
// transactions. Read only.
var ReadyIdle = Append(nil, &pgproto3.ReadyForQuery{TxStatus: 'I'})

// AppendParameterStatus appends a ParameterStatus message (as Append
// would, without boxing one).
func AppendParameterStatus(dst []byte, name, value string) []byte {
	dst = binary.BigEndian.AppendUint32(append(dst, 'S'), uint32(4+len(name)+1+len(value)+1))
	dst = append(dst, name...)
	dst = append(dst, 0)
	dst = append(dst, value...)
	return append(dst, 0)
}

// ErrorFields decodes the fields of an ErrorResponse or NoticeResponse body.
func ErrorFields(body []byte) *Error {
	var er pgproto3.ErrorResponse
	if er.Decode(body) != nil {
		return &Error{Severity: "ERROR", Message: "malformed ErrorResponse"}
	}
	sev := er.SeverityUnlocalized
	if sev == "" {
		sev = er.Severity
	}
	return &Error{Severity: sev, Code: er.Code, Message: er.Message, Detail: er.Detail, Hint: er.Hint}
}

// ParameterStatus decodes a ParameterStatus body.
func ParameterStatus(body []byte) (name, value string, ok bool) {
	n, rest, ok := cstring(body)
	if !ok {
		return "", "", false
	}
	v, _, ok := cstring(rest)
	return n, v, ok
}

// StartupOptions splits the value of the "options" startup parameter into
// the -c name=value settings it carries (also "--name=value"), the way
// PostgreSQL's pg_split_opts reads it: spaces separate words, a backslash
// escapes the next character.
func StartupOptions(s string) ([]Param, error) {
	var words []string
	var cur strings.Builder
	inWord, esc := false, false
	for _, r := range s {
		switch {
		case esc:
			cur.WriteRune(r)
			esc, inWord = false, true
		case r == '\\':
			esc, inWord = true, true
		case r == ' ' || r == '\t' || r == '\n' || r == '\r':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	var out []Param
	for i := 0; i < len(words); i++ {
		w := words[i]
		var kv string
		switch {
		case w == "-c":
			if i+1 >= len(words) {
				return nil, fmt.Errorf("options: -c needs name=value")
			}
			i++
			kv = words[i]
		case strings.HasPrefix(w, "-c"):
			kv = w[2:]
		case strings.HasPrefix(w, "--"):
			kv = w[2:]
		default:
			return nil, fmt.Errorf("options: %q is not a -c name=value setting", w)
		}
		name, value, ok := strings.Cut(kv, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("options: %q is not name=value", kv)
		}
		out = append(out, Param{strings.ReplaceAll(name, "-", "_"), value})
	}
	return out, nil
}
