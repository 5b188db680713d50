package sharedserver

import (
	"encoding/binary"
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
	} {
		if got := mentionsSessionState([]byte(sql)); got != want {
			t.Errorf("mentionsSessionState(%q) = %v, want %v", sql, got, want)
		}
	}
}

// dataRow builds a DataRow body of one-character text values.
func dataRow(values ...string) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(len(values)))
	for _, v := range values {
		b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
		b = append(b, v...)
	}
	return b
}

func TestParsePins(t *testing.T) {
	got, ok := parsePins(dataRow("t", "f", "f", "t", "t", "f"))
	if want := circuits.PinListen | circuits.PinTemp | circuits.PinAdvisory; !ok || got != want {
		t.Fatalf("parsePins = %v, %v; want %v", got, ok, want)
	}
	if got, ok := parsePins(dataRow("f", "f", "f", "f", "f", "f")); !ok || got != 0 {
		t.Fatalf("nothing held: %v, %v", got, ok)
	}
	for _, bad := range [][]byte{nil, dataRow("t", "f"), dataRow("t", "f", "f", "t", "t", "x"), dataRow("t", "f", "f", "t", "t", "tt"),
		dataRow("t", "f", "f", "t", "t", "t")[:10]} {
		if _, ok := parsePins(bad); ok {
			t.Errorf("parsePins(%x) accepted a malformed row", bad)
		}
	}
}

func BenchmarkMentionsSessionState(b *testing.B) {
	sql := []byte("SELECT abalance FROM pgbench_accounts WHERE aid = 4242;")
	for b.Loop() {
		mentionsSessionState(sql)
	}
}
