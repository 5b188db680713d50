package config

import (
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

func mustParse(t *testing.T, data string) *Config {
	t.Helper()
	cfg, err := Parse([]byte(data))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return cfg
}

func TestDefaults(t *testing.T) {
	cfg := mustParse(t, "")
	want := Default()
	if !reflect.DeepEqual(*cfg, want) {
		t.Errorf("Parse(\"\") = %+v, want %+v", *cfg, want)
	}
	g, p := cfg.Pgmts, cfg.Pool
	if g.Listen != "127.0.0.1:6432" || g.UnixSocketDir != "" || g.UnixSocketMode != "0777" ||
		g.Dispatchers != 0 || g.MaxClientConn != 10000 || g.AuthType != "scram-sha-256" ||
		!reflect.DeepEqual(g.AdminUsers, []string{"pgmts"}) || g.MetricsListen != "127.0.0.1:9127" ||
		g.LogLevel != "info" || g.LogFormat != "text" || g.MaxPacketSize != 268435456 ||
		g.ShutdownTimeout != 30*time.Second || !g.IOUring {
		t.Errorf("[pgmts] defaults: %+v", g)
	}
	if p.Mode != "transaction" || p.SharedServers != 0 || p.MaxSharedServers != 20 ||
		p.ServerResetQuery != "DISCARD ALL" || p.ServerConnectTimeout != 15*time.Second ||
		p.QueryWaitTimeout != 120*time.Second {
		t.Errorf("[pool] defaults: %+v", p)
	}
	if len(cfg.Databases) != 0 || len(cfg.Users) != 0 {
		t.Errorf("default databases/users: %v %v", cfg.Databases, cfg.Users)
	}
	// Default must hand out a fresh slice: decoding reuses its backing array.
	Default().Pgmts.AdminUsers[0] = "changed"
	if Default().Pgmts.AdminUsers[0] != "pgmts" {
		t.Error("Default shares AdminUsers between calls")
	}
}

const sample = `
[pgmts]
listen = ":7432"
unix_socket_dir = "/var/run/pgmts"
unix_socket_mode = "0700"
dispatchers = 8
max_client_conn = 500
auth_type = "md5"
admin_users = ["admin", "ops"]
stats_users = ["monitor"]
metrics_listen = ""
log_level = "debug"
log_format = "json"
max_packet_size = 65536
shutdown_timeout = "1m30s"

[pool]
mode = "session"
shared_servers = 2
max_shared_servers = 10
server_reset_query = ""
server_connect_timeout = "2s"
query_wait_timeout = "0s"

[databases.app]
host = "/var/run/postgresql"
port = 5433
dbname = "app_prod"
mode = "statement"
shared_servers = 1
max_shared_servers = 4

[databases.MyDB]

[databases.forced]
user = "svc"
password = "svcpw"

[databases.hashonly]
password = "dbpw"

[databases."*"]
host = "db.internal"

[users.alice]
password = "alicepw"
mode = "transaction"

[users.bob]
password = "md53175bce1d3201d16594cebf9d7eb3f9d"

[users.carol]
password = "SCRAM-SHA-256$4096:JuAhxcHTlVljM63SvcAF1Q==$As/0xcGO0gAA2xu61CQ+KogBz6vzugIHwOn6wwV0ANU=:E8bxuuamfanfIjsYRJTvmZIEYsHbwlJutCPulNLIFuM="

[users.dave]
`

func TestSample(t *testing.T) {
	cfg := mustParse(t, sample)
	one, four := 1, 4
	wantDB := Database{Host: "/var/run/postgresql", Port: 5433, DBName: "app_prod", Mode: "statement", SharedServers: &one, MaxSharedServers: &four}
	if got := cfg.Databases["app"]; !reflect.DeepEqual(got, wantDB) {
		t.Errorf("databases.app = %+v, want %+v", got, wantDB)
	}
	if got := cfg.Databases["MyDB"]; !reflect.DeepEqual(got, Database{Host: "127.0.0.1", Port: 5432}) {
		t.Errorf("databases.MyDB = %+v, want the defaults", got)
	}
	if got := cfg.Databases["*"]; got.Host != "db.internal" || got.Port != 5432 {
		t.Errorf(`databases."*" = %+v`, got)
	}
	g := cfg.Pgmts
	if g.Listen != ":7432" || g.UnixSocketMode != "0700" || g.Dispatchers != 8 || g.MetricsListen != "" ||
		!reflect.DeepEqual(g.AdminUsers, []string{"admin", "ops"}) || g.ShutdownTimeout != 90*time.Second ||
		g.MaxPacketSize != 65536 || g.LogFormat != "json" {
		t.Errorf("[pgmts] = %+v", g)
	}
	if p := cfg.Pool; p.ServerResetQuery != "" || p.QueryWaitTimeout != 0 || p.ServerConnectTimeout != 2*time.Second {
		t.Errorf("[pool] = %+v", p)
	}
	if !cfg.IsAdminUser("ops") || cfg.IsAdminUser("pgmts") || cfg.IsAdminUser("") {
		t.Error("IsAdminUser disagrees with admin_users")
	}
	if !cfg.IsStatsUser("monitor") || cfg.IsStatsUser("ops") || Default().Pgmts.StatsUsers == nil {
		t.Error("IsStatsUser disagrees with stats_users")
	}
}

func TestPoolFor(t *testing.T) {
	cfg := mustParse(t, sample)
	base := PoolConfig{
		Host: "127.0.0.1", Port: 5432, Mode: "session", SharedServers: 2, MaxSharedServers: 10,
		ServerConnectTimeout: 2 * time.Second, ServerLoginRetry: time.Second, ScaleUpWait: 5 * time.Millisecond,
		ServerIdleTimeout: 600 * time.Second,
	}
	with := func(f func(*PoolConfig)) PoolConfig {
		p := base
		f(&p)
		return p
	}
	for _, tc := range []struct {
		database, user string
		want           PoolConfig
	}{
		{"app", "alice", with(func(p *PoolConfig) {
			// users.alice.mode beats databases.app.mode; plain password passes through.
			p.Database, p.User, p.Host, p.Port, p.DBName = "app", "alice", "/var/run/postgresql", 5433, "app_prod"
			p.BackendUser, p.BackendPassword, p.Mode = "alice", "alicepw", "transaction"
			p.SharedServers, p.MaxSharedServers = 1, 4
		})},
		{"app", "bob", with(func(p *PoolConfig) {
			// md5-stored password cannot log in to the backend.
			p.Database, p.User, p.Host, p.Port, p.DBName = "app", "bob", "/var/run/postgresql", 5433, "app_prod"
			p.BackendUser, p.Mode = "bob", "statement"
			p.SharedServers, p.MaxSharedServers = 1, 4
		})},
		{"MyDB", "carol", with(func(p *PoolConfig) {
			// SCRAM-stored password cannot either; dbname defaults to the section name.
			p.Database, p.User, p.DBName, p.BackendUser = "MyDB", "carol", "MyDB", "carol"
		})},
		{"forced", "alice", with(func(p *PoolConfig) {
			p.Database, p.User, p.DBName = "forced", "alice", "forced"
			p.BackendUser, p.BackendPassword, p.Mode = "svc", "svcpw", "transaction"
		})},
		{"hashonly", "alice", with(func(p *PoolConfig) {
			// A section password goes with the client's user name, replacing the user's.
			p.Database, p.User, p.DBName = "hashonly", "alice", "hashonly"
			p.BackendUser, p.BackendPassword, p.Mode = "alice", "dbpw", "transaction"
		})},
		{"reports", "stranger", with(func(p *PoolConfig) {
			// "*" fallback: the client's database name, unknown user.
			p.Database, p.User, p.Host, p.DBName, p.BackendUser = "reports", "stranger", "db.internal", "reports", "stranger"
		})},
	} {
		got, ok := cfg.PoolFor(tc.database, tc.user)
		if !ok || got != tc.want {
			t.Errorf("PoolFor(%q, %q) =\n%+v, %v\nwant\n%+v", tc.database, tc.user, got, ok, tc.want)
		}
	}

	noFallback := mustParse(t, "[databases.app]\n")
	if _, ok := noFallback.PoolFor("other", "alice"); ok {
		t.Error(`PoolFor found a pool without the database or a "*" section`)
	}
	if got, ok := noFallback.PoolFor("app", "alice"); !ok || got.Mode != "transaction" || got.MaxSharedServers != 20 {
		t.Errorf("PoolFor(app) = %+v, %v; want [pool] defaults", got, ok)
	}
	star := mustParse(t, "[databases.\"*\"]\ndbname = \"one\"\n")
	if got, _ := star.PoolFor("any", "alice"); got.DBName != "one" || got.Database != "any" {
		t.Errorf(`"*" with dbname: %+v`, got)
	}
}

func TestAuthQueryFor(t *testing.T) {
	cfg := mustParse(t, `
[pgmts]
auth_user = "lookup"
auth_cache_ttl = "5s"
[databases.app]
host = "db1"
dbname = "app_prod"
[databases.other]
auth_user = "other_lookup"
[databases.none]
auth_user = ""
[users.lookup]
password = "lookup-pw"
`)
	got, ok := cfg.AuthQueryFor("app")
	want := AuthQuery{Host: "db1", Port: 5432, DBName: "app_prod", User: "lookup", Password: "lookup-pw",
		Query: "SELECT usename, passwd FROM pg_shadow WHERE usename=$1", CacheTTL: 5 * time.Second, ConnectTimeout: 15 * time.Second}
	if !ok || got != want {
		t.Errorf("AuthQueryFor(app) = %+v, %v\nwant %+v", got, ok, want)
	}
	if got, ok := cfg.AuthQueryFor("other"); !ok || got.User != "other_lookup" || got.Password != "" || got.DBName != "other" {
		t.Errorf("AuthQueryFor(other) = %+v, %v", got, ok)
	}
	// "" inherits pgmts.auth_user, as an unset key does.
	if got, ok := cfg.AuthQueryFor("none"); !ok || got.User != "lookup" {
		t.Errorf("AuthQueryFor(none) = %+v, %v", got, ok)
	}
	if _, ok := cfg.AuthQueryFor("missing"); ok {
		t.Error("AuthQueryFor of a database no section serves")
	}
	if _, ok := mustParse(t, "[databases.app]\n").AuthQueryFor("app"); ok {
		t.Error("AuthQueryFor without auth_user")
	}
}

func TestDurations(t *testing.T) {
	cfg := mustParse(t, "[pgmts]\nshutdown_timeout = \"250ms\"\n[pool]\nserver_connect_timeout = \"1h2m3s\"\nquery_wait_timeout = \"0\"\n")
	if cfg.Pgmts.ShutdownTimeout != 250*time.Millisecond || cfg.Pool.ServerConnectTimeout != time.Hour+2*time.Minute+3*time.Second || cfg.Pool.QueryWaitTimeout != 0 {
		t.Errorf("durations: %v %v %v", cfg.Pgmts.ShutdownTimeout, cfg.Pool.ServerConnectTimeout, cfg.Pool.QueryWaitTimeout)
	}
}

func TestErrors(t *testing.T) {
	for _, tc := range []struct{ toml, want string }{
		// [pgmts]
		{`pgmts.listen = "6432"`, `config: pgmts.listen: "6432" is not host:port`},
		{`pgmts.listen = "localhost:pg"`, `config: pgmts.listen: port "pg" in "localhost:pg" is not a number from 1 to 65535`},
		{`pgmts.listen = "localhost:70000"`, `config: pgmts.listen: port "70000"`},
		{`pgmts.unix_socket_mode = "0999"`, `config: pgmts.unix_socket_mode: "0999" is not an octal file mode`},
		{`pgmts.unix_socket_mode = "01777"`, `config: pgmts.unix_socket_mode: "01777"`},
		{`pgmts.dispatchers = 257`, `config: pgmts.dispatchers: 257 is not between 0 and 256`},
		{`pgmts.dispatchers = -1`, `config: pgmts.dispatchers: -1 is not between 0 and 256`},
		{`pgmts.dispatchers = "4"`, `config: pgmts.dispatchers: must be an integer`},
		{`pgmts.max_client_conn = 0`, `config: pgmts.max_client_conn: 0 is below 1`},
		{`pgmts.auth_type = "foo"`, `config: pgmts.auth_type: "foo" is not one of trust, plain, md5, scram-sha-256, cert, hba`},
		{`pgmts.client_tls_mode = "on"`, `config: pgmts.client_tls_mode: "on" is not one of disable, allow, prefer, require, verify-ca, verify-full`},
		{`pgmts.client_tls_mode = "require"`, `config: pgmts.client_tls_cert_file and pgmts.client_tls_key_file: required with client_tls_mode = "require"`},
		{"pgmts.client_tls_mode = \"verify-ca\"\npgmts.client_tls_cert_file = \"a\"\npgmts.client_tls_key_file = \"b\"", `config: pgmts.client_tls_ca_file: required with client_tls_mode = "verify-ca"`},
		{`pgmts.auth_type = "cert"`, `config: pgmts.auth_type: "cert" needs client_tls_mode other than "disable" and client_tls_ca_file`},
		{"pgmts.client_tls_mode = \"prefer\"\npgmts.client_tls_cert_file = \"/nonexistent.crt\"\npgmts.client_tls_key_file = \"/nonexistent.key\"", `config: pgmts.client_tls_cert_file / client_tls_key_file: open /nonexistent.crt: no such file or directory`},
		{`pgmts.admin_users = "admin"`, `config: pgmts.admin_users: must be an array of strings`},
		{`pgmts.admin_users = ["admin", 1]`, `config: pgmts.admin_users: must be an array of strings`},
		{`pgmts.admin_users = [""]`, `config: pgmts.admin_users: "" is not a user name`},
		{`pgmts.stats_users = "monitor"`, `config: pgmts.stats_users: must be an array of strings`},
		{`pgmts.stats_users = [""]`, `config: pgmts.stats_users: "" is not a user name`},
		{`pgmts.metrics_listen = "9127"`, `config: pgmts.metrics_listen: "9127" is not host:port`},
		{`pgmts.log_level = "trace"`, `config: pgmts.log_level: "trace" is not one of debug, info, warn, error`},
		{`pgmts.log_format = "xml"`, `config: pgmts.log_format: "xml" is not one of text, json`},
		{`pgmts.max_packet_size = 1024`, `config: pgmts.max_packet_size: 1024 is not between 65536 and 1073741824`},
		{`pgmts.max_packet_size = 1073741825`, `config: pgmts.max_packet_size: 1073741825 is not between`},
		{`pgmts.shutdown_timeout = "soon"`, `config: pgmts.shutdown_timeout: "soon" is not a duration such as "30s" or "1m30s"`},
		{`pgmts.shutdown_timeout = 30`, `config: pgmts.shutdown_timeout: must be a duration string such as "30s"`},
		{`pgmts.shutdown_timeout = "-1s"`, `config: pgmts.shutdown_timeout: -1s is negative`},
		{`pgmts.client_login_timeout = "-1s"`, `config: pgmts.client_login_timeout: -1s is negative`},
		{`pgmts.debug_pprof = "yes"`, `config: pgmts.debug_pprof`},
		{`pgmts.auth_query = "SELECT usename, passwd FROM pg_shadow"`, `config: pgmts.auth_query: "SELECT usename, passwd FROM pg_shadow" has no $1, where pgmts puts the user name`},
		{`pgmts.auth_cache_ttl = "-1s"`, `config: pgmts.auth_cache_ttl: -1s is negative`},
		{`pgmts.auth_user = 1`, `config: pgmts.auth_user: must be a string`},
		{"pgmts.auth_user = \"lookup\"\nusers.lookup.password = \"md5" + strings.Repeat("0", 32) + "\"", `config: pgmts.auth_user: "lookup" logs in to PostgreSQL to run auth_query, so its password in [users] or auth_file must be plain text`},
		{"databases.app.auth_user = \"lookup\"\nusers.lookup.password = \"md5" + strings.Repeat("0", 32) + "\"", `config: databases.app.auth_user: "lookup" logs in`},
		{`pgmts = 1`, `config: pgmts: must be a table`},
		{"[[pgmts]]\nlisten = \":1\"", `config: pgmts: must be a table`},
		// [pool]
		{`pool.mode = "row"`, `config: pool.mode: "row" is not one of session, transaction, statement`},
		{`pool.shared_servers = -1`, `config: pool.shared_servers: -1 is negative`},
		{`pool.max_shared_servers = 0`, `config: pool.max_shared_servers: 0 is below 1`},
		{"pool.shared_servers = 30", `config: pool.max_shared_servers: 20 is below pool.shared_servers (30)`},
		{`pool.server_reset_query = 1`, `config: pool.server_reset_query: must be a string`},
		{`pool.server_connect_timeout = "0s"`, `config: pool.server_connect_timeout: 0s is not positive`},
		{`pool.query_wait_timeout = "2 minutes"`, `config: pool.query_wait_timeout: "2 minutes" is not a duration`},
		{`pool.server_login_retry = "-1s"`, `config: pool.server_login_retry: -1s is negative`},
		{`pool.query_wait_timeout = "-5s"`, `config: pool.query_wait_timeout: -5s is negative`},
		{`pool.scale_up_wait = "-1ms"`, `config: pool.scale_up_wait: -1ms is negative`},
		{`pool.server_idle_timeout = "-1s"`, `config: pool.server_idle_timeout: -1s is negative`},
		{`pool.max_db_connections = -1`, `config: pool.max_db_connections: -1 is negative`},
		{`pool.max_user_connections = -1`, `config: pool.max_user_connections: -1 is negative`},
		// [databases]
		{`databases = []`, `config: databases: must be a table`},
		{`databases.app = "x"`, `config: databases.app: must be a table`},
		{`databases."".host = "x"`, `config: databases."": database name must not be empty`},
		{`databases.app.host = ""`, `config: databases.app.host: "" is not a hostname, IP address or absolute unix socket directory`},
		{`databases.app.host = "run/pg"`, `config: databases.app.host: "run/pg" is not a hostname`},
		{`databases.app.port = 0`, `config: databases.app.port: 0 is not between 1 and 65535`},
		{`databases."*".port = 65536`, `config: databases."*".port: 65536 is not between 1 and 65535`},
		{`databases.app.port = "5432"`, `config: databases.app.port: must be an integer`},
		{`databases.app.mode = "row"`, `config: databases.app.mode: "row" is not one of session, transaction, statement`},
		{`databases.app.shared_servers = -1`, `config: databases.app.shared_servers: -1 is negative`},
		{`databases.app.max_shared_servers = 0`, `config: databases.app.max_shared_servers: 0 is below 1`},
		{`databases.app.max_shared_servers = 5` + "\npool.shared_servers = 6", `config: databases.app.max_shared_servers: 5 is below shared_servers (6)`},
		{`databases.app.shared_servers = 21`, `config: databases.app.shared_servers: 21 is above pool.max_shared_servers (20)`},
		{`databases.app.shared_servers = 9` + "\ndatabases.app.max_shared_servers = 8", `config: databases.app.max_shared_servers: 8 is below shared_servers (9)`},
		// [users]
		{`users.alice.password = "SCRAM-SHA-256$4096:c2FsdA==$AAAA:AAAA"`, `config: users.alice.password: malformed SCRAM-SHA-256 verifier: StoredKey is not 32 bytes of base64`},
		{`users.alice.password = 5`, `config: users.alice.password: must be a string`},
		{`users.alice.mode = "row"`, `config: users.alice.mode: "row" is not one of session, transaction, statement`},
		{`users."".password = "x"`, `config: users."": user name must not be empty`},
		// Unknown and wrongly spelled keys.
		{`pool.pool_mode = "session"`, `config: unknown key "pool.pool_mode"`},
		{"[pool]\nPOOL_MODE = \"session\"", `config: unknown key "pool.POOL_MODE"`},
		{"[pool]\nMode = \"session\"", `config: unknown key "pool.Mode" (keys are case-sensitive; did you mean "mode"?)`},
		{`[Pool]`, `config: unknown key "Pool" (keys are case-sensitive; did you mean "pool"?)`},
		{`databases.MyDB.Host = "x"`, `config: unknown key "databases.MyDB.Host" (keys are case-sensitive; did you mean "host"?)`},
		{`users.x.md5 = "x"`, `config: unknown key "users.x.md5"`},
		{`server = 1`, `config: unknown key "server"`},
		{`pgmts = { listen = ":1", bogus = 1 }`, `config: unknown key "pgmts.bogus"`},
	} {
		_, err := Parse([]byte(tc.toml))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("Parse(%q):\n err = %v\nwant %s...", tc.toml, err, tc.want)
		}
	}
}

func TestSyntaxErrorHasPosition(t *testing.T) {
	_, err := Parse([]byte("[pgmts]\nlisten = \"127.0.0.1:6432\"\nlog_level = info\n"))
	if err == nil || !strings.HasPrefix(err.Error(), "config: line 3, column ") {
		t.Errorf("err = %v, want it to start with config: line 3, column", err)
	}
}

func TestLoad(t *testing.T) {
	if _, err := Load("does-not-exist.toml"); err == nil || !strings.Contains(err.Error(), "does-not-exist.toml") {
		t.Errorf("Load of a missing file: err = %v", err)
	}
}

// TestExample keeps pgmts.example.toml valid and complete: it must set every
// [pgmts] and [pool] key, so new settings get documented there.
func TestExample(t *testing.T) {
	const path = "../pgmts.example.toml"
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg.Pgmts, Default().Pgmts) || !reflect.DeepEqual(cfg.Pool, Default().Pool) {
		t.Errorf("example does not show the defaults:\n%+v\n%+v", cfg.Pgmts, cfg.Pool)
	}
	if got, ok := cfg.PoolFor("postgres", "postgres"); !ok || got.Host != "127.0.0.1" || got.Port != 5432 ||
		got.DBName != "postgres" || got.BackendUser != "postgres" || got.BackendPassword != "postgres" {
		t.Errorf("example postgres pool = %+v, %v", got, ok)
	}
	if got, ok := cfg.PoolFor("other", "postgres"); !ok || got.Host != "127.0.0.1" || got.Port != 5432 || got.DBName != "other" {
		t.Errorf(`example "*" pool = %+v, %v`, got, ok)
	}
	var raw map[string]any
	md, err := toml.DecodeFile(path, &raw)
	if err != nil {
		t.Fatal(err)
	}
	for section, typ := range map[string]reflect.Type{"pgmts": reflect.TypeFor[Global](), "pool": reflect.TypeFor[PoolSettings]()} {
		for _, f := range reflect.VisibleFields(typ) {
			if key := f.Tag.Get("toml"); !md.IsDefined(section, key) {
				t.Errorf("example lacks %s.%s", section, key)
			}
		}
	}
}

func TestChanged(t *testing.T) {
	base := `
[pgmts]
listen = "127.0.0.1:6432"
[databases.a]
port = 5432
[databases.b]
port = 5432
[users.u]
password = "x"
`
	old, err := Parse([]byte(base))
	if err != nil {
		t.Fatal(err)
	}
	if got := Changed(old, old); len(got) != 0 {
		t.Fatalf("same config: %q", got)
	}
	edited := strings.NewReplacer(`"127.0.0.1:6432"`, `"127.0.0.1:7432"`, "[databases.b]\nport = 5432", "[databases.c]\nport = 5432",
		`password = "x"`, `password = "y"`).Replace(base) + "[pool]\nmode = \"session\"\n"
	cur, err := Parse([]byte(edited))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"pgmts.listen", "pool.mode", "databases.b", "databases.c", "users.u"}
	if got := Changed(old, cur); !slices.Equal(got, want) {
		t.Fatalf("Changed = %q, want %q", got, want)
	}
}

func TestLive(t *testing.T) {
	old := mustParse(t, "[pgmts]\nlisten = \"127.0.0.1:6432\"\nlog_format = \"text\"\n")
	cur := mustParse(t, "[pgmts]\nlisten = \"127.0.0.1:7000\"\nio_uring = false\nlog_format = \"json\"\nlog_level = \"debug\"\n")
	live, kept := Live(old, cur)
	if want := []string{"pgmts.listen", "pgmts.io_uring", "pgmts.log_format"}; !slices.Equal(kept, want) {
		t.Fatalf("kept %q, want %q", kept, want)
	}
	if live.Pgmts.Listen != "127.0.0.1:6432" || live.Pgmts.LogFormat != "text" || live.Pgmts.LogLevel != "debug" ||
		!live.Pgmts.IOUring {
		t.Fatalf("live = %+v", live.Pgmts)
	}
	if cur.Pgmts.Listen != "127.0.0.1:7000" {
		t.Fatal("Live changed its argument")
	}
}

func TestWith(t *testing.T) {
	base := mustParse(t, "")
	c, err := With(base, "max_shared_servers", "7")
	if err != nil || c.Pool.MaxSharedServers != 7 || base.Pool.MaxSharedServers != 20 {
		t.Fatalf("max_shared_servers = 7: %v, %+v", err, c)
	}
	if c, err = With(base, "pgmts.log_level", "debug"); err != nil || c.Pgmts.LogLevel != "debug" {
		t.Fatalf("pgmts.log_level = debug: %v", err)
	}
	if c, err = With(base, "query_wait_timeout", "5s"); err != nil || c.Pool.QueryWaitTimeout != 5*time.Second {
		t.Fatalf("query_wait_timeout = 5s: %v", err)
	}
	for _, tc := range []struct{ key, value, want string }{
		{"no_such_setting", "1", `unknown setting "no_such_setting"`},
		{"listen", "127.0.0.1:1", "pgmts.listen cannot change while pgmts runs"},
		{"max_shared_servers", "many", `pool.max_shared_servers: "many" is not an integer`},
		{"max_shared_servers", "0", "pool.max_shared_servers: 0 is below 1"},
		{"log_level", "loud", `pgmts.log_level: "loud" is not one of`},
		{"pool.log_level", "debug", `unknown setting "pool.log_level"`},
	} {
		if _, err := With(base, tc.key, tc.value); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("With(%s = %s): %v, want %q", tc.key, tc.value, err, tc.want)
		}
	}
}

func TestWithDatabase(t *testing.T) {
	base := mustParse(t, "[databases.app]\nhost = \"db\"\nport = 5432\nshared_servers = 2\n")
	c, err := WithDatabase(base, "app", "max_shared_servers", "5")
	if err != nil {
		t.Fatal(err)
	}
	if pc, _ := c.PoolFor("app", "u"); pc.MaxSharedServers != 5 || pc.SharedServers != 2 {
		t.Errorf("app after SET: max %d, min %d; want 5, 2", pc.MaxSharedServers, pc.SharedServers)
	}
	if base.Databases["app"].MaxSharedServers != nil {
		t.Error("WithDatabase changed the configuration it copied")
	}
	if c, err = WithDatabase(c, "app", "mode", "session"); err != nil || c.Databases["app"].Mode != "session" {
		t.Fatalf("mode = session: %v", err)
	}
	for _, tc := range []struct{ db, key, value, want string }{
		{"nope", "mode", "session", "no [databases.nope] section"},
		{"app", "host", "elsewhere", `"host" cannot be set per database`},
		{"app", "mode", "sometimes", `databases.app.mode: "sometimes" is not one of`},
		{"app", "max_shared_servers", "1", "databases.app.max_shared_servers: 1 is below shared_servers (2)"},
		{"app", "shared_servers", "x", `databases.app.shared_servers: "x" is not an integer`},
	} {
		if _, err := WithDatabase(base, tc.db, tc.key, tc.value); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("WithDatabase(%s.%s = %s): %v, want %q", tc.db, tc.key, tc.value, err, tc.want)
		}
	}
	if !RestartOnly("pgmts.listen") || RestartOnly("pool.mode") {
		t.Error("RestartOnly")
	}
}

func TestDispatcherCount(t *testing.T) {
	if n := (Global{Dispatchers: 3}).DispatcherCount(); n != 3 {
		t.Errorf("dispatchers = 3: %d", n)
	}
	if n := (Global{}).DispatcherCount(); n != max(1, runtime.NumCPU()/2) {
		t.Errorf("dispatchers = 0 on %d CPUs: %d, want one per two CPUs", runtime.NumCPU(), n)
	}
}
