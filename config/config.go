// Package config loads and validates pgmts's TOML configuration file.
package config

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/pgmts/pgmts/auth"
	"github.com/pgmts/pgmts/hba"
)

// Config is the whole configuration file.
type Config struct {
	Pgmts     Global              `toml:"pgmts"`
	Pool      PoolSettings        `toml:"pool"`
	Databases map[string]Database `toml:"databases"` // "*" is the fallback for any database name
	Users     map[string]User     `toml:"users"`

	hbaRules []hba.Rule // auth_hba_file, read at load
}

// DispatcherCount is the number of dispatchers to run: dispatchers, or for
// 0 one per two CPUs (at least one). A loop's system calls wake the kernel's
// TCP work for PostgreSQL and the clients, which costs a core's worth as
// much again; and one busy loop takes many events per epoll_wait where two
// half-idle ones wake for each (measured on 2 cores, pgbench -S at 50
// clients: 5.1 system calls per transaction with one loop, 6.6 with two).
func (g Global) DispatcherCount() int {
	if g.Dispatchers > 0 {
		return g.Dispatchers
	}
	return max(1, runtime.NumCPU()/2)
}

// Global is the [pgmts] section.
type Global struct {
	Listen          string        `toml:"listen"`           // host:port for clients
	UnixSocketDir   string        `toml:"unix_socket_dir"`  // "" = no unix socket
	UnixSocketMode  string        `toml:"unix_socket_mode"` // octal, e.g. "0777"
	Dispatchers     int           `toml:"dispatchers"`      // 0 = one per two CPUs (DispatcherCount)
	IOUring         bool          `toml:"io_uring"`         // batch a dispatcher's socket reads and writes through io_uring, and wait through it at one client
	MaxClientConn   int           `toml:"max_client_conn"`
	AuthType        string        `toml:"auth_type"`     // trust | plain | md5 | scram-sha-256 | hba
	AuthFile        string        `toml:"auth_file"`     // PgBouncer userlist.txt format; "" = none
	AuthHBAFile     string        `toml:"auth_hba_file"` // pg_hba.conf format, for auth_type "hba"
	AdminUsers      []string      `toml:"admin_users"`
	StatsUsers      []string      `toml:"stats_users"`    // admin console, SHOW commands only
	MetricsListen   string        `toml:"metrics_listen"` // "" disables metrics
	DebugPprof      bool          `toml:"debug_pprof"`    // /debug/pprof on metrics_listen
	LogLevel        string        `toml:"log_level"`      // debug | info | warn | error
	LogFormat       string        `toml:"log_format"`     // text | json
	MaxPacketSize   int           `toml:"max_packet_size"`
	ShutdownTimeout time.Duration `toml:"shutdown_timeout"` // how long running transactions may finish after SIGTERM
	// ClientLoginTimeout drops a client that has not finished startup and
	// authentication in time; 0 = no limit.
	ClientLoginTimeout time.Duration `toml:"client_login_timeout"`
	// TLS to PostgreSQL, as libpq's sslmode: disable | prefer | require |
	// verify-ca | verify-full.
	ServerTLSMode     string `toml:"server_tls_mode"`
	ServerTLSCAFile   string `toml:"server_tls_ca_file"`   // needed by verify-ca / verify-full
	ServerTLSCertFile string `toml:"server_tls_cert_file"` // optional client certificate
	ServerTLSKeyFile  string `toml:"server_tls_key_file"`
	// TLS for clients: disable | allow | prefer | require | verify-ca |
	// verify-full. Relative paths start at the config file's folder.
	ClientTLSMode     string `toml:"client_tls_mode"`
	ClientTLSCertFile string `toml:"client_tls_cert_file"` // pgmts's certificate chain (PEM)
	ClientTLSKeyFile  string `toml:"client_tls_key_file"`
	ClientTLSCAFile   string `toml:"client_tls_ca_file"` // CAs that sign client certificates
	// AuthUser looks up, with AuthQuery, the password of a user that has
	// none in [users] or auth_file; "" = no lookups. Its own password is
	// its [users] entry, in plain text.
	AuthUser     string        `toml:"auth_user"`
	AuthQuery    string        `toml:"auth_query"`     // $1 is the user name; returns (name, password)
	AuthCacheTTL time.Duration `toml:"auth_cache_ttl"` // how long an answer (found or not) is reused; 0 = never
}

// PoolSettings is the [pool] section: defaults for every pool.
type PoolSettings struct {
	Mode                 string        `toml:"mode"` // session | transaction | statement
	SharedServers        int           `toml:"shared_servers"`
	MaxSharedServers     int           `toml:"max_shared_servers"`
	ServerResetQuery     string        `toml:"server_reset_query"` // "" = none
	ServerConnectTimeout time.Duration `toml:"server_connect_timeout"`
	// ServerLoginRetry: after a failed backend login the pool opens no
	// server for this long, and a request with no server to wait for
	// fails at once with that login's error; 0 = try again at once.
	ServerLoginRetry time.Duration `toml:"server_login_retry"`
	QueryWaitTimeout time.Duration `toml:"query_wait_timeout"` // 0 = wait forever
	// ScaleUpWait: a pool starts another server when a request has waited
	// this long for one (Oracle's shared-server growth rule).
	ScaleUpWait time.Duration `toml:"scale_up_wait"`
	// ServerIdleTimeout retires servers above shared_servers that were
	// idle this long; 0 = never.
	ServerIdleTimeout  time.Duration `toml:"server_idle_timeout"`
	MaxDBConnections   int           `toml:"max_db_connections"`   // per database, all its pools; 0 = no cap
	MaxUserConnections int           `toml:"max_user_connections"` // per user, all its pools; 0 = no cap
}

// Database is a [databases.NAME] section: where clients asking for NAME go.
type Database struct {
	Host             string `toml:"host"` // hostname, IP or absolute unix socket directory
	Port             int    `toml:"port"`
	DBName           string `toml:"dbname"`    // "" = the name the client asked for
	User             string `toml:"user"`      // optional: force backend login user
	Password         string `toml:"password"`  // optional: backend login password
	Mode             string `toml:"mode"`      // optional override of [pool]
	AuthUser         string `toml:"auth_user"` // optional override of pgmts.auth_user
	SharedServers    *int   `toml:"shared_servers"`
	MaxSharedServers *int   `toml:"max_shared_servers"`
}

// User is a [users.NAME] section.
type User struct {
	Password string `toml:"password"` // plain, "md5<32 hex>" or a SCRAM-SHA-256 verifier
	Mode     string `toml:"mode"`     // optional override of [databases.X] and [pool]
}

// Default returns the configuration every file starts from.
func Default() Config {
	return Config{
		Pgmts: Global{
			Listen:             "127.0.0.1:6432",
			UnixSocketMode:     "0777",
			IOUring:            true,
			MaxClientConn:      10000,
			AuthType:           "scram-sha-256",
			AdminUsers:         []string{"pgmts"},
			StatsUsers:         []string{},
			MetricsListen:      "127.0.0.1:9127",
			LogLevel:           "info",
			LogFormat:          "text",
			MaxPacketSize:      256 << 20,
			ShutdownTimeout:    30 * time.Second,
			ClientLoginTimeout: 60 * time.Second,
			ServerTLSMode:      "prefer",
			ClientTLSMode:      "disable",
			AuthQuery:          "SELECT usename, passwd FROM pg_shadow WHERE usename=$1",
			AuthCacheTTL:       30 * time.Second,
		},
		Pool: PoolSettings{
			Mode:                 "transaction",
			MaxSharedServers:     20,
			ServerResetQuery:     "DISCARD ALL",
			ServerConnectTimeout: 15 * time.Second,
			ServerLoginRetry:     time.Second,
			QueryWaitTimeout:     120 * time.Second,
			ScaleUpWait:          5 * time.Millisecond,
			ServerIdleTimeout:    600 * time.Second,
		},
	}
}

// defaultDatabase holds the defaults of a [databases.NAME] section. They
// cannot live in Default: the decoder starts every map entry from zero.
var defaultDatabase = Database{Host: "127.0.0.1", Port: 5432}

var (
	authTypes = []string{"trust", "plain", "md5", "scram-sha-256", "cert", "hba"}

	clientTLSModes = []string{"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}

	serverTLSModes = []string{"disable", "prefer", "require", "verify-ca", "verify-full"}
	poolModes      = []string{"session", "transaction", "statement"}
	logLevels      = []string{"debug", "info", "warn", "error"}
	logFormats     = []string{"text", "json"}
)

// Load reads and parses the configuration file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg, err := parse(data)
	if err == nil {
		err = cfg.loadFiles(filepath.Dir(path))
	}
	if err != nil {
		return nil, fmt.Errorf("config: %s: %w", path, err)
	}
	return cfg, nil
}

// Parse parses configuration file contents: Default, overridden by data, then
// validated.
func Parse(data []byte) (*Config, error) {
	cfg, err := parse(data)
	if err == nil {
		err = cfg.loadFiles(".")
	}
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return cfg, nil
}

func parse(data []byte) (*Config, error) {
	// Decoding into a map first reports syntax errors by position, and lets
	// checkKeys name bad keys and types before the typed decode, whose own
	// errors only give a line.
	var raw map[string]any
	md, err := toml.Decode(string(data), &raw)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("line %d, column %d: %s", pe.Position.Line, pe.Position.Col, pe.Message)
		}
		return nil, err
	}
	if err := checkKeys(md, raw); err != nil {
		return nil, err
	}
	cfg := Default()
	if _, err := toml.Decode(string(data), &cfg); err != nil {
		return nil, err
	}
	for name, db := range cfg.Databases {
		if !md.IsDefined("databases", name, "host") {
			db.Host = defaultDatabase.Host
		}
		if !md.IsDefined("databases", name, "port") {
			db.Port = defaultDatabase.Port
		}
		cfg.Databases[name] = db
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

var durationType = reflect.TypeFor[time.Duration]()

// checkKeys rejects every key whose spelling is not exactly a toml tag (the
// decoder would match "POOL_MODE" to "mode") and every value of the wrong
// type, naming the key. Database and user section names are free-form.
func checkKeys(md toml.MetaData, raw map[string]any) error {
	for _, key := range md.Keys() {
		t := reflect.TypeFor[Config]()
		var v any = raw
		for i, part := range key {
			// checkType has already seen key[:i] is a table, so v is a map.
			v = v.(map[string]any)[part]
			switch t.Kind() {
			case reflect.Struct:
				f, err := fieldByTag(t, key[:i+1])
				if err != nil {
					return err
				}
				t = f.Type
			case reflect.Map:
				t = t.Elem()
			}
			if err := checkType(key[:i+1], t, v); err != nil {
				return err
			}
		}
	}
	return nil
}

func fieldByTag(t reflect.Type, key toml.Key) (reflect.StructField, error) {
	name := key[len(key)-1]
	for _, f := range reflect.VisibleFields(t) {
		switch tag := f.Tag.Get("toml"); {
		case tag == name:
			return f, nil
		case strings.EqualFold(tag, name):
			return f, fmt.Errorf("unknown key %q (keys are case-sensitive; did you mean %q?)", key, tag)
		}
	}
	return reflect.StructField{}, fmt.Errorf("unknown key %q", key)
}

func checkType(key toml.Key, t reflect.Type, v any) error {
	var want string
	ok := true
	switch {
	case t == durationType:
		s, isString := v.(string)
		if !isString {
			return fmt.Errorf(`%s: must be a duration string such as "30s"`, key)
		}
		if _, err := time.ParseDuration(s); err != nil {
			return fmt.Errorf(`%s: %q is not a duration such as "30s" or "1m30s"`, key, s)
		}
	case t.Kind() == reflect.Struct || t.Kind() == reflect.Map:
		want = "a table"
		_, ok = v.(map[string]any)
	case t.Kind() == reflect.String:
		want = "a string"
		_, ok = v.(string)
	case t.Kind() == reflect.Bool:
		want = "true or false"
		_, ok = v.(bool)
	case t.Kind() == reflect.Int || t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Int:
		want = "an integer"
		_, ok = v.(int64)
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.String:
		want = "an array of strings"
		var items []any
		items, ok = v.([]any)
		for _, item := range items {
			if _, isString := item.(string); !isString {
				ok = false
			}
		}
	default:
		panic(fmt.Sprintf("config: no type check for %s (%s)", key, t))
	}
	if !ok {
		return fmt.Errorf("%s: must be %s", key, want)
	}
	return nil
}

func (c *Config) validate() error {
	g := &c.Pgmts
	if err := checkHostPort("pgmts.listen", g.Listen); err != nil {
		return err
	}
	if mode, err := strconv.ParseUint(g.UnixSocketMode, 8, 32); err != nil || mode > 0o777 {
		return fmt.Errorf(`pgmts.unix_socket_mode: %q is not an octal file mode such as "0777"`, g.UnixSocketMode)
	}
	if err := checkRange("pgmts.dispatchers", g.Dispatchers, 0, 256); err != nil {
		return err
	}
	if g.MaxClientConn < 1 {
		return fmt.Errorf("pgmts.max_client_conn: %d is below 1", g.MaxClientConn)
	}
	if g.AuthType == "hba" && g.AuthHBAFile == "" {
		return fmt.Errorf(`pgmts.auth_hba_file: required with auth_type = "hba"`)
	}
	if err := checkOneOf("pgmts.auth_type", g.AuthType, authTypes); err != nil {
		return err
	}
	if slices.Contains(g.AdminUsers, "") {
		return errors.New(`pgmts.admin_users: "" is not a user name`)
	}
	if slices.Contains(g.StatsUsers, "") {
		return errors.New(`pgmts.stats_users: "" is not a user name`)
	}
	if g.MetricsListen != "" {
		if err := checkHostPort("pgmts.metrics_listen", g.MetricsListen); err != nil {
			return err
		}
	}
	if err := checkOneOf("pgmts.log_level", g.LogLevel, logLevels); err != nil {
		return err
	}
	if err := checkOneOf("pgmts.log_format", g.LogFormat, logFormats); err != nil {
		return err
	}
	if err := checkRange("pgmts.max_packet_size", g.MaxPacketSize, 64<<10, 1<<30); err != nil {
		return err
	}
	if g.ShutdownTimeout < 0 {
		return fmt.Errorf("pgmts.shutdown_timeout: %s is negative", g.ShutdownTimeout)
	}
	if g.ClientLoginTimeout < 0 {
		return fmt.Errorf("pgmts.client_login_timeout: %s is negative", g.ClientLoginTimeout)
	}
	if err := checkOneOf("pgmts.server_tls_mode", g.ServerTLSMode, serverTLSModes); err != nil {
		return err
	}
	if (g.ServerTLSMode == "verify-ca" || g.ServerTLSMode == "verify-full") && g.ServerTLSCAFile == "" {
		return fmt.Errorf("pgmts.server_tls_ca_file: required with server_tls_mode = %q, to verify the server's certificate", g.ServerTLSMode)
	}
	if (g.ServerTLSCertFile == "") != (g.ServerTLSKeyFile == "") {
		return fmt.Errorf("pgmts.server_tls_cert_file and pgmts.server_tls_key_file: set both or neither")
	}
	if err := checkOneOf("pgmts.client_tls_mode", g.ClientTLSMode, clientTLSModes); err != nil {
		return err
	}
	if g.ClientTLSMode != "disable" && (g.ClientTLSCertFile == "" || g.ClientTLSKeyFile == "") {
		return fmt.Errorf("pgmts.client_tls_cert_file and pgmts.client_tls_key_file: required with client_tls_mode = %q", g.ClientTLSMode)
	}
	if (g.ClientTLSMode == "verify-ca" || g.ClientTLSMode == "verify-full") && g.ClientTLSCAFile == "" {
		return fmt.Errorf("pgmts.client_tls_ca_file: required with client_tls_mode = %q, to verify client certificates", g.ClientTLSMode)
	}
	if g.AuthType == "cert" && (g.ClientTLSMode == "disable" || g.ClientTLSCAFile == "") {
		return errors.New(`pgmts.auth_type: "cert" needs client_tls_mode other than "disable" and client_tls_ca_file, to verify client certificates`)
	}
	if !strings.Contains(g.AuthQuery, "$1") {
		return fmt.Errorf("pgmts.auth_query: %q has no $1, where pgmts puts the user name", g.AuthQuery)
	}
	if g.AuthCacheTTL < 0 {
		return fmt.Errorf("pgmts.auth_cache_ttl: %s is negative", g.AuthCacheTTL)
	}

	p := &c.Pool
	if err := checkOneOf("pool.mode", p.Mode, poolModes); err != nil {
		return err
	}
	if p.SharedServers < 0 {
		return fmt.Errorf("pool.shared_servers: %d is negative", p.SharedServers)
	}
	if p.MaxSharedServers < 1 {
		return fmt.Errorf("pool.max_shared_servers: %d is below 1", p.MaxSharedServers)
	}
	if p.MaxSharedServers < p.SharedServers {
		return fmt.Errorf("pool.max_shared_servers: %d is below pool.shared_servers (%d)", p.MaxSharedServers, p.SharedServers)
	}
	if p.ServerConnectTimeout <= 0 {
		return fmt.Errorf("pool.server_connect_timeout: %s is not positive", p.ServerConnectTimeout)
	}
	if p.ServerLoginRetry < 0 {
		return fmt.Errorf("pool.server_login_retry: %s is negative", p.ServerLoginRetry)
	}
	if p.QueryWaitTimeout < 0 {
		return fmt.Errorf("pool.query_wait_timeout: %s is negative", p.QueryWaitTimeout)
	}
	if p.ScaleUpWait < 0 {
		return fmt.Errorf("pool.scale_up_wait: %s is negative", p.ScaleUpWait)
	}
	if p.ServerIdleTimeout < 0 {
		return fmt.Errorf("pool.server_idle_timeout: %s is negative", p.ServerIdleTimeout)
	}
	if p.MaxDBConnections < 0 {
		return fmt.Errorf("pool.max_db_connections: %d is negative", p.MaxDBConnections)
	}
	if p.MaxUserConnections < 0 {
		return fmt.Errorf("pool.max_user_connections: %d is negative", p.MaxUserConnections)
	}

	// Sorted, so that the same file always gives the same first error.
	for _, name := range slices.Sorted(maps.Keys(c.Databases)) {
		if err := c.validateDatabase(name); err != nil {
			return err
		}
	}
	for _, name := range slices.Sorted(maps.Keys(c.Users)) {
		if name == "" {
			return errors.New(`users."": user name must not be empty`)
		}
		u := c.Users[name]
		key := func(k string) string { return toml.Key{"users", name, k}.String() }
		if _, err := auth.StoredKind(u.Password); err != nil {
			return fmt.Errorf("%s: %w", key("password"), err)
		}
		if u.Mode != "" {
			if err := checkOneOf(key("mode"), u.Mode, poolModes); err != nil {
				return err
			}
		}
	}
	return nil
}

func (c *Config) validateDatabase(name string) error {
	if name == "" {
		return errors.New(`databases."": database name must not be empty`)
	}
	d := c.Databases[name]
	key := func(k string) string { return toml.Key{"databases", name, k}.String() }
	if d.Host == "" || strings.Contains(d.Host, "/") && !filepath.IsAbs(d.Host) {
		return fmt.Errorf("%s: %q is not a hostname, IP address or absolute unix socket directory", key("host"), d.Host)
	}
	if err := checkRange(key("port"), d.Port, 1, 65535); err != nil {
		return err
	}
	if d.Mode != "" {
		if err := checkOneOf(key("mode"), d.Mode, poolModes); err != nil {
			return err
		}
	}
	shared, maxShared := c.Pool.SharedServers, c.Pool.MaxSharedServers
	if d.SharedServers != nil {
		shared = *d.SharedServers
		if shared < 0 {
			return fmt.Errorf("%s: %d is negative", key("shared_servers"), shared)
		}
	}
	if d.MaxSharedServers != nil {
		maxShared = *d.MaxSharedServers
		if maxShared < 1 {
			return fmt.Errorf("%s: %d is below 1", key("max_shared_servers"), maxShared)
		}
	}
	if maxShared < shared {
		// Name the override that caused the clash.
		if d.MaxSharedServers != nil {
			return fmt.Errorf("%s: %d is below shared_servers (%d)", key("max_shared_servers"), maxShared, shared)
		}
		return fmt.Errorf("%s: %d is above pool.max_shared_servers (%d)", key("shared_servers"), shared, maxShared)
	}
	return nil
}

func checkHostPort(key, addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s: %q is not host:port", key, addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%s: port %q in %q is not a number from 1 to 65535", key, port, addr)
	}
	return nil
}

func checkRange(key string, v, lo, hi int) error {
	if v < lo || v > hi {
		return fmt.Errorf("%s: %d is not between %d and %d", key, v, lo, hi)
	}
	return nil
}

func checkOneOf(key, v string, allowed []string) error {
	if !slices.Contains(allowed, v) {
		return fmt.Errorf("%s: %q is not one of %s", key, v, strings.Join(allowed, ", "))
	}
	return nil
}

// PoolConfig is everything needed to run the pool for one client-facing
// (database, user) pair.
type PoolConfig struct {
	Database, User       string // as the client named them
	Host                 string
	Port                 int
	DBName               string // backend database
	BackendUser          string
	BackendPassword      string // "" if unknown, e.g. only a hash is configured
	Mode                 string
	SharedServers        int
	MaxSharedServers     int
	ServerResetQuery     string
	ServerConnectTimeout time.Duration
	ServerLoginRetry     time.Duration
	QueryWaitTimeout     time.Duration
	ScaleUpWait          time.Duration
	ServerIdleTimeout    time.Duration
	MaxDBConnections     int
	MaxUserConnections   int
}

// PoolFor resolves the pool for a client asking for database as user:
// [databases.<database>], else [databases."*"]; false if neither exists.
func (c *Config) PoolFor(database, user string) (PoolConfig, bool) {
	db, ok := c.Databases[database]
	if !ok {
		if db, ok = c.Databases["*"]; !ok {
			return PoolConfig{}, false
		}
	}
	u := c.Users[user]
	p := PoolConfig{
		Database:             database,
		User:                 user,
		Host:                 db.Host,
		Port:                 db.Port,
		DBName:               cmp.Or(db.DBName, database), // the section name, or for "*" the client's database
		BackendUser:          cmp.Or(db.User, user),
		Mode:                 cmp.Or(u.Mode, db.Mode, c.Pool.Mode),
		SharedServers:        c.Pool.SharedServers,
		MaxSharedServers:     c.Pool.MaxSharedServers,
		ServerResetQuery:     c.Pool.ServerResetQuery,
		ServerConnectTimeout: c.Pool.ServerConnectTimeout,
		ServerLoginRetry:     c.Pool.ServerLoginRetry,
		QueryWaitTimeout:     c.Pool.QueryWaitTimeout,
		ScaleUpWait:          c.Pool.ScaleUpWait,
		ServerIdleTimeout:    c.Pool.ServerIdleTimeout,
		MaxDBConnections:     c.Pool.MaxDBConnections,
		MaxUserConnections:   c.Pool.MaxUserConnections,
	}
	switch {
	case db.User != "" || db.Password != "":
		// The section chose the backend login, so its password goes with it.
		p.BackendPassword = db.Password
	default:
		// Only a plain password can log in to the backend; a hash cannot.
		if kind, err := auth.StoredKind(u.Password); err == nil && kind == auth.KindPlain {
			p.BackendPassword = u.Password
		}
	}
	if db.SharedServers != nil {
		p.SharedServers = *db.SharedServers
	}
	if db.MaxSharedServers != nil {
		p.MaxSharedServers = *db.MaxSharedServers
	}
	return p, true
}

// IsAdminUser reports whether name may use the admin console.
func (c *Config) IsAdminUser(name string) bool {
	return slices.Contains(c.Pgmts.AdminUsers, name)
}

// IsStatsUser reports whether name may run the admin console's SHOW
// commands.
func (c *Config) IsStatsUser(name string) bool {
	return slices.Contains(c.Pgmts.StatsUsers, name)
}

// AuthQuery is how to look up, with auth_query, the password of a user the
// config does not know: the query, run as auth_user in the backend
// database of the client's [databases] section.
type AuthQuery struct {
	Host           string
	Port           int
	DBName         string
	User, Password string // auth_user and its plain [users] password ("" if none)
	Query          string
	CacheTTL       time.Duration
	ConnectTimeout time.Duration
}

// AuthQueryFor resolves the auth_query lookup for clients of database;
// false when no auth_user applies (or no section serves database).
func (c *Config) AuthQueryFor(database string) (AuthQuery, bool) {
	db, ok := c.Databases[database]
	if !ok {
		if db, ok = c.Databases["*"]; !ok {
			return AuthQuery{}, false
		}
	}
	user := cmp.Or(db.AuthUser, c.Pgmts.AuthUser)
	if user == "" {
		return AuthQuery{}, false
	}
	return AuthQuery{
		Host:           db.Host,
		Port:           db.Port,
		DBName:         cmp.Or(db.DBName, database),
		User:           user,
		Password:       c.Users[user].Password, // plain: checked at load
		Query:          c.Pgmts.AuthQuery,
		CacheTTL:       c.Pgmts.AuthCacheTTL,
		ConnectTimeout: c.Pool.ServerConnectTimeout,
	}, true
}

// checkAuthUsers runs once auth_file is merged: an auth_user logs in to
// PostgreSQL, which needs its password in plain text.
func (c *Config) checkAuthUsers() error {
	check := func(key, user string) error {
		if user == "" {
			return nil
		}
		if kind, _ := auth.StoredKind(c.Users[user].Password); kind != auth.KindPlain && kind != auth.KindNone {
			return fmt.Errorf("%s: %q logs in to PostgreSQL to run auth_query, so its password in [users] or auth_file must be plain text, not a hash or verifier", key, user)
		}
		return nil
	}
	if err := check("pgmts.auth_user", c.Pgmts.AuthUser); err != nil {
		return err
	}
	for _, name := range slices.Sorted(maps.Keys(c.Databases)) {
		if err := check(toml.Key{"databases", name, "auth_user"}.String(), c.Databases[name].AuthUser); err != nil {
			return err
		}
	}
	return nil
}
