package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgmts/pgmts/pgtest"
)

// The names the poolers give the bench database: transaction pool and
// session pool, both on the same backend database.
const (
	txnDB     = "bench"
	sessionDB = "bench_session"
)

// postgres is the server every target ends at.
type postgres struct {
	host     string
	port     int
	user     string
	password string
	dbname   string
	verifier string // the user's SCRAM verifier from pg_authid, "" if unreadable
	version  string
	maxConns int
	cluster  *pgtest.Cluster // nil when reusing a server given by -dsn
}

// startPostgres reuses the server of dsn, or starts a scratch cluster
// (as the postgres OS user when root) that Stop removes; with tls, the
// scratch cluster serves TLS with that certificate.
func startPostgres(ctx context.Context, dsn string, tls *tlsFiles) (*postgres, error) {
	pg := &postgres{}
	admin := dsn
	if dsn == "" {
		// Room for direct runs beside both poolers' transaction and
		// session pools; the buffers hold a scale-10 database.
		conf := map[string]string{"max_connections": "500", "shared_buffers": "'256MB'"}
		if tls != nil {
			conf["ssl"] = "on"
			conf["ssl_cert_file"] = "'" + tls.cert + "'"
			conf["ssl_key_file"] = "'" + tls.key + "'"
		}
		c, err := pgtest.Start(pgtest.Options{
			Conf:      conf,
			Users:     []pgtest.User{{Name: "bench", Password: "bench"}},
			Databases: []string{"bench"},
		})
		if err != nil {
			return nil, err
		}
		pg.cluster = c
		pg.host, pg.port, pg.user, pg.password, pg.dbname = c.Host, c.Port, "bench", "bench", "bench"
		admin = c.DSN("postgres", "", "postgres")
	} else {
		cfg, err := pgconn.ParseConfig(dsn)
		if err != nil {
			return nil, err
		}
		pg.host, pg.port, pg.user, pg.password, pg.dbname = cfg.Host, int(cfg.Port), cfg.User, cfg.Password, cfg.Database
	}
	conn, err := pgconn.Connect(ctx, admin)
	if err != nil {
		return nil, errors.Join(err, pg.stop())
	}
	defer conn.Close(context.Background())
	pg.version = conn.ParameterStatus("server_version")
	if rows, err := conn.Exec(ctx, "SHOW max_connections").ReadAll(); err == nil && len(rows) == 1 && len(rows[0].Rows) == 1 {
		pg.maxConns, _ = strconv.Atoi(string(rows[0].Rows[0][0]))
	}
	// Both poolers keep the verifier, as PgBouncer's documentation advises:
	// no PBKDF2 per login, and they log in to PostgreSQL with the key the
	// client's proof reveals. Only superusers can read it.
	rr := conn.ExecParams(ctx, "SELECT rolpassword FROM pg_authid WHERE rolname = $1", [][]byte{[]byte(pg.user)}, nil, nil, nil).Read()
	if rr.Err == nil && len(rr.Rows) == 1 && strings.HasPrefix(string(rr.Rows[0][0]), "SCRAM-SHA-256$") {
		pg.verifier = string(rr.Rows[0][0])
	}
	return pg, nil
}

func (pg *postgres) stop() error {
	if pg.cluster == nil {
		return nil
	}
	return pg.cluster.Stop()
}

// initPgbench loads pgbench's tables at scale.
func (pg *postgres) initPgbench(ctx context.Context, pgbench string, scale int) error {
	cmd := exec.CommandContext(ctx, pgbench, "-i", "-q", "-s", strconv.Itoa(scale),
		"-h", pg.host, "-p", strconv.Itoa(pg.port), "-U", pg.user, pg.dbname)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+pg.password, "PGSSLMODE=disable")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pgbench -i: %v\n%s", err, lastLines(string(out), 5))
	}
	return nil
}

// secret is what the poolers store for the bench user.
func (pg *postgres) secret() string {
	if pg.verifier != "" {
		return pg.verifier
	}
	return pg.password
}

// poolerSettings are shared by both poolers' configurations.
type poolerSettings struct {
	pg          *postgres
	backends    int // transaction pool size
	sessionPool int // session pool size: one backend per client
	maxClients  int
	tls         *tlsFiles // nil: plaintext clients
	serverTLS   bool      // the poolers reach PostgreSQL over TLS
	// under, when set, runs the pooler under this command (valgrind and
	// its options, for the instructions scenario), with env added.
	under []string
	env   []string
}

// wait is how long a pooler may take to start listening, or to exit
// once signalled: valgrind makes both slower.
func (s poolerSettings) wait() time.Duration {
	if len(s.under) > 0 {
		return 2 * time.Minute
	}
	return 15 * time.Second
}

// command is bin with args, under s.under if set.
func (s poolerSettings) command(bin string, args ...string) *exec.Cmd {
	if len(s.under) == 0 {
		return exec.Command(bin, args...)
	}
	cmd := exec.Command(s.under[0], append(append(s.under[1:], bin), args...)...)
	cmd.Env = append(os.Environ(), s.env...)
	return cmd
}

// process is a pooler running as a child process.
type process struct {
	name    string
	cmd     *exec.Cmd
	port    int
	metrics string        // pgmts's metrics_listen (and /debug/pprof)
	log     string        // its stderr
	wait    time.Duration // to start listening, or to exit once signalled
	done    chan struct{}
	err     error
	start   func() (*process, error) // starts a fresh one with the same settings
}

func (p *process) pid() int { return p.cmd.Process.Pid }

// launch starts cmd, its output to logPath, and waits until port accepts.
func launch(name string, cmd *exec.Cmd, port int, logPath string, wait time.Duration) (*process, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	// A harness killed without cleanup does not leave a pooler behind.
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	// A session of its own, as a service manager or PgBouncer's -d gives
	// it (pg_ctl does the same for PostgreSQL): with the kernel's
	// autogroup scheduling, a pooler sharing the harness's session would
	// share one CPU share with every pgbench client.
	cmd.SysProcAttr.Setsid = true
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %v", name, err)
	}
	p := &process{name: name, cmd: cmd, port: port, log: logPath, wait: wait, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	deadline := time.Now().Add(wait)
	for {
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
		if err == nil {
			c.Close()
			return p, nil
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("%s exited at start (%v):\n%s", name, p.err, fileTail(logPath))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("%s does not listen on %d: %v\n%s", name, port, err, fileTail(logPath))
		}
	}
}

// stop ends the process: SIGINT for pgmts (fast shutdown), SIGTERM for
// PgBouncer (its immediate shutdown; SIGINT would wait for clients).
func (p *process) stop() {
	sig := syscall.SIGINT
	if p.name == "pgbouncer" {
		sig = syscall.SIGTERM
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(p.wait):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// alive reports an unexpected exit, with the end of its log.
func (p *process) alive() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited (%v):\n%s", p.name, p.err, fileTail(p.log))
	default:
		return nil
	}
}

// startPgmts writes pgmts's configuration to dir and starts bin with it.
func startPgmts(bin, dir string, s poolerSettings, pprof bool) (*process, error) {
	port, err := pgtest.FreePort()
	if err != nil {
		return nil, err
	}
	metricsPort, err := pgtest.FreePort()
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "pgmts.toml")
	if err := os.WriteFile(path, []byte(pgmtsConfig(s, port, metricsPort, pprof)), 0o644); err != nil {
		return nil, err
	}
	p, err := launch("pgmts", s.command(bin, "-c", path), port, filepath.Join(dir, "pgmts.log"), s.wait())
	if err != nil {
		return nil, err
	}
	p.metrics = fmt.Sprintf("127.0.0.1:%d", metricsPort)
	p.start = func() (*process, error) { return startPgmts(bin, dir, s, pprof) }
	return p, nil
}

func pgmtsConfig(s poolerSettings, port, metricsPort int, pprof bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, `[pgmts]
listen = "127.0.0.1:%d"
metrics_listen = "127.0.0.1:%d"
debug_pprof = %t
log_level = "warn"
auth_type = "scram-sha-256"
max_client_conn = %d
server_tls_mode = %q
admin_users = [%q]
`, port, metricsPort, pprof, s.maxClients, s.serverTLSMode(), s.pg.user)
	if s.tls != nil {
		fmt.Fprintf(&b, "client_tls_mode = \"require\"\nclient_tls_cert_file = %q\nclient_tls_key_file = %q\n", s.tls.cert, s.tls.key)
	}
	fmt.Fprintf(&b, `
[pool]
mode = "transaction"
max_shared_servers = %d

[databases.%s]
host = %q
port = %d
dbname = %q

[databases.%s]
host = %q
port = %d
dbname = %q
mode = "session"
max_shared_servers = %d

[users.%s]
password = %q
`, s.backends, txnDB, s.pg.host, s.pg.port, s.pg.dbname,
		sessionDB, s.pg.host, s.pg.port, s.pg.dbname, s.sessionPool,
		s.pg.user, s.pg.secret())
	return b.String()
}

// findPgbouncer returns PgBouncer's path, or "" when it is not installed.
// Debian puts it in /usr/sbin, which a non-root PATH may lack.
func findPgbouncer() string {
	if p, err := exec.LookPath("pgbouncer"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/pgbouncer"); err == nil {
		return "/usr/sbin/pgbouncer"
	}
	return ""
}

// startPgbouncer writes PgBouncer's configuration to dir and starts it, as
// the postgres OS user when root (PgBouncer refuses to run as root).
func startPgbouncer(bin, dir string, s poolerSettings) (*process, error) {
	port, err := pgtest.FreePort()
	if err != nil {
		return nil, err
	}
	ini := filepath.Join(dir, "pgbouncer.ini")
	users := filepath.Join(dir, "userlist.txt")
	if err := os.WriteFile(users, []byte(fmt.Sprintf("%q %q\n", s.pg.user, s.pg.secret())), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(ini, []byte(pgbouncerConfig(s, port, users)), 0o644); err != nil {
		return nil, err
	}
	cmd := s.command(bin, ini)
	cmd.Dir = dir
	cred, err := pgtest.Credential()
	if err != nil {
		return nil, err
	}
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	p, err := launch("pgbouncer", cmd, port, filepath.Join(dir, "pgbouncer.log"), s.wait())
	if err != nil {
		return nil, err
	}
	p.start = func() (*process, error) { return startPgbouncer(bin, dir, s) }
	return p, nil
}

func pgbouncerConfig(s poolerSettings, port int, userlist string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `[databases]
%s = host=%s port=%d dbname=%s
%s = host=%s port=%d dbname=%s pool_mode=session pool_size=%d

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = scram-sha-256
auth_file = %s
pool_mode = transaction
default_pool_size = %d
max_client_conn = %d
log_connections = 0
log_disconnections = 0
`, txnDB, s.pg.host, s.pg.port, s.pg.dbname,
		sessionDB, s.pg.host, s.pg.port, s.pg.dbname, s.sessionPool,
		port, userlist, s.backends, s.maxClients)
	if s.tls != nil {
		fmt.Fprintf(&b, "client_tls_sslmode = require\nclient_tls_cert_file = %s\nclient_tls_key_file = %s\n", s.tls.cert, s.tls.key)
	}
	fmt.Fprintf(&b, "server_tls_sslmode = %s\n", s.serverTLSMode())
	return b.String()
}

// serverTLSMode is how both poolers reach PostgreSQL (pgmts's
// server_tls_mode, PgBouncer's server_tls_sslmode).
func (s poolerSettings) serverTLSMode() string {
	if s.serverTLS {
		return "require"
	}
	return "disable"
}

// writePostgresTLSFiles writes a throwaway certificate for a scratch
// PostgreSQL, in a directory of its own: PostgreSQL wants its key readable
// by its OS user only.
func writePostgresTLSFiles(work string) (*tlsFiles, error) {
	dir := filepath.Join(work, "postgres-tls")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, err
	}
	t, err := writeTLSFiles(dir)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(t.key, 0o600); err != nil {
		return nil, err
	}
	cred, err := pgtest.Credential()
	if err != nil || cred == nil {
		return t, err
	}
	for _, f := range []string{t.cert, t.key} {
		if err := os.Chown(f, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// tlsFiles is a throwaway self-signed certificate both poolers present.
type tlsFiles struct{ cert, key string }

func writeTLSFiles(dir string) (*tlsFiles, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	t := &tlsFiles{cert: filepath.Join(dir, "server.crt"), key: filepath.Join(dir, "server.key")}
	// Readable by PgBouncer's postgres user; the key guards nothing but this run.
	if err := os.WriteFile(t.cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(t.key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o644); err != nil {
		return nil, err
	}
	return t, nil
}

func fileTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return lastLines(string(b), 10)
}
