package integration

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgmts/pgmts/auth"
	"github.com/pgmts/pgmts/config"
	"github.com/pgmts/pgmts/pgtest"
)

// createRole creates a login role in the test cluster for one test. Call
// it before startPgmts, so that the role is dropped after pgmts stops.
func createRole(t *testing.T, name, options string) {
	t.Helper()
	needCluster(t)
	if err := cluster.Exec("DROP ROLE IF EXISTS " + name); err != nil {
		t.Fatal(err)
	}
	if err := cluster.Exec("CREATE ROLE " + name + " LOGIN " + options); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cluster.Exec("DROP ROLE IF EXISTS " + name); err != nil {
			t.Error(err)
		}
	})
}

// withAuthQuery makes aq_lookup, a superuser, run auth_query, and adds
// [databases.forced], whose backend login is bench's.
func withAuthQuery(c *config.Config) {
	c.Pgmts.AuthUser = "aq_lookup"
	c.Users["aq_lookup"] = config.User{Password: "aq-lookup-pw"}
	c.Databases["forced"] = config.Database{Host: "127.0.0.1", Port: cluster.Port, DBName: "bench", User: benchUser, Password: benchPass}
}

// TestAuthQuery: a user with no password in pgmts's config logs in with
// the password PostgreSQL has for it, found by the default auth_query; a
// wrong password and an unknown user fail alike.
func TestAuthQuery(t *testing.T) {
	createRole(t, "aq_lookup", "SUPERUSER PASSWORD 'aq-lookup-pw'")
	createRole(t, "aq_user", "PASSWORD 'aq-pw'")
	for _, method := range []string{"scram-sha-256", "plain"} {
		t.Run(method, func(t *testing.T) {
			p := startPgmts(t, func(c *config.Config) {
				withAuthQuery(c)
				c.Pgmts.AuthType = method
			})
			c, err := pgx.Connect(ctx10(t), p.dsn("aq_user", "aq-pw", "forced"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close(ctx10(t))
			if got := queryString(t, c, "SELECT current_user::text"); got != benchUser {
				t.Fatalf("current_user = %q", got)
			}
			wrong := loginErr(t, p, "aq_user", "wrong", "forced")
			missing := loginErr(t, p, "aq_nobody", "aq-pw", "forced")
			if sqlState(wrong) != "28P01" || sqlState(missing) != "28P01" {
				t.Fatalf("wrong password: %v; unknown user: %v; want 28P01 for both", wrong, missing)
			}
			if a, b := strings.ReplaceAll(wrong.Error(), "aq_user", "X"), strings.ReplaceAll(missing.Error(), "aq_nobody", "X"); a != b {
				t.Fatalf("a wrong password and an unknown user differ:\n%s\n%s", a, b)
			}
			// Users the config knows are not looked up.
			if err := loginErr(t, p, benchUser, benchPass, "bench"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestAuthQueryBroken: an auth_query that cannot run gives the client a
// clear FATAL and the operator a warning saying what to fix.
func TestAuthQueryBroken(t *testing.T) {
	createRole(t, "aq_lookup", "SUPERUSER PASSWORD 'aq-lookup-pw'")
	createRole(t, "aq_user", "PASSWORD 'aq-pw'")
	for _, tc := range []struct {
		name string
		edit func(*config.Config)
		log  string
	}{
		{"bad query", func(c *config.Config) {
			c.Pgmts.AuthQuery = "SELECT usename, passwd FROM no_such_table WHERE usename=$1"
		},
			`auth_query failed (check pgmts.auth_query, and that auth_user \"aq_lookup\" may read what it selects): ERROR: relation \"no_such_table\" does not exist`},
		{"one column", func(c *config.Config) { c.Pgmts.AuthQuery = "SELECT passwd FROM pg_shadow WHERE usename=$1" },
			"auth_query returned 1 columns; it must return two"},
		{"auth_user cannot log in", func(c *config.Config) { c.Users["aq_lookup"] = config.User{Password: "wrong"} },
			`auth_user \"aq_lookup\" cannot log in to PostgreSQL (check auth_user, its plain-text password in [users] or auth_file, and pg_hba.conf)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs := &lockedBuffer{}
			p := startPgmtsLog(t, func(c *config.Config) {
				withAuthQuery(c)
				tc.edit(c)
			}, logs)
			err := loginErr(t, p, "aq_user", "aq-pw", "forced")
			if sqlState(err) != "28000" || !strings.Contains(err.Error(), `pgmts could not look up the password of user "aq_user": auth_query failed`) {
				t.Fatalf("login: %v", err)
			}
			if !strings.Contains(logs.String(), "auth_query lookup failed") || !strings.Contains(logs.String(), tc.log) {
				t.Fatalf("log lacks %q:\n%s", tc.log, logs)
			}
			if err := loginErr(t, p, benchUser, benchPass, "bench"); err != nil {
				t.Fatalf("a user with a password in the config: %v", err)
			}
		})
	}
}

// TestAuthQueryPassthrough: a user whose password only PostgreSQL has logs
// in through auth_query, and pgmts logs in to PostgreSQL as that user with
// the SCRAM keys the client proved: no password is stored in pgmts.
func TestAuthQueryPassthrough(t *testing.T) {
	createRole(t, "aq_lookup", "SUPERUSER PASSWORD 'aq-lookup-pw'")
	createRole(t, "aq_user", "PASSWORD 'aq-pw'")
	p := startPgmts(t, withAuthQuery)
	for i := range 3 {
		c, err := pgx.Connect(ctx10(t), p.dsn("aq_user", "aq-pw", "bench"))
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		if got := queryString(t, c, "SELECT current_user::text"); got != "aq_user" {
			t.Fatalf("current_user = %q", got)
		}
		if got := queryString(t, c, "SELECT string_agg(x::text, ',') FROM generate_series(1, $1::int) x", i+1); got != "1,2,3"[:2*i+1] {
			t.Fatalf("query: %q", got)
		}
		c.Close(ctx10(t))
	}
	if err := loginErr(t, p, "aq_user", "wrong", "bench"); sqlState(err) != "28P01" {
		t.Fatalf("wrong password: %v", err)
	}
}

// TestPassthroughChannelBinding: passthrough works when the client proved
// its password with SCRAM-SHA-256-PLUS over TLS.
func TestPassthroughChannelBinding(t *testing.T) {
	createRole(t, "aq_lookup", "SUPERUSER PASSWORD 'aq-lookup-pw'")
	createRole(t, "aq_user", "PASSWORD 'aq-pw'")
	p := startPgmts(t, withClientTLS(clientPKI(t), "require", withAuthQuery))
	c, err := pgx.Connect(ctx10(t), p.dsn("aq_user", "aq-pw", "bench", "sslmode=require channel_binding=require"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx10(t))
	if got := queryString(t, c, "SELECT current_user::text"); got != "aq_user" {
		t.Fatalf("current_user = %q", got)
	}
}

// verifierOf is the SCRAM verifier PostgreSQL stores for role.
func verifierOf(t *testing.T, role string) string {
	t.Helper()
	c, err := pgx.Connect(ctx10(t), cluster.DSN("postgres", "", "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx10(t))
	return queryString(t, c, "SELECT rolpassword FROM pg_authid WHERE rolname = $1", role)
}

// TestPassthroughVerifier: with pg_authid's SCRAM verifier in [users] and
// no plain password anywhere, the client's proof logs pgmts in to
// PostgreSQL, over psql and pgx, with TLS off or preferred.
func TestPassthroughVerifier(t *testing.T) {
	createRole(t, "aq_user", "PASSWORD 'aq-pw'")
	verifier := verifierOf(t, "aq_user")
	for _, tlsMode := range []string{"disable", "prefer"} {
		t.Run(tlsMode, func(t *testing.T) {
			p := startPgmts(t, func(c *config.Config) {
				c.Pgmts.ServerTLSMode = tlsMode
				c.Users["aq_user"] = config.User{Password: verifier}
			})
			c, err := pgx.Connect(ctx10(t), p.dsn("aq_user", "aq-pw", "bench"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close(ctx10(t))
			if got := queryString(t, c, "SELECT current_user::text"); got != "aq_user" {
				t.Fatalf("current_user = %q", got)
			}
			psql, err := pgtest.FindBin("psql")
			if err != nil {
				t.Skip(err)
			}
			cmd := exec.Command(psql, "-XAtc", "SELECT current_user", p.dsn("aq_user", "aq-pw", "bench"))
			if out, err := cmd.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "aq_user" {
				t.Fatalf("psql: %v %s", err, out)
			}
		})
	}
}

// TestPassthroughVerifierMismatch: a verifier in pgmts that is not
// PostgreSQL's (same password, other salt) lets the client in to pgmts,
// but PostgreSQL refuses the keys: the client gets PostgreSQL's error and
// the log says the verifiers must match.
func TestPassthroughVerifierMismatch(t *testing.T) {
	createRole(t, "aq_user", "PASSWORD 'aq-pw'")
	logs := &lockedBuffer{}
	p := startPgmtsLog(t, func(c *config.Config) {
		c.Users["aq_user"] = config.User{Password: auth.SCRAMVerifier("aq-pw", []byte("not-postgres-salt"), 4096)}
	}, logs)
	err := loginErr(t, p, "aq_user", "aq-pw", "bench")
	if sqlState(err) != "28P01" || !strings.Contains(err.Error(), `password authentication failed for user "aq_user"`) {
		t.Fatalf("login: %v", err)
	}
	if want := "the SCRAM verifier pgmts has for it ([users], auth_file or auth_query) must be the one in pg_authid"; !strings.Contains(logs.String(), want) {
		t.Fatalf("log lacks %q:\n%s", want, logs)
	}
}

// TestPassthroughMD5: an md5 hash in [users] logs pgmts in to a
// PostgreSQL that asks for md5, with no plain password stored.
func TestPassthroughMD5(t *testing.T) {
	p := startPgmts(t, func(c *config.Config) {
		c.Pgmts.AuthType = "md5"
		c.Users["be_md5"] = config.User{Password: auth.MD5Password("be_md5", "pw-md5")}
	})
	c, err := pgx.Connect(ctx10(t), p.dsn("be_md5", "pw-md5", "bench"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx10(t))
	if got := queryString(t, c, "SELECT current_user::text"); got != "be_md5" {
		t.Fatalf("current_user = %q", got)
	}
}

// TestAuthQueryCache: answers, "no such user" too, are reused for
// auth_cache_ttl, then asked again.
func TestAuthQueryCache(t *testing.T) {
	createRole(t, "aq_lookup", "SUPERUSER PASSWORD 'aq-lookup-pw'")
	if err := cluster.Exec("DROP ROLE IF EXISTS aq_late"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cluster.Exec("DROP ROLE IF EXISTS aq_late") })
	p := startPgmts(t, func(c *config.Config) {
		withAuthQuery(c)
		c.Pgmts.AuthCacheTTL = time.Second
	})
	if err := loginErr(t, p, "aq_late", "late-pw", "bench"); sqlState(err) != "28P01" {
		t.Fatalf("before the role exists: %v", err)
	}
	if err := cluster.Exec("CREATE ROLE aq_late LOGIN PASSWORD 'late-pw'"); err != nil {
		t.Fatal(err)
	}
	if err := loginErr(t, p, "aq_late", "late-pw", "bench"); sqlState(err) != "28P01" {
		t.Fatalf("within auth_cache_ttl of the first answer: %v", err)
	}
	time.Sleep(1100 * time.Millisecond)
	if err := loginErr(t, p, "aq_late", "late-pw", "bench"); err != nil {
		t.Fatalf("after auth_cache_ttl: %v", err)
	}
}
