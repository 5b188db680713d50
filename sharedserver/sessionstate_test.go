package sharedserver

import (
	"encoding/binary"
	"reflect"
	"strings"
	"testing"

	"github.com/pgmts/pgmts/circuits"
)

func TestMentionsSessionState(t *testing.T) {
	for sql, want := range map[string]bool{
		"CREATE TEMP TABLE t AS SELECT 1":                      true,
		"create temporary table t (x int)":                     true,
		"SELECT 1 INTO TEMP t":                                 true,
		"select pg_advisory_lock(42)":                          true,
		"SELECT PG_TRY_ADVISORY_LOCK(1)":                       true,
		"SELECT pg_advisory_unlock_all()":                      true,
		"SELECT abalance FROM pgbench_accounts WHERE aid = $1": false,
		"UPDATE t SET x = 1":                                   false,
		"tem":                                                  false,
		"advisor":                                              false,
		"":                                                     false,
		"SELECT temperature FROM weather":                      false,
		"SELECT attempt FROM jobs":                             false,
		"SELECT my_temp FROM x":                                false,
		"SELECT temp_c FROM x":                                 false,
		"SELECT temp, x FROM readings":                         true,
		"CREATE TABLE pg_temp.t (x int)":                       true,
		"SELECT * INTO TEMPORARY t FROM x":                     true,
		"DECLARE c CURSOR WITH HOLD FOR SELECT 1":              true,
		"declare c cursor with\n hold for select 1":            true,
		"DECLARE c CURSOR WITHOUT HOLD FOR SELECT 1":           false,
		"DECLARE c CURSOR without\thold FOR SELECT 1":          false,
		"DECLARE c CURSOR FOR SELECT 1":                        false,
		"SELECT threshold, holder FROM t":                      false,
		"hold":                                                 true,
	} {
		if got := mentionsSessionState([]byte(sql)); got != want {
			t.Errorf("mentionsSessionState(%q) = %v, want %v", sql, got, want)
		}
	}
}

// TestMentionsSessionStateEveryOffset puts each word looked for (and near
// misses) at every offset of texts of every length up to 40, so it lands
// at each position of the eight-position scan, across a boundary and in
// the tail, and compares the scan with one of every position.
func TestMentionsSessionStateEveryOffset(t *testing.T) {
	words := []string{"TEMP", "temporary", "pg_temp", "Hold", "ADVISORY", "with hold", "without hold",
		"tem", "hol", "advisor", "temps", "_temp", "t", "te", "ho", "ad"}
	for _, w := range words {
		for n := len(w); n <= 40; n++ {
			for off := 0; off+len(w) <= n; off++ {
				sql := []byte(strings.Repeat(" ", off) + w + strings.Repeat(" ", n-off-len(w)))
				if got, want := mentionsSessionState(sql), anyStateWordAt(sql); got != want {
					t.Fatalf("mentionsSessionState(%q) = %v, want %v", sql, got, want)
				}
			}
		}
	}
}

func FuzzMentionsSessionState(f *testing.F) {
	f.Add([]byte("SELECT abalance FROM pgbench_accounts WHERE aid = $1"))
	f.Add([]byte("create temporary table t (x int)"))
	f.Add([]byte("DECLARE c CURSOR WITHOUT HOLD FOR SELECT pg_advisory_lock(1)"))
	f.Fuzz(func(t *testing.T, sql []byte) {
		if got, want := mentionsSessionState(sql), anyStateWordAt(sql); got != want {
			t.Fatalf("mentionsSessionState(%q) = %v, want %v", sql, got, want)
		}
	})
}

// dataRow builds a DataRow message of text values.
func dataRow(values ...string) []byte {
	b := []byte{'D', 0, 0, 0, 0}
	b = binary.BigEndian.AppendUint16(b, uint16(len(values)))
	for _, v := range values {
		b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
		b = append(b, v...)
	}
	binary.BigEndian.PutUint32(b[1:], uint32(len(b)-1))
	return b
}

func TestParsePins(t *testing.T) {
	got, ok := parsePins(dataRow("t", "f", "f", "t", "t"))
	if want := circuits.PinListen | circuits.PinTemp | circuits.PinAdvisory; !ok || got != want {
		t.Fatalf("parsePins = %v, %v; want %v", got, ok, want)
	}
	if got, ok := parsePins(dataRow("f", "f", "f", "f", "f")); !ok || got != 0 {
		t.Fatalf("nothing held: %v, %v", got, ok)
	}
	row := dataRow("t", "f", "f", "t", "t")
	for _, bad := range [][]byte{nil, dataRow("t", "f"), dataRow("t", "f", "f", "t", "x"), dataRow("t", "f", "f", "t", "tt"),
		row[:10], append(append([]byte{}, row...), row...)} {
		if _, ok := parsePins(bad); ok {
			t.Errorf("parsePins(%x) accepted a malformed answer", bad)
		}
	}
}

func TestParseSettings(t *testing.T) {
	rows := append(dataRow("work_mem", "7MB"), dataRow("search_path", `"$user", public`)...)
	got, ok := parseSettings(rows)
	if want := map[string]string{"work_mem": "7MB", "search_path": `"$user", public`}; !ok || !reflect.DeepEqual(got, want) {
		t.Fatalf("parseSettings = %v, %v; want %v", got, ok, want)
	}
	if got, ok := parseSettings(nil); !ok || len(got) != 0 {
		t.Fatalf("no settings: %v, %v", got, ok)
	}
	null := []byte{'D', 0, 0, 0, 10, 0, 1, 0xff, 0xff, 0xff, 0xff}
	for _, bad := range [][]byte{rows[:len(rows)-1], null, {'C', 0, 0, 0, 4}} {
		if _, ok := parseSettings(bad); ok {
			t.Errorf("parseSettings(%x) accepted a malformed answer", bad)
		}
	}
}

func BenchmarkMentionsSessionState(b *testing.B) {
	sql := []byte("SELECT abalance FROM pgbench_accounts WHERE aid = 4242;")
	for b.Loop() {
		mentionsSessionState(sql)
	}
}
