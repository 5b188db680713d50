package wire_test

import (
	"encoding/binary"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgmts/pgmts/wire"
)

// encode encodes a pgproto3 message, failing the test on error.
func encode(t testing.TB, m interface {
	Encode([]byte) ([]byte, error)
}) []byte {
	t.Helper()
	b, err := m.Encode(nil)
	if err != nil {
		t.Fatalf("encode %T: %v", m, err)
	}
	return b
}

// rawStartup builds a StartupMessage by hand so that parameter order (and
// layout defects) are under the test's control. body is everything after the
// protocol version.
func rawStartup(proto uint32, body []byte) []byte {
	b := make([]byte, 8, 8+len(body))
	binary.BigEndian.PutUint32(b[0:4], uint32(8+len(body)))
	binary.BigEndian.PutUint32(b[4:8], proto)
	return append(b, body...)
}

// kv renders name/value pairs as NUL-terminated strings plus the final
// terminator.
func kv(pairs ...string) []byte {
	var b []byte
	for _, s := range pairs {
		b = append(b, s...)
		b = append(b, 0)
	}
	return append(b, 0)
}

func startupErr(t *testing.T, err error) *wire.StartupError {
	t.Helper()
	var se *wire.StartupError
	if !errors.As(err, &se) {
		t.Fatalf("error %v (%T) is not a *wire.StartupError", err, err)
	}
	return se
}

func TestHeader(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		typ  byte
		size int
		ok   bool
	}{
		{"empty", nil, 0, 0, false},
		{"four bytes", []byte{'Q', 0, 0, 0}, 0, 0, false},
		{"sync", []byte{'S', 0, 0, 0, 4}, 'S', 5, true},
		{"query with body", []byte{'Q', 0, 0, 0, 9, 'a', 'b', 'c', 'd'}, 'Q', 10, true},
		{"only header of larger msg", []byte{'d', 0, 0, 1, 0}, 'd', 257, true},
		{"zero length", []byte{'X', 0, 0, 0, 0}, 'X', 1, true},
		{"max uint32", []byte{'Q', 0xff, 0xff, 0xff, 0xff}, 'Q', 1 << 32, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			typ, size, ok := wire.Header(tt.in)
			if typ != tt.typ || size != tt.size || ok != tt.ok {
				t.Fatalf("Header(%v) = (%q, %d, %v), want (%q, %d, %v)", tt.in, typ, size, ok, tt.typ, tt.size, tt.ok)
			}
		})
	}
}

func TestHeaderOfEncodedMessages(t *testing.T) {
	msgs := []interface {
		Encode([]byte) ([]byte, error)
	}{
		&pgproto3.Query{String: "select 1"},
		&pgproto3.Sync{},
		&pgproto3.Parse{Name: "s1", Query: "select $1", ParameterOIDs: []uint32{23}},
		&pgproto3.CopyData{Data: make([]byte, 1000)},
	}
	for _, m := range msgs {
		b := encode(t, m)
		typ, size, ok := wire.Header(b)
		if !ok || typ != b[0] || size != len(b) {
			t.Errorf("%T: Header = (%q, %d, %v), want (%q, %d, true)", m, typ, size, ok, b[0], len(b))
		}
		if err := wire.CheckSize(size, 1<<20); err != nil {
			t.Errorf("%T: CheckSize(%d) = %v", m, size, err)
		}
	}
}

func TestCheckSize(t *testing.T) {
	tests := []struct {
		size, max int
		want      error
	}{
		{0, 100, wire.ErrMessageTooSmall},
		{1, 100, wire.ErrMessageTooSmall},
		{4, 100, wire.ErrMessageTooSmall},
		{5, 100, nil},
		{100, 100, nil},
		{101, 100, wire.ErrMessageTooLarge},
		{1 << 32, 1 << 30, wire.ErrMessageTooLarge},
		{5, 5, nil},
	}
	for _, tt := range tests {
		if got := wire.CheckSize(tt.size, tt.max); got != tt.want {
			t.Errorf("CheckSize(%d, %d) = %v, want %v", tt.size, tt.max, got, tt.want)
		}
	}
}

func TestStartupLength(t *testing.T) {
	be := func(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }
	tests := []struct {
		name    string
		in      []byte
		size    int
		ok      bool
		wantErr bool
	}{
		{"empty", nil, 0, false, false},
		{"three bytes", []byte{0, 0, 0}, 0, false, false},
		{"zero", be(0), 0, true, true},
		{"seven", be(7), 7, true, true},
		{"eight", be(8), 8, true, false},
		{"typical", append(be(84), 0, 3, 0, 0), 84, true, false},
		{"max", be(wire.MaxStartupPacket), wire.MaxStartupPacket, true, false},
		{"max+1", be(wire.MaxStartupPacket + 1), wire.MaxStartupPacket + 1, true, true},
		{"huge", be(0xffffffff), 0xffffffff, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			size, ok, err := wire.StartupLength(tt.in)
			if size != tt.size || ok != tt.ok || (err != nil) != tt.wantErr {
				t.Fatalf("StartupLength = (%d, %v, %v), want (%d, %v, err=%v)", size, ok, err, tt.size, tt.ok, tt.wantErr)
			}
			if err != nil {
				if se := startupErr(t, err); se.Code != "08P01" {
					t.Fatalf("code = %q, want 08P01", se.Code)
				}
			}
		})
	}
}

func TestParseStartupRequests(t *testing.T) {
	ssl := encode(t, &pgproto3.SSLRequest{})
	st, err := wire.ParseStartup(ssl)
	if err != nil || st.Kind != wire.KindSSL {
		t.Fatalf("SSLRequest: %+v, %v", st, err)
	}
	if binary.BigEndian.Uint32(ssl[4:]) != wire.SSLRequestCode {
		t.Fatalf("SSLRequestCode does not match pgproto3")
	}

	gss := encode(t, &pgproto3.GSSEncRequest{})
	st, err = wire.ParseStartup(gss)
	if err != nil || st.Kind != wire.KindGSSENC {
		t.Fatalf("GSSEncRequest: %+v, %v", st, err)
	}
	if binary.BigEndian.Uint32(gss[4:]) != wire.GSSENCRequestCode {
		t.Fatalf("GSSENCRequestCode does not match pgproto3")
	}

	for _, key := range [][]byte{
		{1, 2, 3, 4},                        // protocol 3.0 key
		[]byte(strings.Repeat("k", 32)),     // typical 3.2 key
		[]byte(strings.Repeat("\xff", 256)), // longest 3.2 key
	} {
		cr := encode(t, &pgproto3.CancelRequest{ProcessID: 0xdeadbeef, SecretKey: key})
		st, err = wire.ParseStartup(cr)
		if err != nil {
			t.Fatalf("CancelRequest key %d bytes: %v", len(key), err)
		}
		if st.Kind != wire.KindCancel || st.CancelPID != 0xdeadbeef || string(st.CancelKey) != string(key) {
			t.Fatalf("CancelRequest key %d bytes: got %+v", len(key), st)
		}
		// The key must be a copy, not an alias of the packet buffer.
		cr[len(cr)-1] ^= 0xff
		if st.CancelKey[len(st.CancelKey)-1] != key[len(key)-1] {
			t.Fatalf("CancelKey aliases the packet buffer")
		}
	}

	// Cancel requests with a key shorter than 4 or longer than 256 bytes.
	for _, n := range []int{0, 3, 257} {
		pkt := rawStartup(wire.CancelRequestCode, append([]byte{0, 0, 0, 1}, make([]byte, n)...))
		_, err := wire.ParseStartup(pkt)
		if se := startupErr(t, err); se.Code != "08P01" {
			t.Fatalf("cancel key %d bytes: code %q, want 08P01", n, se.Code)
		}
	}
}

func TestParseStartupProtocols(t *testing.T) {
	for _, proto := range []uint32{pgproto3.ProtocolVersion30, pgproto3.ProtocolVersion32} {
		pkt := encode(t, &pgproto3.StartupMessage{ProtocolVersion: proto, Parameters: map[string]string{"user": "alice", "database": "db"}})
		st, err := wire.ParseStartup(pkt)
		if err != nil {
			t.Fatalf("protocol %#x: %v", proto, err)
		}
		if st.Kind != wire.KindStartup || st.Protocol != proto || st.Get("user") != "alice" || st.Get("database") != "db" || len(st.Params) != 2 {
			t.Fatalf("protocol %#x: got %+v", proto, st)
		}
		if st.Get("missing") != "" {
			t.Fatalf("Get of missing param = %q", st.Get("missing"))
		}
	}
	if wire.Protocol30 != pgproto3.ProtocolVersion30 || wire.Protocol32 != pgproto3.ProtocolVersion32 {
		t.Fatalf("protocol constants differ from pgproto3")
	}

	for _, proto := range []uint32{
		2 << 16,         // 2.0
		1 << 16,         // 1.0
		4 << 16,         // 4.0
		0,               // garbage
		0x12345678,      // garbage
		0xffffffff,      // garbage
		1234<<16 | 5600, // near, but not, the request codes
	} {
		pkt := rawStartup(proto, kv("user", "alice"))
		st, err := wire.ParseStartup(pkt)
		if err == nil {
			t.Fatalf("protocol %#x accepted: %+v", proto, st)
		}
		if se := startupErr(t, err); se.Code != "0A000" {
			t.Fatalf("protocol %#x: code %q, want 0A000", proto, se.Code)
		}
	}
}

func TestParseStartupErrors(t *testing.T) {
	tests := []struct {
		name string
		pkt  []byte
		code string
	}{
		{"short", []byte{0, 0, 0, 4}, "08P01"},
		{"seven bytes", []byte{0, 0, 0, 7, 0, 3, 0}, "08P01"},
		{"no params", rawStartup(wire.Protocol30, []byte{0}), "28000"},
		{"empty body", rawStartup(wire.Protocol30, nil), "08P01"}, // no terminator, as PostgreSQL reads it
		{"no user", rawStartup(wire.Protocol30, kv("database", "db")), "28000"},
		{"empty user", rawStartup(wire.Protocol30, kv("user", "", "database", "db")), "28000"},
		{"name not terminated", rawStartup(wire.Protocol30, []byte("user")), "08P01"},
		{"value not terminated", rawStartup(wire.Protocol30, []byte("user\x00bob")), "08P01"},
		{"bytes after terminator", rawStartup(wire.Protocol30, []byte("user\x00bob\x00\x00x")), "08P01"},
		{"two terminators", rawStartup(wire.Protocol30, []byte("user\x00bob\x00\x00\x00")), "08P01"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := wire.ParseStartup(tt.pkt)
			if err == nil {
				t.Fatalf("accepted: %+v", st)
			}
			if se := startupErr(t, err); se.Code != tt.code {
				t.Fatalf("code %q (%s), want %q", se.Code, se.Message, tt.code)
			}
		})
	}
}

// PostgreSQL's ProcessStartupPacket refuses a parameter list that does not
// end with the empty-name terminator ("invalid startup packet layout:
// expected terminator as last byte").
func TestParseStartupMissingTerminator(t *testing.T) {
	pkt := rawStartup(wire.Protocol30, []byte("user\x00bob\x00"))
	st, err := wire.ParseStartup(pkt)
	if err == nil {
		t.Fatalf("accepted: %+v", st)
	}
	if se := startupErr(t, err); se.Code != "08P01" {
		t.Fatalf("code %q, want 08P01", se.Code)
	}
}

// PostgreSQL assigns startup parameters in order, so a repeated name takes
// its last value; Get returns the first.
func TestParseStartupDuplicateUser(t *testing.T) {
	st, err := wire.ParseStartup(rawStartup(wire.Protocol30, kv("user", "alice", "user", "bob")))
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Get("user"); got != "bob" {
		t.Fatalf("user = %q, want bob (last wins, as in PostgreSQL)", got)
	}
}

func TestParseStartupParamsOrder(t *testing.T) {
	body := kv("user", "alice", "application_name", "app", "options", "-c a=b", "database", "db", "empty", "", "z", "last")
	st, err := wire.ParseStartup(rawStartup(wire.Protocol32, body))
	if err != nil {
		t.Fatal(err)
	}
	want := []wire.Param{{"user", "alice"}, {"application_name", "app"}, {"options", "-c a=b"}, {"database", "db"}, {"empty", ""}, {"z", "last"}}
	if !reflect.DeepEqual(st.Params, want) {
		t.Fatalf("Params = %q, want %q", st.Params, want)
	}
	if st.Protocol != wire.Protocol32 || st.Kind != wire.KindStartup {
		t.Fatalf("got %+v", st)
	}
}

func TestStartupErrorMessage(t *testing.T) {
	_, err := wire.ParseStartup(rawStartup(2<<16, kv("user", "a")))
	if err == nil || !strings.Contains(err.Error(), "2.0") {
		t.Fatalf("error %v does not name the protocol 2.0", err)
	}
}

func TestStartupOptions(t *testing.T) {
	tests := []struct {
		in   string
		want []wire.Param
	}{
		{"", nil},
		{"   ", nil},
		{"-c a=b", []wire.Param{{"a", "b"}}},
		{"-ca=b", []wire.Param{{"a", "b"}}},
		{"--a-b=c", []wire.Param{{"a_b", "c"}}},
		{"-c a-b=c", []wire.Param{{"a_b", "c"}}},
		{"-c search_path=x,y", []wire.Param{{"search_path", "x,y"}}},
		{"-c a=", []wire.Param{{"a", ""}}},
		{"-c a=b=c", []wire.Param{{"a", "b=c"}}},
		{"-c a=b-c", []wire.Param{{"a", "b-c"}}},
		{"  -c  a=1 \t -cb=2\n--c=3\r", []wire.Param{{"a", "1"}, {"b", "2"}, {"c", "3"}}},
		{`-c application_name=my\ app`, []wire.Param{{"application_name", "my app"}}},
		{`-c x=a\\b`, []wire.Param{{"x", `a\b`}}},
		{`-c x=\ `, []wire.Param{{"x", " "}}},
		{`-c\ x=1`, []wire.Param{{" x", "1"}}}, // the escaped space belongs to the -c word
		{"-c my.custom=v", []wire.Param{{"my.custom", "v"}}},
		{"-c Ä=ü", []wire.Param{{"Ä", "ü"}}},
	}
	for _, tt := range tests {
		got, err := wire.StartupOptions(tt.in)
		if err != nil {
			t.Errorf("StartupOptions(%q): %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("StartupOptions(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}

	for _, bad := range []string{
		"-c",
		"-c a=b -c",
		"-x",
		"a=b",
		"-c a",
		"-c =b",
		"--a",
		"--=b",
		"-d 5",
		`-c\`,
	} {
		if got, err := wire.StartupOptions(bad); err == nil {
			t.Errorf("StartupOptions(%q) = %q, want error", bad, got)
		}
	}
}

func TestErrorEncodeRoundTrip(t *testing.T) {
	for _, e := range []*wire.Error{
		{Severity: "FATAL", Code: "28P01", Message: `password authentication failed for user "bob"`},
		{Severity: "ERROR", Code: "08P01", Message: "m", Detail: "d", Hint: "h"},
		{Severity: "FATAL", Code: "57P01", Message: "ünïcödé \\ ' \""},
		wire.Fatal("08006", "server connection lost: %v", errors.New("eof")),
	} {
		prefix := []byte("xyz")
		b := e.Encode(prefix)
		if string(b[:3]) != "xyz" {
			t.Fatalf("Encode clobbered dst prefix: %q", b[:3])
		}
		b = b[3:]
		typ, size, ok := wire.Header(b)
		if !ok || typ != 'E' || size != len(b) {
			t.Fatalf("Header = (%q, %d, %v), len %d", typ, size, ok, len(b))
		}
		var er pgproto3.ErrorResponse
		if err := er.Decode(b[5:]); err != nil {
			t.Fatal(err)
		}
		if er.Severity != e.Severity || er.SeverityUnlocalized != e.Severity || er.Code != e.Code ||
			er.Message != e.Message || er.Detail != e.Detail || er.Hint != e.Hint {
			t.Fatalf("decoded %+v from %+v", er, e)
		}
		got := wire.ErrorFields(b[5:])
		if *got != *e {
			t.Fatalf("ErrorFields = %+v, want %+v", got, e)
		}
	}
	if got := wire.Fatal("0A000", "x %d", 5); got.Severity != "FATAL" || got.Code != "0A000" || got.Message != "x 5" {
		t.Fatalf("Fatal = %+v", got)
	}
}

func TestErrorString(t *testing.T) {
	e := &wire.Error{Severity: "FATAL", Code: "28000", Message: "no", Detail: "why"}
	if got, want := e.Error(), "FATAL: no (SQLSTATE 28000): why"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
	e.Detail = ""
	if got, want := e.Error(), "FATAL: no (SQLSTATE 28000)"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
}

func TestErrorFields(t *testing.T) {
	// A localized severity only (pre-9.6 server): fall back to it.
	b := encode(t, &pgproto3.ErrorResponse{Severity: "FATAL", Code: "3D000", Message: "no db"})
	got := wire.ErrorFields(b[5:])
	if want := (wire.Error{Severity: "FATAL", Code: "3D000", Message: "no db"}); *got != want {
		t.Fatalf("ErrorFields = %+v, want %+v", got, want)
	}
	// Localized and unlocalized: the unlocalized wins.
	b = encode(t, &pgproto3.ErrorResponse{Severity: "FATAL-de", SeverityUnlocalized: "FATAL", Code: "3D000", Message: "m", Where: "w", Position: 3})
	if got := wire.ErrorFields(b[5:]); got.Severity != "FATAL" || got.Message != "m" {
		t.Fatalf("ErrorFields = %+v", got)
	}
	// A NoticeResponse has the same body.
	b = encode(t, &pgproto3.NoticeResponse{Severity: "NOTICE", SeverityUnlocalized: "NOTICE", Code: "00000", Message: "hi"})
	if got := wire.ErrorFields(b[5:]); got.Severity != "NOTICE" || got.Code != "00000" || got.Message != "hi" {
		t.Fatalf("ErrorFields(notice) = %+v", got)
	}
	// Malformed bodies.
	for _, body := range [][]byte{nil, []byte("Sfatal"), []byte("SERROR\x00Mmsg")} {
		got := wire.ErrorFields(body)
		if got.Severity != "ERROR" || got.Message != "malformed ErrorResponse" || got.Code != "" {
			t.Fatalf("ErrorFields(%q) = %+v", body, got)
		}
	}
}

func TestParameterStatus(t *testing.T) {
	b := encode(t, &pgproto3.ParameterStatus{Name: "TimeZone", Value: "Europe/Paris"})
	n, v, ok := wire.ParameterStatus(b[5:])
	if !ok || n != "TimeZone" || v != "Europe/Paris" {
		t.Fatalf("ParameterStatus = (%q, %q, %v)", n, v, ok)
	}
	b = encode(t, &pgproto3.ParameterStatus{Name: "application_name", Value: ""})
	if n, v, ok := wire.ParameterStatus(b[5:]); !ok || n != "application_name" || v != "" {
		t.Fatalf("ParameterStatus empty value = (%q, %q, %v)", n, v, ok)
	}
	for _, body := range [][]byte{nil, []byte("name"), []byte("name\x00value"), {0}} {
		if n, v, ok := wire.ParameterStatus(body); ok {
			t.Fatalf("ParameterStatus(%q) = (%q, %q, true), want !ok", body, n, v)
		}
	}
}

func TestAppendPanicsOnUnencodable(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("Append did not panic on an unencodable message")
		}
	}()
	wire.Append(nil, &pgproto3.StartupMessage{ProtocolVersion: wire.Protocol30, Parameters: map[string]string{"user": "a\x00b"}})
}

func TestAppendParameterStatus(t *testing.T) {
	for _, p := range [][2]string{{"TimeZone", "Europe/Paris"}, {"application_name", ""}} {
		want := wire.Append([]byte("x"), &pgproto3.ParameterStatus{Name: p[0], Value: p[1]})
		if got := wire.AppendParameterStatus([]byte("x"), p[0], p[1]); string(got) != string(want) {
			t.Fatalf("AppendParameterStatus(%q, %q) = %q, want %q", p[0], p[1], got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { wire.AppendParameterStatus(make([]byte, 0, 64), "TimeZone", "UTC") }); n > 1 {
		t.Fatalf("%v allocations, want only the caller's buffer", n)
	}
}
