package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgmts/pgmts/auth"
	"github.com/pgmts/pgmts/config"
	"github.com/pgmts/pgmts/pgtest"
)

func loginErr(t *testing.T, p *pgmts, user, password, db string, extra ...string) error {
	t.Helper()
	c, err := pgx.Connect(ctx10(t), p.dsn(user, password, db, extra...))
	if err == nil {
		defer c.Close(ctx10(t))
		_, err = c.Exec(ctx10(t), "SELECT 1")
	}
	return err
}

// TestAuthPlain: auth_type = "plain" takes a cleartext password and checks
// it against plain, md5 and SCRAM secrets alike.
func TestAuthPlain(t *testing.T) {
	p := startPgmts(t, func(c *config.Config) {
		c.Pgmts.AuthType = "plain"
		c.Users["md5user"] = config.User{Password: auth.MD5Password("md5user", "pw")}
		c.Databases["bench"] = config.Database{Host: "127.0.0.1", Port: cluster.Port, User: benchUser, Password: benchPass}
	})
	if err := loginErr(t, p, benchUser, benchPass, "bench"); err != nil {
		t.Fatal(err)
	}
	if err := loginErr(t, p, "md5user", "pw", "bench"); err != nil {
		t.Fatalf("plain password against an md5 secret: %v", err)
	}
	for _, u := range [][2]string{{benchUser, "wrong"}, {"md5user", "wrong"}, {"nosuchuser", "pw"}} {
		if err := loginErr(t, p, u[0], u[1], "bench"); sqlState(err) != "28P01" {
			t.Fatalf("%s with a wrong password: %v", u[0], err)
		}
	}
}

// TestAuthFile: users from a PgBouncer-format auth_file log in, and their
// plain passwords serve the backend login too.
func TestAuthFile(t *testing.T) {
	dir := t.TempDir()
	list := `"` + appUser + `" "` + appPass + `"
; a comment
"verifier""user" "` + auth.SCRAMVerifier("vpw", []byte("0123456789abcdef"), 4096) + `" extra fields ignored
`
	if err := os.WriteFile(filepath.Join(dir, "userlist.txt"), []byte(list), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startPgmts(t, withConfigFile(t, func(toml string) string {
		toml = strings.Replace(toml, "[pgmts]\n", "[pgmts]\nauth_file = \""+filepath.Join(dir, "userlist.txt")+"\"\n", 1)
		return strings.Replace(toml, "[users."+appUser+"]\npassword = \""+appPass+"\"\n", "", 1)
	}))
	if err := loginErr(t, p, appUser, appPass, "bench"); err != nil {
		t.Fatalf("auth_file user: %v", err)
	}
	if err := loginErr(t, p, appUser, "wrong", "bench"); sqlState(err) != "28P01" {
		t.Fatalf("auth_file user, wrong password: %v", err)
	}
	// A SCRAM verifier from the file authenticates the client; the
	// backend login for that user is then PostgreSQL's business (no such
	// role there), so only the client side is checked.
	if err := loginErr(t, p, `verifier"user`, "wrong", "bench"); sqlState(err) != "28P01" {
		t.Fatalf("verifier user, wrong password: %v", err)
	}
	if err := loginErr(t, p, `verifier"user`, "vpw", "bench"); sqlState(err) == "28P01" && strings.Contains(err.Error(), "pgmts") {
		t.Fatalf("verifier user refused by pgmts: %v", err)
	}
}

// TestAuthHBA: auth_type = "hba" applies the first matching rule of
// auth_hba_file, as PostgreSQL reads pg_hba.conf.
func TestAuthHBA(t *testing.T) {
	dir := socketDir(t)
	rules := `# pgmts test rules
host  bench    ` + appUser + `    127.0.0.1/32  reject
host  bench    ` + benchUser + `  127.0.0.1/32  scram-sha-256
host  postgres ` + benchUser + `  127.0.0.1/32  password
local all      all                            trust
`
	path := filepath.Join(t.TempDir(), "hba.conf")
	if err := os.WriteFile(path, []byte(rules), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startPgmts(t, withConfigFile(t, func(toml string) string {
		toml = strings.Replace(toml, `auth_type = "scram-sha-256"`, `auth_type = "hba"`, 1)
		return strings.Replace(toml, "[pgmts]\n", "[pgmts]\nauth_hba_file = \""+path+"\"\nunix_socket_dir = \""+dir+"\"\n", 1)
	}))
	if err := loginErr(t, p, appUser, appPass, "bench"); sqlState(err) != "28000" || !strings.Contains(err.Error(), "rejects") {
		t.Fatalf("reject rule: %v", err)
	}
	if err := loginErr(t, p, benchUser, benchPass, "bench"); err != nil {
		t.Fatalf("scram rule: %v", err)
	}
	if err := loginErr(t, p, benchUser, "wrong", "bench"); sqlState(err) != "28P01" {
		t.Fatalf("scram rule, wrong password: %v", err)
	}
	if err := loginErr(t, p, benchUser, benchPass, "postgres"); err != nil {
		t.Fatalf("password rule: %v", err)
	}
	if err := loginErr(t, p, appUser, appPass, "postgres"); sqlState(err) != "28000" || !strings.Contains(err.Error(), "no pg_hba.conf entry") {
		t.Fatalf("no matching rule: %v", err)
	}
	// Over the unix socket the trust rule applies, whatever the password.
	c, err := pgx.Connect(ctx10(t), "host="+dir+" port="+strconv.Itoa(p.port)+" user="+benchUser+" password=anything dbname=bench")
	if err != nil {
		t.Fatalf("local trust rule: %v", err)
	}
	c.Close(ctx10(t))
}

// withConfigFile makes startPgmts use configTOML changed by edit, loaded
// from a file as the daemon would, so the files it names are read too.
func withConfigFile(t *testing.T, edit func(string) string) func(*config.Config) {
	return func(c *config.Config) {
		listen := c.Pgmts.Listen
		path := filepath.Join(t.TempDir(), "pgmts.toml")
		if err := os.WriteFile(path, []byte(edit(configTOML(1))), 0o600); err != nil {
			t.Fatal(err)
		}
		loaded, err := config.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		*c = *loaded
		c.Pgmts.Listen = listen
	}
}

// TestMaxClientConn: past max_client_conn a client gets 53300 at once and
// the others go on.
func TestMaxClientConn(t *testing.T) {
	p := startPgmts(t, func(c *config.Config) { c.Pgmts.MaxClientConn = 2 })
	a := p.connect(t)
	b := p.connect(t)
	if err := loginErr(t, p, benchUser, benchPass, "bench"); sqlState(err) != "53300" {
		t.Fatalf("third client: %v, want SQLSTATE 53300", err)
	}
	for _, c := range []*pgx.Conn{a, b} {
		if got := queryString(t, c, "SELECT 'ok'"); got != "ok" {
			t.Fatal(got)
		}
	}
	a.Close(ctx10(t))
	// The close reaches pgmts asynchronously: allow it a moment.
	var err error
	for i := 0; i < 20; i++ {
		if err = loginErr(t, p, benchUser, benchPass, "bench"); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("after one left: %v", err)
	}
}

// TestSCRAMLoginStorm: 500 clients authenticate with SCRAM at once; all
// get in and run a query.
func TestSCRAMLoginStorm(t *testing.T) {
	p := startPgmts(t, setMode("transaction", 10))
	concurrentClients(t, p, 500, func(ctx context.Context, _ int, c *pgx.Conn) error {
		var one int
		return c.QueryRow(ctx, "SELECT 1").Scan(&one)
	})
}

// TestAuthMethodsTCPAndUnix: each auth_type that takes a password lets the
// right one in and refuses a wrong one with 28P01, over TCP and over the
// unix socket, with pgx and psql; trust lets anyone in.
func TestAuthMethodsTCPAndUnix(t *testing.T) {
	psql, err := pgtest.FindBin("psql")
	if err != nil {
		t.Fatal(err)
	}
	for _, method := range []string{"trust", "plain", "md5", "scram-sha-256"} {
		t.Run(method, func(t *testing.T) {
			sock := socketDir(t)
			p := startPgmts(t, func(c *config.Config) {
				c.Pgmts.AuthType = method
				c.Pgmts.UnixSocketDir = sock
			})
			for _, host := range []string{"127.0.0.1", sock} {
				dsn := func(password string) string {
					return strings.Replace(p.dsn(benchUser, password, "bench"), "host=127.0.0.1", "host="+host, 1)
				}
				if c, err := pgx.Connect(ctx10(t), dsn(benchPass)); err != nil {
					t.Fatalf("%s over %s: %v", method, host, err)
				} else {
					c.Close(ctx10(t))
				}
				out, err := exec.Command(psql, "-XAtc", "SELECT 'psql in'", dsn(benchPass)).CombinedOutput()
				if err != nil || strings.TrimSpace(string(out)) != "psql in" {
					t.Fatalf("psql, %s over %s: %v %s", method, host, err, out)
				}
				err = loginErr(t, p, benchUser, "wrong", "bench", "host="+host)
				switch {
				case method == "trust" && err != nil:
					t.Fatalf("trust over %s with any password: %v", host, err)
				case method != "trust" && sqlState(err) != "28P01":
					t.Fatalf("%s over %s with a wrong password: %v, want 28P01", method, host, err)
				}
				out, err = exec.Command(psql, "-XAtc", "SELECT 1", dsn("wrong")).CombinedOutput()
				if method != "trust" && (err == nil || !strings.Contains(string(out), "password authentication failed")) {
					t.Fatalf("psql, %s over %s with a wrong password: %v %s", method, host, err, out)
				}
			}
		})
	}
}
