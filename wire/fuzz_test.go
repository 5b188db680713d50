package wire_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgmts/pgmts/wire"
)

// startupSeeds are real first packets plus a few broken ones.
func startupSeeds(t testing.TB) [][]byte {
	seeds := [][]byte{
		encode(t, &pgproto3.SSLRequest{}),
		encode(t, &pgproto3.GSSEncRequest{}),
		encode(t, &pgproto3.CancelRequest{ProcessID: 42, SecretKey: []byte{1, 2, 3, 4}}),
		encode(t, &pgproto3.CancelRequest{ProcessID: 7, SecretKey: bytes.Repeat([]byte{9}, 256)}),
		encode(t, &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": "alice"}}),
		encode(t, &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion32, Parameters: map[string]string{"user": "bob", "database": "db", "options": `-c a=b --x-y=z -cq=r\ s`}}),
		rawStartup(wire.Protocol30, kv("user", "a", "application_name", "psql", "client_encoding", "UTF8")),
		rawStartup(wire.Protocol30, kv("user", "a", "user", "")),
		rawStartup(wire.Protocol30, []byte("user\x00bob\x00")),
		rawStartup(wire.Protocol30, []byte("user\x00bob")),
		rawStartup(2<<16, kv("user", "a")),
		rawStartup(wire.Protocol30, kv("database", "d")),
		{0, 0, 0, 8, 4, 210, 22, 47},
		{},
		{0, 0, 0},
	}
	return seeds
}

func FuzzParseStartup(f *testing.F) {
	for _, s := range startupSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		orig := bytes.Clone(pkt)
		st, err := wire.ParseStartup(pkt)
		if !bytes.Equal(orig, pkt) {
			t.Fatalf("ParseStartup modified its input")
		}
		if err != nil {
			if st != nil {
				t.Fatalf("error %v with non-nil result %+v", err, st)
			}
			var se *wire.StartupError
			if !errors.As(err, &se) {
				t.Fatalf("error %T %v is not a StartupError", err, err)
			}
			switch se.Code {
			case "08P01", "0A000", "28000":
			default:
				t.Fatalf("unexpected SQLSTATE %q", se.Code)
			}
			return
		}
		code := binary.BigEndian.Uint32(pkt[4:8])
		switch st.Kind {
		case wire.KindSSL:
			if code != wire.SSLRequestCode {
				t.Fatalf("KindSSL for code %d", code)
			}
		case wire.KindGSSENC:
			if code != wire.GSSENCRequestCode {
				t.Fatalf("KindGSSENC for code %d", code)
			}
		case wire.KindCancel:
			if code != wire.CancelRequestCode || st.CancelPID != binary.BigEndian.Uint32(pkt[8:12]) || !bytes.Equal(st.CancelKey, pkt[12:]) {
				t.Fatalf("bad cancel parse %+v of %x", st, pkt)
			}
			if n := len(st.CancelKey); n < 4 || n > 256 {
				t.Fatalf("cancel key of %d bytes accepted", n)
			}
		case wire.KindStartup:
			if st.Protocol != code || st.Protocol>>16 != 3 {
				t.Fatalf("protocol %#x accepted (code %#x)", st.Protocol, code)
			}
			if st.Get("user") == "" {
				t.Fatalf("accepted without user: %+v", st)
			}
			// Re-encode: a map keeps one value per name; Get's rule
			// (the last wins, as in PostgreSQL) decides which.
			params := map[string]string{}
			for _, p := range st.Params {
				if p.Name == "" || bytes.IndexByte([]byte(p.Name), 0) >= 0 || bytes.IndexByte([]byte(p.Value), 0) >= 0 {
					t.Fatalf("bad param %q", p)
				}
				params[p.Name] = p.Value
			}
			re, err := (&pgproto3.StartupMessage{ProtocolVersion: st.Protocol, Parameters: params}).Encode(nil)
			if err != nil {
				t.Fatalf("re-encode %+v: %v", params, err)
			}
			st2, err := wire.ParseStartup(re)
			if err != nil {
				t.Fatalf("re-parse of %q: %v", re, err)
			}
			if st2.Kind != wire.KindStartup || st2.Protocol != st.Protocol {
				t.Fatalf("re-parse gave %+v", st2)
			}
			got := map[string]string{}
			for _, p := range st2.Params {
				got[p.Name] = p.Value
			}
			if len(st2.Params) != len(params) || !reflect.DeepEqual(got, params) {
				t.Fatalf("re-parse params %q, want %q", st2.Params, params)
			}
		default:
			t.Fatalf("unknown kind %d", st.Kind)
		}
	})
}

// frame is one message boundary found by a framer.
type frame struct {
	Typ  byte
	Off  int // offset in the whole stream
	Size int // including the type byte
}

// framer splits a client byte stream into messages the way the dispatcher
// does: Header on what is buffered, CheckSize, wait for the whole message,
// keep the incomplete tail for the next read.
type framer struct {
	max      int
	buf      []byte
	consumed int // stream offset of buf[0]
	frames   []frame
	err      error
	errAt    int
}

func (f *framer) feed(p []byte) {
	if f.err != nil {
		return
	}
	f.buf = append(f.buf, p...)
	pos := 0
	for {
		typ, size, ok := wire.Header(f.buf[pos:])
		if !ok {
			break
		}
		if err := wire.CheckSize(size, f.max); err != nil {
			f.err, f.errAt = err, f.consumed+pos
			break
		}
		if size > len(f.buf)-pos {
			break
		}
		f.frames = append(f.frames, frame{typ, f.consumed + pos, size})
		pos += size
	}
	f.buf = f.buf[:copy(f.buf, f.buf[pos:])]
	f.consumed += pos
}

// referenceFrames splits data without the wire package.
func referenceFrames(data []byte, max int) (out []frame, bad bool, badAt int) {
	for off := 0; len(data)-off >= 5; {
		n := int64(binary.BigEndian.Uint32(data[off+1:off+5])) + 1
		if n < 5 || n > int64(max) {
			return out, true, off
		}
		if int64(len(data)-off) < n {
			break
		}
		out = append(out, frame{data[off], off, int(n)})
		off += int(n)
	}
	return out, false, 0
}

func frameSeeds(t testing.TB) [][]byte {
	cat := func(ms ...interface {
		Encode([]byte) ([]byte, error)
	}) []byte {
		var b []byte
		for _, m := range ms {
			b = append(b, encode(t, m)...)
		}
		return b
	}
	return [][]byte{
		cat(&pgproto3.Query{String: "select 1"}),
		cat(&pgproto3.Query{String: "begin"}, &pgproto3.Query{String: "select * from t where a = 'x'"}, &pgproto3.Query{String: "commit"}),
		cat(
			&pgproto3.Parse{Name: "", Query: "select $1::int", ParameterOIDs: []uint32{23}},
			&pgproto3.Bind{ParameterFormatCodes: []int16{0}, Parameters: [][]byte{[]byte("42")}, ResultFormatCodes: []int16{1}},
			&pgproto3.Describe{ObjectType: 'P'},
			&pgproto3.Execute{MaxRows: 0},
			&pgproto3.Sync{},
		),
		cat(
			&pgproto3.Parse{Name: "s1", Query: "insert into t values ($1)"},
			&pgproto3.Bind{PreparedStatement: "s1", Parameters: [][]byte{nil}},
			&pgproto3.Execute{},
			&pgproto3.Bind{PreparedStatement: "s1", Parameters: [][]byte{[]byte("x")}},
			&pgproto3.Execute{},
			&pgproto3.Sync{},
			&pgproto3.Close{ObjectType: 'S', Name: "s1"},
			&pgproto3.Flush{},
			&pgproto3.Sync{},
		),
		cat(
			&pgproto3.Query{String: "copy t from stdin"},
			&pgproto3.CopyData{Data: []byte("1\tone\n")},
			&pgproto3.CopyData{Data: bytes.Repeat([]byte("2\ttwo\n"), 300)},
			&pgproto3.CopyData{Data: nil},
			&pgproto3.CopyDone{},
			&pgproto3.Terminate{},
		),
		append(cat(&pgproto3.Query{String: "select 1"}), 'Q', 0, 0), // incomplete header
		append(cat(&pgproto3.Sync{}), 'Q', 0, 0, 0, 3, 'x'),         // length below 4
		append(cat(&pgproto3.Sync{}), 'd', 0x7f, 0xff, 0xff, 0xff),  // too large
		append(cat(&pgproto3.Sync{}), 'Q', 0, 0, 0, 20, 's', 'e'),   // incomplete body
		{},
	}
}

const fuzzMaxPacket = 1 << 16

func checkFraming(t *testing.T, data, chunks []byte) {
	whole := &framer{max: fuzzMaxPacket}
	whole.feed(data)

	ref, bad, badAt := referenceFrames(data, fuzzMaxPacket)
	if !reflect.DeepEqual(whole.frames, ref) && !(len(whole.frames) == 0 && len(ref) == 0) {
		t.Fatalf("frames %v, reference %v", whole.frames, ref)
	}
	if bad != (whole.err != nil) || (bad && badAt != whole.errAt) {
		t.Fatalf("error %v at %d, reference bad=%v at %d", whole.err, whole.errAt, bad, badAt)
	}
	// Boundaries are contiguous from the start of the stream.
	next := 0
	for _, fr := range whole.frames {
		if fr.Off != next || fr.Size < 5 || fr.Size > fuzzMaxPacket || data[fr.Off] != fr.Typ {
			t.Fatalf("bad frame %+v (expected offset %d)", fr, next)
		}
		next += fr.Size
	}
	if whole.err == nil && whole.consumed+len(whole.buf) != len(data) {
		t.Fatalf("consumed %d + buffered %d != %d", whole.consumed, len(whole.buf), len(data))
	}

	chunked := &framer{max: fuzzMaxPacket}
	for i, off := 0, 0; off < len(data); i++ {
		n := 1
		if len(chunks) > 0 {
			n = int(chunks[i%len(chunks)]) + 1
		}
		n = min(n, len(data)-off)
		chunked.feed(data[off : off+n])
		off += n
	}
	if !reflect.DeepEqual(chunked.frames, whole.frames) && !(len(chunked.frames) == 0 && len(whole.frames) == 0) {
		t.Fatalf("chunked frames %v, whole %v", chunked.frames, whole.frames)
	}
	if chunked.err != whole.err || chunked.errAt != whole.errAt {
		t.Fatalf("chunked error %v at %d, whole %v at %d", chunked.err, chunked.errAt, whole.err, whole.errAt)
	}
	if whole.err == nil && !bytes.Equal(chunked.buf, whole.buf) {
		t.Fatalf("chunked tail %x, whole tail %x", chunked.buf, whole.buf)
	}
}

func FuzzFraming(f *testing.F) {
	for i, s := range frameSeeds(f) {
		f.Add(s, []byte{0})
		f.Add(s, []byte{byte(i), 3, 250, 1})
		f.Add(s, []byte{4})
	}
	f.Fuzz(checkFraming)
}

// TestFramingSeedBoundaries checks the framer against the boundaries the
// encoder produced, for every chunk size up to a whole message.
func TestFramingSeedBoundaries(t *testing.T) {
	msgs := []interface {
		Encode([]byte) ([]byte, error)
	}{
		&pgproto3.Parse{Query: "select $1"},
		&pgproto3.Bind{Parameters: [][]byte{[]byte("1")}},
		&pgproto3.Describe{ObjectType: 'P'},
		&pgproto3.Execute{},
		&pgproto3.Sync{},
		&pgproto3.Query{String: "select 2"},
		&pgproto3.CopyData{Data: bytes.Repeat([]byte{'z'}, 700)},
		&pgproto3.CopyDone{},
	}
	var data []byte
	var want []frame
	for _, m := range msgs {
		b := encode(t, m)
		want = append(want, frame{b[0], len(data), len(b)})
		data = append(data, b...)
	}
	for n := 1; n <= 64; n++ {
		fr := &framer{max: 1 << 20}
		for off := 0; off < len(data); off += n {
			fr.feed(data[off:min(off+n, len(data))])
		}
		if fr.err != nil || !reflect.DeepEqual(fr.frames, want) || len(fr.buf) != 0 {
			t.Fatalf("chunk %d: frames %v err %v tail %d, want %v", n, fr.frames, fr.err, len(fr.buf), want)
		}
	}
	// A limit below the CopyData size refuses it at its offset.
	fr := &framer{max: 100}
	fr.feed(data)
	if fr.err != wire.ErrMessageTooLarge || fr.errAt != want[6].Off || len(fr.frames) != 6 {
		t.Fatalf("max 100: err %v at %d, %d frames", fr.err, fr.errAt, len(fr.frames))
	}
}

func BenchmarkFraming1000(b *testing.B) {
	var data []byte
	for i := range 1000 {
		switch i % 4 {
		case 0:
			data = wire.Append(data, &pgproto3.Bind{Parameters: [][]byte{[]byte("12345")}})
		case 1:
			data = wire.Append(data, &pgproto3.Execute{})
		case 2:
			data = wire.Append(data, &pgproto3.Sync{})
		default:
			data = wire.Append(data, &pgproto3.Query{String: "select * from pgbench_accounts where aid = 1"})
		}
	}
	types := make([]byte, 0, 1000)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		types = types[:0]
		pos := 0
		for {
			typ, size, ok := wire.Header(data[pos:])
			if !ok || wire.CheckSize(size, 1<<20) != nil || size > len(data)-pos {
				break
			}
			types = append(types, typ)
			pos += size
		}
		if len(types) != 1000 || pos != len(data) {
			b.Fatalf("framed %d messages, %d of %d bytes", len(types), pos, len(data))
		}
	}
}
