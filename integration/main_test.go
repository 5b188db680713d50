// Package integration drives pgmts with real clients (pgx, psql, pgbench)
// in front of a throwaway PostgreSQL cluster.
package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgmts/pgmts/admin"
	"github.com/pgmts/pgmts/auth"
	"github.com/pgmts/pgmts/config"
	"github.com/pgmts/pgmts/dispatcher"
	"github.com/pgmts/pgmts/pgtest"
	"github.com/pgmts/pgmts/sharedserver"
)

// The cluster every test of the package shares; each test starts its own
// pgmts in front of it.
var (
	cluster    *pgtest.Cluster
	clusterErr error
	binDir     string // holds a built pgmts binary, for tests that measure its RSS
)

const (
	benchUser = "bench"
	benchPass = "bench-pw"
	appUser   = "app"
	appPass   = "app-pw"
)

func TestMain(m *testing.M) {
	users := []pgtest.User{{Name: benchUser, Password: benchPass}, {Name: appUser, Password: appPass}}
	for _, u := range backendAuthUsers {
		users = append(users, pgtest.User{Name: u.name, Password: u.password})
	}
	cluster, clusterErr = pgtest.Start(pgtest.Options{
		Users:     users,
		Databases: []string{"bench"},
		Conf:      map[string]string{"max_connections": "300"},
		HBA:       clusterHBA,
	})
	code := 1
	if clusterErr == nil {
		code = setupAndRun(m)
		_ = cluster.Stop()
	} else {
		code = m.Run() // each test skips or fails through needCluster
	}
	os.Exit(code)
}

// clusterHBA makes PostgreSQL ask pgmts's backend logins for each method
// pgmts must speak: one user per method, SCRAM for everyone else.
var clusterHBA = func() string {
	hba := "local all all trust\n"
	for _, u := range backendAuthUsers {
		hba += "host all " + u.name + " 127.0.0.1/32 " + u.method + "\n"
	}
	return hba + "host all all 127.0.0.1/32 scram-sha-256\n"
}()

var backendAuthUsers = []struct{ name, password, method string }{
	{"be_trust", "", "trust"},
	{"be_password", "pw-cleartext", "password"},
	{"be_md5", "pw-md5", "md5"},
	{"be_scram", "pw-scram", "scram-sha-256"},
}

func setupAndRun(m *testing.M) int {
	// md5 logins need an md5-stored password (PostgreSQL upgrades md5 to
	// SCRAM for a SCRAM-stored one).
	if err := cluster.Exec("ALTER ROLE be_md5 PASSWORD '" + auth.MD5Password("be_md5", "pw-md5") + "'"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := pgbenchInit(); err != nil {
		fmt.Fprintln(os.Stderr, "pgbench -i:", err)
		return 1
	}
	dir, err := os.MkdirTemp("", "pgmts-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	// Built as `make build` builds it (static, no cgo): the binary under
	// test is the one operators run.
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "pgmts"), "../cmd/pgmts")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := build.CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		return 1
	}
	binDir = dir
	code := m.Run()
	if code == 0 {
		if err := checkLeaks(); err != nil {
			fmt.Fprintln(os.Stderr, "LEAK CHECK FAILED:", err)
			code = 1
		}
	}
	return code
}

// checkLeaks runs after every test has stopped its pgmts: no goroutine of
// ours may remain, and PostgreSQL must have no client backends left.
func checkLeaks() error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		stacks := ourGoroutines()
		n, err := cluster.BackendCount("")
		if err != nil {
			return err
		}
		if stacks == "" && n == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d PostgreSQL backends still connected; goroutines left:\n%s", n, stacks)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func ourGoroutines() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var left []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		for _, pkg := range []string{"pgmts/pgmts/dispatcher.", "pgmts/pgmts/sharedserver.", "pgmts/pgmts/queue.", "pgmts/pgmts/admin."} {
			if strings.Contains(g, pkg) {
				left = append(left, g)
				break
			}
		}
	}
	return strings.Join(left, "\n\n")
}

func needCluster(t testing.TB) {
	t.Helper()
	if clusterErr == nil {
		return
	}
	if errors.Is(clusterErr, pgtest.ErrNoPostgres) && os.Getenv("CI") != "true" {
		t.Skip("PostgreSQL is not installed:", clusterErr)
	}
	t.Fatal("PostgreSQL test cluster:", clusterErr)
}

func pgbenchInit() error {
	bin, err := pgtest.FindBin("pgbench")
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, "-i", "-s", "1", "-q", "-h", cluster.Host, "-p", strconv.Itoa(cluster.Port), "-U", benchUser, "bench")
	cmd.Env = append(os.Environ(), "PGPASSWORD="+benchPass)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	return nil
}

// pgmts is one pgmts instance run in-process.
type pgmts struct {
	cfg     *config.Config
	pools   *sharedserver.Pools
	console *admin.Console
	group   *dispatcher.Group
	port    int
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// configTOML is a pgmts config in front of the test cluster, listening on
// port: databases "bench" and "postgres", users bench and app.
func configTOML(port int) string {
	return fmt.Sprintf(`
[pgmts]
listen = "127.0.0.1:%d"
dispatchers = 2
auth_type = "scram-sha-256"
metrics_listen = ""
log_level = "warn"

[pool]
mode = "transaction"
max_shared_servers = 10

[databases.bench]
host = "127.0.0.1"
port = %d

[databases.postgres]
host = "127.0.0.1"
port = %d

[users.%s]
password = %q

[users.%s]
password = %q
`, port, cluster.Port, cluster.Port, benchUser, benchPass, appUser, appPass)
}

// baseConfig is configTOML parsed, on a free port.
func baseConfig(t testing.TB) *config.Config {
	cfg, err := config.Parse([]byte(configTOML(freePort(t))))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// startPgmts starts pgmts in-process with the base config changed by edit.
func startPgmts(t testing.TB, edit func(*config.Config)) *pgmts {
	t.Helper()
	return startPgmtsLog(t, edit, nil)
}

// startPgmtsLog is startPgmts with pgmts's warnings also written to logs
// (which must be safe for concurrent use), when it is not nil.
func startPgmtsLog(t testing.TB, edit func(*config.Config), logs io.Writer) *pgmts {
	t.Helper()
	needCluster(t)
	cfg := baseConfig(t)
	if edit != nil {
		edit(cfg)
	}
	var out []io.Writer
	if logs != nil {
		out = append(out, logs)
	}
	if testing.Verbose() {
		out = append(out, os.Stderr)
	}
	log := slog.New(slog.NewTextHandler(io.MultiWriter(out...), &slog.HandlerOptions{Level: slog.LevelWarn}))
	pools := sharedserver.NewPools(cfg, log)
	console := admin.New(cfg, "", new(slog.LevelVar), pools, log, "test")
	group, err := dispatcher.New(cfg, console, log)
	if err != nil {
		t.Fatal(err)
	}
	console.Attach(group)
	if err := group.Start(); err != nil {
		console.Close()
		pools.Close()
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(cfg.Pgmts.Listen)
	p := &pgmts{cfg: cfg, pools: pools, console: console, group: group}
	p.port, _ = strconv.Atoi(port)
	t.Cleanup(p.stop)
	return p
}

// poolSum adds up one figure over every pool's snapshot.
func (p *pgmts) poolSum(figure func(sharedserver.PoolSnapshot) int64) int64 {
	var n int64
	for _, pool := range p.pools.Snapshot().Pools {
		n += figure(pool)
	}
	return n
}

func loginFailures(s sharedserver.PoolSnapshot) int64 { return s.LoginFailures }

func (p *pgmts) stop() {
	p.group.Stop()
	if p.console != nil {
		p.console.Close()
	}
	p.pools.Close()
}

func setMode(mode string, max int) func(*config.Config) {
	return func(c *config.Config) {
		c.Pool.Mode = mode
		c.Pool.MaxSharedServers = max
	}
}

// dsn is a libpq/pgx connection string to pgmts.
func (p *pgmts) dsn(user, password, db string, extra ...string) string {
	return dsnAt(p.port, user, password, db, extra...)
}

// dsnAt is a connection string to a pgmts listening on port.
func dsnAt(port int, user, password, db string, extra ...string) string {
	s := fmt.Sprintf("host=127.0.0.1 port=%d user=%s password=%s dbname=%s sslmode=disable", port, user, password, db)
	for _, e := range extra {
		s += " " + e
	}
	return s
}

func (p *pgmts) connect(t testing.TB, extra ...string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, p.dsn(benchUser, benchPass, "bench", extra...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func ctx10(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func sqlState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func queryString(t testing.TB, c *pgx.Conn, sql string, args ...any) string {
	t.Helper()
	var s string
	if err := c.QueryRow(ctx10(t), sql, args...).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

// hijack takes over the socket of a logged-in pgconn connection, for tests
// that speak the protocol by hand.
func hijack(t testing.TB, pc *pgconn.PgConn) *pgconn.HijackedConn {
	t.Helper()
	// pgconn may have a background read in flight; SyncConn ends it.
	if err := pc.SyncConn(ctx10(t)); err != nil {
		t.Fatal(err)
	}
	hj, err := pc.Hijack()
	if err != nil {
		t.Fatal(err)
	}
	return hj
}

// concurrentClients connects n pgx clients to p at once (with the extra
// connection options) and runs fn on each (with its index); it fails the
// test with the first few errors.
func concurrentClients(t *testing.T, p *pgmts, n int, fn func(ctx context.Context, i int, c *pgx.Conn) error, extra ...string) {
	t.Helper()
	concurrentConns(t, p.dsn(benchUser, benchPass, "bench", append([]string{"default_query_exec_mode=simple_protocol"}, extra...)...), n, fn)
}

// concurrentConns is concurrentClients for any connection string.
func concurrentConns(t *testing.T, dsn string, n int, fn func(ctx context.Context, i int, c *pgx.Conn) error) {
	t.Helper()
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			c, err := pgx.Connect(ctx, dsn)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close(context.Background())
			if err := fn(ctx, i, c); err != nil {
				errs <- fmt.Errorf("client %d: %w", i, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if failed < 5 {
			t.Error(err)
		}
		failed++
	}
	if failed > 0 {
		t.Fatalf("%d of %d clients failed", failed, n)
	}
}
