package admin

import (
	"bytes"
	"log/slog"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/pgmts/pgmts/config"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		sql  string
		want command
		code string
	}{
		{"SHOW POOLS", command{verb: "SHOW", arg: "POOLS"}, ""},
		{"  show pools ;; ", command{verb: "SHOW", arg: "POOLS"}, ""},
		{"Show Shared_Servers;", command{verb: "SHOW", arg: "SHARED_SERVERS"}, ""},
		{"show help", command{verb: "SHOW", arg: "HELP"}, ""},
		{"SHOW client_encoding", command{verb: "SHOW", arg: "CLIENT_ENCODING"}, ""},
		{"", command{}, ""},
		{" ; ", command{}, ""},
		{"pause", command{verb: "PAUSE"}, ""},
		{`PAUSE "My DB"`, command{verb: "PAUSE", arg: "My DB"}, ""},
		{"kill bench", command{verb: "KILL", arg: "bench"}, ""},
		{"shutdown wait_for_clients", command{verb: "SHUTDOWN", arg: "wait_for_clients"}, ""},
		{"SET max_shared_servers = 5", command{verb: "SET", key: "max_shared_servers", value: "5"}, ""},
		{"set log_level to 'debug'", command{verb: "SET", key: "log_level", value: "debug"}, ""},
		{"set x='it''s'", command{verb: "SET", key: "x", value: "it's"}, ""},
		{"SET pool.mode = session", command{verb: "SET", key: "pool.mode", value: "session"}, ""},
		{"SET Bench.Max_Shared_Servers = 4", command{verb: "SET", db: "bench", key: "max_shared_servers", value: "4"}, ""},
		{`SET "my.DB".shared_servers TO 2`, command{verb: "SET", db: "my.DB", key: "shared_servers", value: "2"}, ""},
		{`SET "pool".mode = session`, command{verb: "SET", db: "pool", key: "mode", value: "session"}, ""},
		{"SET a.b.c = 1", command{}, "42601"},
		{"SHOW", command{}, "42601"},
		{"SHOW POOLS now", command{}, "42601"},
		{"SHOW NOTHING", command{}, "42601"},
		{"SELECT 1", command{}, "42601"},
		{"KILL", command{}, "42601"},
		{"RELOAD now", command{}, "42601"},
		{"PAUSE a b", command{}, "42601"},
		{"SHUTDOWN now", command{}, "42601"},
		{"SET x", command{}, "42601"},
		{`PAUSE "unterminated`, command{}, "42601"},
		{`"SHOW" POOLS`, command{}, "42601"},
	} {
		got, err := parse(tc.sql)
		switch {
		case tc.code != "" && (err == nil || err.Code != tc.code || err.Severity != "ERROR"):
			t.Errorf("parse(%q) error = %v, want ERROR %s", tc.sql, err, tc.code)
		case tc.code == "" && err != nil:
			t.Errorf("parse(%q): %v", tc.sql, err)
		case tc.code == "" && got != tc.want:
			t.Errorf("parse(%q) = %+v, want %+v", tc.sql, got, tc.want)
		}
	}
}

func TestExecuteAccess(t *testing.T) {
	c := &Console{log: slog.New(slog.DiscardHandler)}
	c.current.Store(&config.Config{})
	for _, tc := range []struct {
		sql   string
		admin bool
		code  string
	}{
		{"PAUSE", false, "42501"},
		{"SET shared_servers = 2", false, "42501"},
		{"KILL_CLIENT 7", true, "42704"},
		{"KILL_CLIENT C7", true, "22023"},
		{"KILL pgbouncer", true, "55000"},
		{"DISABLE nosuchdb", true, "3D000"},
		{"SHUTDOWN", true, "0A000"},
		{"SET pgmts.max_shared_servers = 2", true, "22023"},
		{"SET nosuchdb.max_shared_servers = 2", true, "22023"},
		{"SET shared_servers = many", true, "22023"},
		{"SET listen = '127.0.0.1:1'", true, "22023"},
		{"PAUSE nosuchdb", true, "3D000"},
		{"SET extra_float_digits = 3", false, ""},
		{"SHOW HELP", false, ""},
	} {
		cmd, werr := parse(tc.sql)
		if werr != nil {
			t.Fatal(werr)
		}
		res, werr := c.execute(cmd, tc.admin)
		switch {
		case tc.code == "" && (werr != nil || res.notice == nil):
			t.Errorf("%s: %v %+v", tc.sql, werr, res)
		case tc.code != "" && (werr == nil || werr.Code != tc.code):
			t.Errorf("%s (admin %v): %v, want %s", tc.sql, tc.admin, werr, tc.code)
		}
	}
}

// TestEncode decodes rows with pgx's own codecs, in text and binary.
func TestEncode(t *testing.T) {
	m := pgtype.NewMap()
	cols := []column{{"name", typeText}, {"n4", typeInt4}, {"n8", typeInt8}, {"num", typeNumeric}, {"null", typeText}}
	for _, v := range []int64{0, 7, 10000, 123456789012, -42} {
		r := row{"x", v, v, v, nil}
		for _, formats := range [][]int16{nil, {1}, {0, 1, 1, 1, 0}} {
			var dr pgproto3.DataRow
			out := dataRow(nil, cols, r, formats)
			if err := dr.Decode(out[5:]); err != nil {
				t.Fatal(err)
			}
			if dr.Values[4] != nil || !bytes.Equal(dr.Values[0], []byte("x")) {
				t.Errorf("values %q", dr.Values)
			}
			for i, oid := range []uint32{pgtype.Int4OID, pgtype.Int8OID, pgtype.NumericOID} {
				if oid == pgtype.Int4OID && int64(int32(v)) != v {
					continue
				}
				var got int64
				if err := m.Scan(oid, formatFor(formats, i+1), dr.Values[i+1], &got); err != nil || got != v {
					t.Errorf("column %s formats %v: %d, %v; want %d", cols[i+1].name, formats, got, err, v)
				}
			}
		}
	}
	var rd pgproto3.RowDescription
	if err := rd.Decode(rowDescription(nil, cols, []int16{1})[5:]); err != nil {
		t.Fatal(err)
	}
	if f := rd.Fields[3]; string(f.Name) != "num" || f.DataTypeOID != pgtype.NumericOID || f.Format != 1 {
		t.Errorf("field %+v", f)
	}
}

// TestHandle runs a batch as psql and pgx send them and counts the
// ReadyForQuery messages the circuit waits for.
func TestHandle(t *testing.T) {
	c := &Console{}
	s := newSession(false)
	var batch []byte
	for _, m := range []pgproto3.FrontendMessage{
		&pgproto3.Query{String: "SHOW HELP"},
		&pgproto3.Parse{Name: "s1", Query: "SHOW VERSION"},
		&pgproto3.Describe{ObjectType: 'S', Name: "s1"},
		&pgproto3.Sync{},
		&pgproto3.Bind{PreparedStatement: "nope"},
		&pgproto3.Execute{},
		&pgproto3.Sync{},
		&pgproto3.Query{String: "PAUSE"},
	} {
		var err error
		if batch, err = m.Encode(batch); err != nil {
			t.Fatal(err)
		}
	}
	out, readies := c.handle(s, batch)
	if readies != 4 {
		t.Errorf("%d ReadyForQuery, want 4", readies)
	}
	var types []byte
	for len(out) > 0 {
		types = append(types, out[0])
		size := int(out[1])<<24 | int(out[2])<<16 | int(out[3])<<8 | int(out[4])
		out = out[size+1:]
	}
	// Notice+Complete+Ready, ParseComplete+ParameterDescription+RowDescription+Ready,
	// Error (Execute skipped)+Ready, Error+Ready.
	if want := "NCZ1tTZEZEZ"; string(types) != want {
		t.Errorf("replies %q, want %q", types, want)
	}
	if s.failed {
		t.Error("Sync did not clear the error state")
	}
}
