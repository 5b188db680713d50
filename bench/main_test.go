package main

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseFlags(t *testing.T) {
	o, err := parseFlags([]string{"-smoke", "-T", "3", "-targets", "pgmts,direct"})
	if err != nil {
		t.Fatal(err)
	}
	// The smoke preset, except where a flag was given.
	o2, err := parseFlags([]string{"-smoke"})
	if err != nil || o2.seconds != 2 {
		t.Fatalf("smoke: -T %d, %v", o2.seconds, err)
	}
	if o.seconds != 3 || o.reps != 1 || o.oneReps != 1 || o.scale != 1 || !reflect.DeepEqual(o.clients, []int{10}) ||
		!reflect.DeepEqual(o.targets, []string{"pgmts", "direct"}) || o.idleClients != 50 {
		t.Fatalf("smoke options %+v", o)
	}
	o, err = parseFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	if o.seconds != 3 || o.reps != 3 || !reflect.DeepEqual(o.clients, []int{1, 10, 50, 200, 1000}) || o.idleClients != 10000 || len(o.scenarios) != 7 || o.pacedRate != 200 {
		t.Fatalf("default options %+v", o)
	}
	if o.repsFor(point{Scenario: scSelect, Clients: 1}) != 7 || o.repsFor(point{Scenario: scSelect, Clients: 10}) != 3 ||
		o.repsFor(point{Scenario: scStorm, Clients: 1}) != 3 {
		t.Errorf("repetitions: one-client select %d, 10-client select %d, one-client storm %d; want 7, 3, 3",
			o.repsFor(point{Scenario: scSelect, Clients: 1}), o.repsFor(point{Scenario: scSelect, Clients: 10}), o.repsFor(point{Scenario: scStorm, Clients: 1}))
	}
	for _, bad := range [][]string{
		{"-clients", "1,x"}, {"-clients", "0"}, {"-protocols", "simpel"}, {"-scenarios", "select,tcpb"},
		{"-targets", "odyssey"}, {"-reps", "0"}, {"-one-client-reps", "0"}, {"extra"},
	} {
		if _, err := parseFlags(bad); err == nil {
			t.Errorf("parseFlags(%q): want an error", bad)
		}
	}
}

func TestQuoteArgs(t *testing.T) {
	got := quoteArgs([]string{"bin/pgmtsbench", "-dsn", "host=/tmp port=5432", "-cpuprofile", "select/simple/50", "it's"})
	want := []string{"bin/pgmtsbench", "-dsn", "'host=/tmp port=5432'", "-cpuprofile", "select/simple/50", `'it'\''s'`}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("quoteArgs = %q", got)
	}
}

func TestPoolerConfigs(t *testing.T) {
	s := poolerSettings{pg: &postgres{host: "127.0.0.1", port: 5432, user: "bench", password: "bench", dbname: "bench",
		verifier: "SCRAM-SHA-256$4096:c2FsdA==$a:b"}, backends: 20, sessionPool: 50, maxClients: 11000}
	toml := pgmtsConfig(s, 6432, 9127, true)
	for _, want := range []string{`listen = "127.0.0.1:6432"`, "debug_pprof = true", "max_client_conn = 11000",
		"max_shared_servers = 20", "[databases.bench_session]", `mode = "session"`, "max_shared_servers = 50",
		`password = "SCRAM-SHA-256$4096:c2FsdA==$a:b"`} {
		if !strings.Contains(toml, want) {
			t.Errorf("pgmts config lacks %q:\n%s", want, toml)
		}
	}
	ini := pgbouncerConfig(s, 6433, "/tmp/userlist.txt")
	for _, want := range []string{"bench = host=127.0.0.1 port=5432 dbname=bench\n",
		"bench_session = host=127.0.0.1 port=5432 dbname=bench pool_mode=session pool_size=50",
		"listen_port = 6433", "default_pool_size = 20", "max_client_conn = 11000", "auth_type = scram-sha-256"} {
		if !strings.Contains(ini, want) {
			t.Errorf("PgBouncer config lacks %q:\n%s", want, ini)
		}
	}
	// -server-tls: both poolers require TLS to PostgreSQL; without it, neither uses it.
	for _, tls := range []bool{false, true} {
		s.serverTLS = tls
		mode := map[bool]string{false: "disable", true: "require"}[tls]
		if toml := pgmtsConfig(s, 6432, 9127, false); !strings.Contains(toml, `server_tls_mode = "`+mode+`"`) {
			t.Errorf("server TLS %v: pgmts config lacks server_tls_mode %s:\n%s", tls, mode, toml)
		}
		if ini := pgbouncerConfig(s, 6433, "/tmp/userlist.txt"); !strings.Contains(ini, "server_tls_sslmode = "+mode+"\n") {
			t.Errorf("server TLS %v: PgBouncer config lacks server_tls_sslmode %s:\n%s", tls, mode, ini)
		}
	}
}

// Every target runs in every position once over as many rounds as there
// are targets.
func TestRoundOrder(t *testing.T) {
	targets := []string{"direct", "pgmts", "pgbouncer"}
	want := [][]string{{"direct", "pgmts", "pgbouncer"}, {"pgmts", "pgbouncer", "direct"}, {"pgbouncer", "direct", "pgmts"}, {"direct", "pgmts", "pgbouncer"}}
	for rep := 1; rep <= len(want); rep++ {
		if got := roundOrder(targets, rep); !reflect.DeepEqual(got, want[rep-1]) {
			t.Errorf("round %d: %v, want %v", rep, got, want[rep-1])
		}
	}
	if !reflect.DeepEqual(targets, []string{"direct", "pgmts", "pgbouncer"}) {
		t.Errorf("roundOrder changed its argument: %v", targets)
	}
	if got := roundOrder([]string{"pgmts"}, 5); !reflect.DeepEqual(got, []string{"pgmts"}) {
		t.Errorf("one target: %v", got)
	}
}
