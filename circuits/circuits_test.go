package circuits_test

import (
	"reflect"
	"testing"
	"unsafe"

	"github.com/pgmts/pgmts/circuits"
)

func TestParseMode(t *testing.T) {
	for s, want := range map[string]circuits.Mode{
		"session":     circuits.Session,
		"transaction": circuits.Transaction,
		"statement":   circuits.Statement,
	} {
		got, err := circuits.ParseMode(s)
		if err != nil || got != want {
			t.Errorf("ParseMode(%q) = %v, %v; want %v", s, got, err, want)
		}
		if got.String() != s {
			t.Errorf("%v.String() = %q, want %q", got, got.String(), s)
		}
	}
	for _, bad := range []string{"", "Session", "TRANSACTION", "stmt", "session ", "pool"} {
		if _, err := circuits.ParseMode(bad); err == nil {
			t.Errorf("ParseMode(%q) succeeded", bad)
		}
	}
	if got := circuits.Mode(7).String(); got != "Mode(7)" {
		t.Errorf("Mode(7).String() = %q", got)
	}
}

// step is one event in a circuit's life: client message types sent, or a
// ReadyForQuery with a status; then the expected state.
type step struct {
	send       string // client message type bytes
	ready      byte   // ReadyForQuery status (0: none)
	idle       bool
	busy       bool
	releasable bool
	violation  bool
}

func runSteps(t *testing.T, mode circuits.Mode, steps []step) {
	t.Helper()
	c := circuits.New(mode, nil)
	if !c.Idle() || c.Busy() || c.TxStatus != circuits.TxIdle {
		t.Fatalf("new circuit not idle: %+v", c)
	}
	if got := c.Releasable(); got != (mode != circuits.Session) {
		t.Fatalf("new %v circuit Releasable = %v", mode, got)
	}
	for i, s := range steps {
		for _, typ := range []byte(s.send) {
			c.FromClient(typ)
		}
		if s.ready != 0 {
			c.Ready(s.ready)
			if c.TxStatus != s.ready {
				t.Fatalf("step %d: TxStatus %q, want %q", i, c.TxStatus, s.ready)
			}
		}
		if c.Idle() != s.idle || c.Busy() != s.busy || c.Releasable() != s.releasable || circuits.Refuses(c.Mode, c.TxStatus) != s.violation {
			t.Fatalf("step %d (%q/%q): idle=%v busy=%v releasable=%v violation=%v; want %v %v %v %v",
				i, s.send, s.ready, c.Idle(), c.Busy(), c.Releasable(), circuits.Refuses(c.Mode, c.TxStatus),
				s.idle, s.busy, s.releasable, s.violation)
		}
	}
}

func TestCircuitSequences(t *testing.T) {
	tests := []struct {
		name  string
		mode  circuits.Mode
		steps []step
	}{
		{"simple query releases at I", circuits.Transaction, []step{
			{send: "Q", busy: true},
			{ready: 'I', idle: true, releasable: true},
		}},
		{"BEGIN keeps until COMMIT", circuits.Transaction, []step{
			{send: "Q", busy: true},
			{ready: 'T'},
			{send: "Q", busy: true},
			{ready: 'T'},
			{send: "Q", busy: true},
			{ready: 'I', idle: true, releasable: true},
		}},
		{"failed transaction keeps", circuits.Transaction, []step{
			{send: "Q", busy: true},
			{ready: 'E'},
			{send: "Q", busy: true},
			{ready: 'I', idle: true, releasable: true},
		}},
		{"extended without Sync keeps", circuits.Transaction, []step{
			{send: "PBE"},
			{send: "H"},
			{send: "S", busy: true},
			{ready: 'I', idle: true, releasable: true},
		}},
		{"Describe and Close open extended", circuits.Transaction, []step{
			{send: "D"},
			{send: "S", busy: true},
			{ready: 'I', idle: true, releasable: true},
			{send: "C"},
			{send: "S", busy: true},
			{ready: 'I', idle: true, releasable: true},
		}},
		{"extended with Sync releases", circuits.Transaction, []step{
			{send: "PBDES", busy: true},
			{ready: 'I', idle: true, releasable: true},
		}},
		{"pipelined two Syncs need two ReadyForQuery", circuits.Transaction, []step{
			{send: "PBES", busy: true},
			{send: "BES", busy: true},
			{ready: 'I', busy: true},
			{ready: 'I', idle: true, releasable: true},
		}},
		{"pipelined simple queries", circuits.Transaction, []step{
			{send: "QQQ", busy: true},
			{ready: 'I', busy: true},
			{ready: 'I', busy: true},
			{ready: 'I', idle: true, releasable: true},
		}},
		{"extended after the last Sync keeps", circuits.Transaction, []step{
			{send: "PBESPB", busy: true},
			{ready: 'I'},
			{send: "ES", busy: true},
			{ready: 'I', idle: true, releasable: true},
		}},
		{"function call", circuits.Transaction, []step{
			{send: "F", busy: true},
			{ready: 'I', idle: true, releasable: true},
		}},
		{"copy data does not count", circuits.Transaction, []step{
			{send: "Q", busy: true},
			{send: "dddc", busy: true},
			{ready: 'I', idle: true, releasable: true},
		}},
		{"unsolicited ReadyForQuery does not go negative", circuits.Transaction, []step{
			{ready: 'I', idle: true, releasable: true},
			{ready: 'I', idle: true, releasable: true},
			{send: "Q", busy: true},
			{ready: 'I', idle: true, releasable: true},
		}},
		{"session mode never releasable", circuits.Session, []step{
			{send: "Q", busy: true},
			{ready: 'I', idle: true},
			{send: "PBES", busy: true},
			{ready: 'I', idle: true},
			{send: "Q", busy: true},
			{ready: 'T'},
		}},
		{"statement mode simple query", circuits.Statement, []step{
			{send: "Q", busy: true},
			{ready: 'I', idle: true, releasable: true},
		}},
		{"statement mode violation on T", circuits.Statement, []step{
			{send: "Q", busy: true},
			{ready: 'T', violation: true},
		}},
		{"statement mode violation on E", circuits.Statement, []step{
			{send: "Q", busy: true},
			{ready: 'E', violation: true},
		}},
		{"no violation in transaction mode", circuits.Transaction, []step{
			{send: "Q", busy: true},
			{ready: 'T'},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { runSteps(t, tt.mode, tt.steps) })
	}
}

func TestNewLowercasesSettings(t *testing.T) {
	in := map[string]string{"TimeZone": "UTC", "application_name": "x"}
	c := circuits.New(circuits.Transaction, in)
	want := map[string]string{"timezone": "UTC", "application_name": "x"}
	if !reflect.DeepEqual(c.Settings(), want) {
		t.Fatalf("Settings = %v, want %v", c.Settings(), want)
	}
	in["other"] = "y"
	if _, ok := c.Settings()["other"]; ok {
		t.Fatal("circuit shares the caller's settings map")
	}
	if c.Mode != circuits.Transaction {
		t.Fatalf("Mode = %v", c.Mode)
	}
}

func TestReported(t *testing.T) {
	c := circuits.New(circuits.Transaction, map[string]string{"application_name": "app"})
	c.SetReported("TimeZone", "UTC")
	c.SetReported("application_name", "app")

	if c.Reported("TimeZone", "UTC", false) {
		t.Fatal("unchanged seeded value reported")
	}
	if !c.Reported("server_version", "17.0", false) {
		t.Fatal("new parameter not reported")
	}
	if c.Reported("server_version", "17.0", false) {
		t.Fatal("same value reported twice")
	}
	// A server-side change that did not come from the client is reported
	// but does not become a client setting.
	if !c.Reported("TimeZone", "Europe/Paris", false) {
		t.Fatal("changed value not reported")
	}
	if _, ok := c.Settings()["timezone"]; ok {
		t.Fatalf("server-made change recorded as a setting: %v", c.Settings())
	}
	// A client SET is reported and recorded (lower-case name).
	if !c.Reported("DateStyle", "ISO, DMY", true) {
		t.Fatal("client change not reported")
	}
	if !c.Reported("application_name", "other", true) {
		t.Fatal("client change not reported")
	}
	want := map[string]string{"application_name": "other", "datestyle": "ISO, DMY"}
	if !reflect.DeepEqual(c.Settings(), want) {
		t.Fatalf("Settings = %v, want %v", c.Settings(), want)
	}
	// Setting back to what the client already saw: recorded, not resent.
	if c.Reported("application_name", "other", true) {
		t.Fatal("unchanged client value reported")
	}
	if !c.Reported("application_name", "app", true) || c.Settings()["application_name"] != "app" {
		t.Fatalf("revert not reported/recorded: %v", c.Settings())
	}
}

func TestSettingsDiff(t *testing.T) {
	tests := []struct {
		name       string
		have, want map[string]string
		set        [][2]string
		reset      []string
	}{
		{"both empty", nil, nil, nil, nil},
		{"equal", map[string]string{"a": "1", "b": "2"}, map[string]string{"b": "2", "a": "1"}, nil, nil},
		{"set new sorted", nil, map[string]string{"z": "1", "a": "2", "m": ""},
			[][2]string{{"a", "2"}, {"m", ""}, {"z", "1"}}, nil},
		{"changed value", map[string]string{"a": "1", "b": "2"}, map[string]string{"a": "1", "b": "3"},
			[][2]string{{"b", "3"}}, nil},
		{"empty vs missing differ", map[string]string{"a": ""}, map[string]string{}, nil, []string{"a"}},
		{"reset sorted", map[string]string{"y": "1", "b": "2", "x.y": "3", "k": "4"}, map[string]string{"k": "4"},
			nil, []string{"b", "x.y", "y"}},
		{"mixed", map[string]string{"a": "1", "c": "3"}, map[string]string{"b": "2", "c": "4"},
			[][2]string{{"b", "2"}, {"c", "4"}}, []string{"a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set, reset := circuits.SettingsDiff(tt.have, tt.want)
			if len(set) != len(tt.set) || (len(set) > 0 && !reflect.DeepEqual(set, tt.set)) {
				t.Errorf("set = %q, want %q", set, tt.set)
			}
			if len(reset) != len(tt.reset) || (len(reset) > 0 && !reflect.DeepEqual(reset, tt.reset)) {
				t.Errorf("reset = %q, want %q", reset, tt.reset)
			}
			if tt.set == nil && tt.reset == nil && circuits.SettingsSQL(set, reset) != "" {
				t.Errorf("SQL for no diff = %q", circuits.SettingsSQL(set, reset))
			}
		})
	}
}

func TestSettingsSQL(t *testing.T) {
	tests := []struct {
		set   [][2]string
		reset []string
		want  string
	}{
		{nil, nil, ""},
		{[][2]string{{"application_name", "app"}}, nil,
			`SELECT pg_catalog.set_config(E'application_name', E'app', false);`},
		{[][2]string{{"search_path", `"$user", public`}}, nil,
			`SELECT pg_catalog.set_config(E'search_path', E'"$user", public', false);`},
		{[][2]string{{"application_name", `it's`}}, nil,
			`SELECT pg_catalog.set_config(E'application_name', E'it''s', false);`},
		{[][2]string{{"application_name", `a\b\'c`}}, nil,
			`SELECT pg_catalog.set_config(E'application_name', E'a\\b\\''c', false);`},
		{[][2]string{{"x", ""}}, nil,
			`SELECT pg_catalog.set_config(E'x', E'', false);`},
		{[][2]string{{"my.opt", "1"}, {"timezone", "UTC"}}, []string{"datestyle", "myapp.user_id", `we"ird`},
			`SELECT pg_catalog.set_config(E'my.opt', E'1', false);` +
				`SELECT pg_catalog.set_config(E'timezone', E'UTC', false);` +
				`RESET "datestyle";RESET "myapp"."user_id";RESET "we""ird";`},
		{nil, []string{"a.b.c"}, `RESET "a"."b"."c";`},
	}
	for _, tt := range tests {
		if got := circuits.SettingsSQL(tt.set, tt.reset); got != tt.want {
			t.Errorf("SettingsSQL(%q, %q)\n got %s\nwant %s", tt.set, tt.reset, got, tt.want)
		}
	}
}

func TestSettingsDiffSQLEndToEnd(t *testing.T) {
	have := map[string]string{"application_name": "old", "myapp.tenant": "7"}
	c := circuits.New(circuits.Transaction, map[string]string{"Application_Name": "new", "TimeZone": "UTC"})
	set, reset := circuits.SettingsDiff(have, c.Settings())
	got := circuits.SettingsSQL(set, reset)
	want := `SELECT pg_catalog.set_config(E'application_name', E'new', false);` +
		`SELECT pg_catalog.set_config(E'timezone', E'UTC', false);` +
		`RESET "myapp"."tenant";`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

// loginParams is a PostgreSQL 15 ParameterStatus set, as a pool hands it
// to every client that logs in.
var loginParams = map[string]string{
	"application_name": "", "client_encoding": "UTF8", "DateStyle": "ISO, MDY",
	"default_transaction_read_only": "off", "in_hot_standby": "off",
	"integer_datetimes": "on", "IntervalStyle": "postgres", "is_superuser": "off",
	"server_encoding": "UTF8", "server_version": "15.18",
	"session_authorization": "app", "standard_conforming_strings": "on", "TimeZone": "UTC",
}

// An idle client's circuit is most of what it costs: one that logged in
// with no settings of its own shares the pool's ParameterStatus set and
// allocates nothing but itself.
func TestLoginCircuitAllocations(t *testing.T) {
	allocs := testing.AllocsPerRun(100, func() {
		c := circuits.New(circuits.Transaction, nil)
		c.SetLoginReported(loginParams)
		for name, value := range loginParams {
			c.SetReported(name, value)
		}
	})
	if allocs > 1 {
		t.Fatalf("a circuit at login makes %v allocations, want 1 (itself)", allocs)
	}
}

func TestReportedOverLoginSet(t *testing.T) {
	c := circuits.New(circuits.Transaction, map[string]string{"application_name": "app"})
	c.SetLoginReported(loginParams)
	c.SetReported("application_name", "app") // the client's own, as login sends it
	if c.Reported("application_name", "app", false) || c.Reported("TimeZone", "UTC", false) {
		t.Fatal("a value the client was told at login reported again")
	}
	if !c.Reported("TimeZone", "Europe/Paris", false) {
		t.Fatal("changed value not reported")
	}
	if !c.Reported("TimeZone", "UTC", false) {
		t.Fatal("a change back to the login value not reported")
	}
	if c.Reported("TimeZone", "UTC", false) {
		t.Fatal("same value reported twice")
	}
	if loginParams["TimeZone"] != "UTC" || loginParams["application_name"] != "" {
		t.Fatal("the shared login set was written to")
	}
}

// A client that never names a statement holds no map for them.
func TestStatementsMadeOnFirstParse(t *testing.T) {
	c := circuits.New(circuits.Transaction, nil)
	if c.Statements() != nil {
		t.Fatal("a new circuit has a statements map")
	}
	c.SetStatement("s1", "P...")
	if got := c.Statements()["s1"]; got != "P..." {
		t.Fatalf("Statements()[s1] = %q", got)
	}
}

// Clients that log in with the same settings share them until one
// changes a setting.
func TestLoginSettingsShared(t *testing.T) {
	a := circuits.New(circuits.Transaction, map[string]string{"DateStyle": "ISO", "application_name": "app"})
	b := circuits.New(circuits.Transaction, map[string]string{"datestyle": "ISO", "application_name": "app"})
	if reflect.ValueOf(a.Settings()).Pointer() != reflect.ValueOf(b.Settings()).Pointer() {
		t.Fatal("circuits with the same login settings hold two maps")
	}
	ka, sa := a.SettingsKey()
	kb, sb := b.SettingsKey()
	if !sa || !sb || ka != kb || ka == "" {
		t.Fatalf("SettingsKey of alike logins: %q %v, %q %v", ka, sa, kb, sb)
	}
	if k, shared := circuits.New(circuits.Transaction, nil).SettingsKey(); k != "" || !shared {
		t.Fatalf("SettingsKey with no settings: %q %v", k, shared)
	}
	if k, _ := circuits.New(circuits.Transaction, map[string]string{"DateStyle": "ISO"}).SettingsKey(); k == ka {
		t.Fatal("different login settings have the same SettingsKey")
	}
	if !a.Reported("application_name", "other", true) {
		t.Fatal("client change not reported")
	}
	if _, shared := a.SettingsKey(); shared {
		t.Fatal("SettingsKey still shared after the client changed a setting")
	}
	if a.Settings()["application_name"] != "other" || b.Settings()["application_name"] != "app" {
		t.Fatalf("a change to one circuit's settings reached another: %v, %v", a.Settings(), b.Settings())
	}
	if c := circuits.New(circuits.Transaction, map[string]string{"DateStyle": "ISO"}); c.Settings()["application_name"] != "" {
		t.Fatalf("different login settings shared: %v", c.Settings())
	}
}

// What a client was told at login comes from its own settings over the
// server's, before and after it changes a setting.
func TestToldAtLogin(t *testing.T) {
	c := circuits.New(circuits.Transaction, map[string]string{"DateStyle": "ISO", "TimeZone": "Europe/Paris"})
	c.SetLoginReported(loginParams) // DateStyle "ISO, MDY", TimeZone "UTC"
	c.SetReported("DateStyle", "ISO")
	c.SetReported("TimeZone", "Europe/Paris")
	c.SetReported("client_encoding", "UTF8")
	if c.Reported("DateStyle", "ISO", false) || c.Reported("TimeZone", "Europe/Paris", false) {
		t.Fatal("a value the client was told at login reported again")
	}
	if !c.Reported("DateStyle", "ISO, MDY", false) {
		t.Fatal("the server's value, which the client was not told, not reported")
	}
	// A SET of its own gives the circuit its own settings; what it was
	// told stays.
	if !c.Reported("application_name", "x", true) {
		t.Fatal("client change not reported")
	}
	if c.Reported("DateStyle", "ISO, MDY", false) || c.Reported("TimeZone", "Europe/Paris", false) {
		t.Fatal("what the client was told changed with its settings")
	}
	want := map[string]string{"datestyle": "ISO", "timezone": "Europe/Paris", "application_name": "x"}
	if !reflect.DeepEqual(c.Settings(), want) {
		t.Fatalf("Settings = %v, want %v", c.Settings(), want)
	}
}

// TestPinned: a pinned circuit is never releasable, in any mode, however
// idle; an unpinned one in the same state is (outside session mode); and
// a circuit stays 24 bytes with the flag.
func TestPinned(t *testing.T) {
	for _, mode := range []circuits.Mode{circuits.Transaction, circuits.Statement} {
		c := circuits.New(mode, nil)
		c.FromClient('Q')
		c.Ready(circuits.TxIdle)
		if !c.Releasable() || c.Pinned() {
			t.Fatalf("%v: unpinned idle circuit: Releasable %v, Pinned %v", mode, c.Releasable(), c.Pinned())
		}
		if added := c.Pin(circuits.PinListen); added != circuits.PinListen {
			t.Fatalf("%v: Pin added %v", mode, added)
		}
		c.FromClient('Q')
		c.Ready(circuits.TxIdle)
		if c.Releasable() || !c.Pinned() || !c.Idle() {
			t.Fatalf("%v: pinned idle circuit: Releasable %v, Pinned %v, Idle %v", mode, c.Releasable(), c.Pinned(), c.Idle())
		}
	}
	if size := unsafe.Sizeof(circuits.Circuit{}); size != 24 {
		t.Fatalf("Circuit is %d bytes, want 24", size)
	}
}

// TestPins: pins add up, SetPins replaces what a backend can be asked
// about (ending PinChecking) but keeps LOAD, and session circuits take
// none.
func TestPins(t *testing.T) {
	c := circuits.New(circuits.Transaction, nil)
	if added := c.Pin(circuits.PinListen | circuits.PinTemp); added != circuits.PinListen|circuits.PinTemp {
		t.Fatalf("Pin added %v", added)
	}
	if added := c.Pin(circuits.PinListen | circuits.PinLoad); added != circuits.PinLoad {
		t.Fatalf("Pin again added %v, want only LOAD", added)
	}
	c.Pin(circuits.PinChecking)
	c.SetPins(circuits.PinCursor)
	if got, want := c.Pins(), circuits.PinCursor|circuits.PinLoad; got != want {
		t.Fatalf("after SetPins: %v, want %v", got, want)
	}
	if got := c.Pins().String(); got != "WITH HOLD cursor, LOAD" {
		t.Fatalf("String = %q", got)
	}
	c = circuits.New(circuits.Transaction, nil)
	c.Pin(circuits.PinChecking)
	c.SetPins(0)
	if c.Pinned() || !c.Releasable() {
		t.Fatalf("a check that found nothing left the circuit pinned: %v", c.Pins())
	}
	s := circuits.New(circuits.Session, nil)
	if s.Pin(circuits.PinListen) != 0 || s.Pinned() {
		t.Fatal("a session circuit was pinned")
	}
}

// TestReplaceSettings: the backend's word replaces the client's settings,
// on a copy: the login set other clients share is left alone, and what
// the client was told at login stays what it was told.
func TestReplaceSettings(t *testing.T) {
	login := map[string]string{"DateStyle": "ISO", "application_name": "app"}
	a, b := circuits.New(circuits.Transaction, login), circuits.New(circuits.Transaction, login)
	a.SetLoginReported(map[string]string{"DateStyle": "Postgres", "TimeZone": "UTC"})
	a.ReplaceSettings(map[string]string{"datestyle": "SQL", "work_mem": "7MB"})
	// application_name is not in the backend's answer: the client RESET
	// it, back to its login value.
	if want := map[string]string{"datestyle": "SQL", "work_mem": "7MB", "application_name": "app"}; !reflect.DeepEqual(a.Settings(), want) {
		t.Fatalf("replaced settings %v, want %v", a.Settings(), want)
	}
	a.ReplaceSettings(map[string]string{"work_mem": "7MB"})
	if want := map[string]string{"datestyle": "ISO", "work_mem": "7MB", "application_name": "app"}; !reflect.DeepEqual(a.Settings(), want) {
		t.Fatalf("after a RESET of DateStyle: %v, want %v", a.Settings(), want)
	}
	if a.Reported("DateStyle", "ISO", false) {
		t.Fatal("the client must not be told DateStyle again: it logged in with ISO")
	}
	c := circuits.New(circuits.Transaction, nil)
	c.ReplaceSettings(map[string]string{"work_mem": "7MB"})
	c.ReplaceSettings(nil)
	if len(c.Settings()) != 0 {
		t.Fatalf("a client with no login settings kept %v after RESET ALL", c.Settings())
	}
	if want := map[string]string{"datestyle": "ISO", "application_name": "app"}; !reflect.DeepEqual(b.Settings(), want) {
		t.Fatalf("another client's settings changed: %v", b.Settings())
	}

}
