// Package pgtest runs throwaway PostgreSQL clusters for integration tests.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrNoPostgres is returned (wrapped) when PostgreSQL cannot be run here:
// binaries missing, or running as root without a postgres OS user.
var ErrNoPostgres = errors.New("pgtest: PostgreSQL not available")

// bootstrapUser is the superuser created by initdb; the harness connects as it.
const bootstrapUser = "postgres"

// defaultHBA applies when Options.HBA is empty.
const defaultHBA = `local all all trust
host all all 127.0.0.1/32 scram-sha-256
host all all ::1/128 scram-sha-256
`

// harnessHBA is always put first so the harness can connect as postgres
// without a password, whatever HBA the test supplies.
const harnessHBA = `local all postgres trust
host all postgres 127.0.0.1/32 trust
`

// queryTimeout bounds each harness connection and query.
const queryTimeout = 30 * time.Second

// Options configures a cluster started by Start.
type Options struct {
	// Conf holds extra postgresql.conf settings, written verbatim as
	// "name = value" after the defaults so they override them.
	Conf map[string]string
	// Users are created after start; passwords are SCRAM-hashed by the
	// server since password_encryption=scram-sha-256.
	Users []User
	// Databases are created after the users, owned by Users[0] if any.
	Databases []string
	// HBA is the pg_hba.conf content (defaultHBA if empty). Trust lines for
	// the bootstrap user on the socket and 127.0.0.1 are always prepended.
	HBA string
}

// User is a login role to create.
type User struct {
	Name      string
	Password  string
	Superuser bool
}

// Cluster is a running throwaway PostgreSQL server.
type Cluster struct {
	Dir       string // data directory
	Port      int
	Host      string // always "127.0.0.1"
	SocketDir string

	base     string // temp dir holding Dir and SocketDir; removed by Stop
	pgCtlBin string
	logFile  string
	cred     *syscall.Credential // set when running as root: run tools as postgres

	mu      sync.Mutex
	stopped bool
}

// FindBin returns the path of a PostgreSQL program (postgres, initdb,
// pg_ctl, psql, pgbench): PATH first, then the newest
// /usr/lib/postgresql/*/bin (Debian keeps server tools out of PATH).
func FindBin(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	matches, _ := filepath.Glob(filepath.Join("/usr/lib/postgresql", "*", "bin", name))
	best, bestVer := "", -1.0
	for _, m := range matches {
		if fi, err := os.Stat(m); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			continue
		}
		// The directory is the major version ("15", "9.6"), so a float compares right.
		v, err := strconv.ParseFloat(filepath.Base(filepath.Dir(filepath.Dir(m))), 64)
		if err != nil {
			v = 0
		}
		if v > bestVer {
			best, bestVer = m, v
		}
	}
	if best == "" {
		return "", fmt.Errorf("%w: %s not in PATH or /usr/lib/postgresql/*/bin", ErrNoPostgres, name)
	}
	return best, nil
}

// Start creates and starts a cluster in a fresh temp dir with a free port on
// 127.0.0.1. It returns a wrapped ErrNoPostgres if PostgreSQL is unavailable.
func Start(opts Options) (_ *Cluster, err error) {
	initdb, err := FindBin("initdb")
	if err != nil {
		return nil, err
	}
	pgCtl, err := FindBin("pg_ctl")
	if err != nil {
		return nil, err
	}
	cred, err := Credential()
	if err != nil {
		return nil, err
	}
	base, err := os.MkdirTemp(tempParent(), "pgtest-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{
		Dir:       filepath.Join(base, "data"),
		Host:      "127.0.0.1",
		SocketDir: filepath.Join(base, "sock"),
		base:      base,
		pgCtlBin:  pgCtl,
		cred:      cred,
	}
	c.logFile = filepath.Join(c.Dir, "server.log")
	defer func() {
		if err != nil {
			err = errors.Join(err, c.Stop())
		}
	}()

	if err := c.chown(base); err != nil {
		return nil, err
	}
	if err := c.run(initdb, "-D", c.Dir, "-U", bootstrapUser, "--auth=trust", "-E", "UTF8", "--locale=C"); err != nil {
		return nil, err
	}
	if err := os.Mkdir(c.SocketDir, 0o700); err != nil {
		return nil, err
	}
	if err := c.chown(c.SocketDir); err != nil {
		return nil, err
	}
	if c.Port, err = FreePort(); err != nil {
		return nil, err
	}
	if err := c.writeConfig(opts); err != nil {
		return nil, err
	}
	if err := c.pgCtl("start"); err != nil {
		return nil, err
	}
	if err := c.createObjects(opts); err != nil {
		return nil, err
	}
	return c, nil
}

// Require starts a cluster for a test and stops it at cleanup. Without
// PostgreSQL the test is skipped, unless CI=true where it fails.
func Require(t testing.TB, opts Options) *Cluster {
	t.Helper()
	c, err := Start(opts)
	if errors.Is(err, ErrNoPostgres) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL is required in CI: %v", err)
		}
		t.Skipf("skipping: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Error(err)
		}
	})
	return c
}

// Stop kills the server (immediate mode: data is thrown away anyway) and
// removes the temp dir. Calling it again is a no-op.
func (c *Cluster) Stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return nil
	}
	c.stopped = true
	var stopErr error
	// No pid file means the server never started (or already died).
	if _, err := os.Stat(filepath.Join(c.Dir, "postmaster.pid")); err == nil {
		stopErr = c.run(c.pgCtlBin, "-D", c.Dir, "-m", "immediate", "-w", "-t", "60", "stop")
	}
	return errors.Join(stopErr, os.RemoveAll(c.base))
}

// Restart restarts the server in fast mode, keeping port and data.
func (c *Cluster) Restart() error {
	return c.pgCtl("-m", "fast", "restart")
}

// Outage stops the server in fast mode, leaves it down for d, and starts
// it again, keeping port and data.
func (c *Cluster) Outage(d time.Duration) error {
	if err := c.pgCtl("-m", "fast", "stop"); err != nil {
		return err
	}
	time.Sleep(d)
	return c.pgCtl("start")
}

// pgCtl runs pg_ctl on the cluster (waiting up to 60 s, logging to its log
// file); an error carries the end of the server's log.
func (c *Cluster) pgCtl(args ...string) error {
	args = append([]string{"-D", c.Dir, "-l", c.logFile, "-w", "-t", "60"}, args...)
	if err := c.run(c.pgCtlBin, args...); err != nil {
		return fmt.Errorf("%w\nserver log tail:\n%s", err, c.logTail())
	}
	return nil
}

// DSN returns a keyword/value connection string for TCP on 127.0.0.1.
func (c *Cluster) DSN(user, password, database string) string {
	return fmt.Sprintf("host=%s port=%d user=%s password=%s dbname=%s sslmode=disable",
		c.Host, c.Port, dsnQuote(user), dsnQuote(password), dsnQuote(database))
}

// Exec runs SQL (may be several statements) as postgres on database postgres.
func (c *Cluster) Exec(sql string) error {
	return c.withConn(func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, sql)
		return err
	})
}

// QueryInt runs a query returning a single integer, as postgres.
func (c *Cluster) QueryInt(sql string) (int64, error) {
	var n int64
	err := c.withConn(func(ctx context.Context, conn *pgx.Conn) error {
		return conn.QueryRow(ctx, sql).Scan(&n)
	})
	return n, err
}

// BackendCount returns the number of client backends connected, excluding
// the querying connection itself, optionally only those of user ("" = all).
func (c *Cluster) BackendCount(user string) (int, error) {
	var n int
	err := c.withConn(func(ctx context.Context, conn *pgx.Conn) error {
		return conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
			AND ($1::text = '' OR usename::text = $1::text)`, user).Scan(&n)
	})
	return n, err
}

// withConn opens a fresh connection per call so it survives Restart and
// never lingers in BackendCount.
func (c *Cluster) withConn(f func(context.Context, *pgx.Conn) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	// The socket is used so custom HBA rules for TCP cannot lock us out.
	dsn := fmt.Sprintf("host=%s port=%d user=%s dbname=postgres sslmode=disable",
		dsnQuote(c.SocketDir), c.Port, bootstrapUser)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return f(ctx, conn)
}

func (c *Cluster) writeConfig(opts Options) error {
	var b strings.Builder
	fmt.Fprintf(&b, "\n# pgtest\nport = %d\n", c.Port)
	fmt.Fprintf(&b, "listen_addresses = '127.0.0.1'\n")
	fmt.Fprintf(&b, "unix_socket_directories = %s\n", quoteLiteral(c.SocketDir))
	b.WriteString(`fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
shared_buffers = 64MB
password_encryption = 'scram-sha-256'
logging_collector = off
`)
	// Sorted so the file is deterministic; later lines override the defaults.
	names := make([]string, 0, len(opts.Conf))
	for n := range opts.Conf {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&b, "%s = %s\n", n, opts.Conf[n])
	}
	f, err := os.OpenFile(filepath.Join(c.Dir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(b.String()); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	hba := opts.HBA
	if hba == "" {
		hba = defaultHBA
	}
	// initdb created the file, so rewriting it keeps its postgres ownership.
	return os.WriteFile(filepath.Join(c.Dir, "pg_hba.conf"), []byte(harnessHBA+hba+"\n"), 0o600)
}

func (c *Cluster) createObjects(opts Options) error {
	var sql []string
	for _, u := range opts.Users {
		s := "CREATE ROLE " + pgx.Identifier{u.Name}.Sanitize() + " LOGIN PASSWORD " + quoteLiteral(u.Password)
		if u.Superuser {
			s += " SUPERUSER"
		}
		sql = append(sql, s)
	}
	for _, d := range opts.Databases {
		s := "CREATE DATABASE " + pgx.Identifier{d}.Sanitize()
		if len(opts.Users) > 0 {
			s += " OWNER " + pgx.Identifier{opts.Users[0].Name}.Sanitize()
		}
		sql = append(sql, s)
	}
	if len(sql) == 0 {
		return nil
	}
	return c.withConn(func(ctx context.Context, conn *pgx.Conn) error {
		// One statement per Exec: CREATE DATABASE cannot run in the implicit
		// transaction of a multi-statement query.
		for _, s := range sql {
			if _, err := conn.Exec(ctx, s); err != nil {
				return fmt.Errorf("%s: %w", s, err)
			}
		}
		return nil
	})
}

// run executes a PostgreSQL tool, as the postgres OS user when we are root
// (initdb and postgres refuse to run as root).
func (c *Cluster) run(name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Dir = c.base // the postgres user may not be able to read our cwd
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	// pg_ctl -l redirects the server's output, so this does not wait on it.
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	return nil
}

func (c *Cluster) chown(path string) error {
	if c.cred == nil {
		return nil
	}
	return os.Chown(path, int(c.cred.Uid), int(c.cred.Gid))
}

func (c *Cluster) logTail() string {
	const tailBytes = 4096
	b, err := os.ReadFile(c.logFile)
	if err != nil {
		return "(no server log: " + err.Error() + ")"
	}
	if len(b) > tailBytes {
		b = b[len(b)-tailBytes:]
		if i := strings.IndexByte(string(b), '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return string(b)
}

// Credential returns the postgres OS user's credential when running as
// root, nil otherwise: PostgreSQL's tools (and PgBouncer) refuse to run as
// root.
func Credential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("%w: running as root needs the postgres OS user: %v", ErrNoPostgres, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, err
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, err
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// tempParent keeps the socket path (dir + "/.s.PGSQL.NNNNN") well under the
// ~107-byte limit for Unix socket paths.
func tempParent() string {
	if len(os.TempDir()) > 60 {
		return "/tmp"
	}
	return ""
}

// FreePort returns a TCP port on 127.0.0.1 that nothing listens on.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// quoteLiteral quotes an SQL string literal (standard_conforming_strings is
// on, so only single quotes need doubling).
func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// dsnQuote quotes a keyword/value connection string value when needed.
func dsnQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\n\r\v\f'\\") {
		return s
	}
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`)
	return "'" + r.Replace(s) + "'"
}
