package integration

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgmts/pgmts/config"
)

// TestBackendLoginMethods: pgmts logs in to PostgreSQL with trust,
// cleartext password, md5 and SCRAM-SHA-256, as pg_hba.conf asks for each
// user (see clusterHBA).
func TestBackendLoginMethods(t *testing.T) {
	p := startPgmts(t, func(c *config.Config) {
		c.Users = map[string]config.User{}
		for _, u := range backendAuthUsers {
			// Clients log in to pgmts with SCRAM using the same password.
			pw := u.password
			if pw == "" {
				pw = "client-side-only"
			}
			c.Users[u.name] = config.User{Password: pw}
		}
	})
	for _, u := range backendAuthUsers {
		t.Run(u.method, func(t *testing.T) {
			pw := u.password
			if pw == "" {
				pw = "client-side-only"
			}
			c, err := pgx.Connect(ctx10(t), p.dsn(u.name, pw, "bench"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close(ctx10(t))
			if got := queryString(t, c, "SELECT current_user::text"); got != u.name {
				t.Fatalf("current_user = %q", got)
			}
		})
	}
}

// TestBackendLoginFailure: a backend login PostgreSQL refuses reaches the
// client as PostgreSQL's own FATAL, and does not disturb other pools.
func TestBackendLoginFailure(t *testing.T) {
	p := startPgmts(t, func(c *config.Config) {
		c.Databases["wrongpw"] = config.Database{Host: "127.0.0.1", Port: cluster.Port, DBName: "bench", User: "be_scram", Password: "not-the-password"}
	})
	_, err := pgx.Connect(ctx10(t), p.dsn(benchUser, benchPass, "wrongpw"))
	if sqlState(err) != "28P01" || !strings.Contains(err.Error(), "be_scram") {
		t.Fatalf("login through a pool with a wrong backend password: %v", err)
	}
	ok := p.connect(t)
	if got := queryString(t, ok, "SELECT 'other pools fine'"); got != "other pools fine" {
		t.Fatal(got)
	}
}

// TestNoticesReachClient: NoticeResponse messages pass through.
func TestNoticesReachClient(t *testing.T) {
	p := startPgmts(t, nil)
	cfg, err := pgx.ParseConfig(p.dsn(benchUser, benchPass, "bench"))
	if err != nil {
		t.Fatal(err)
	}
	notices := make(chan string, 4)
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { notices <- n.Message }
	c, err := pgx.ConnectConfig(ctx10(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx10(t))
	if _, err := c.Exec(ctx10(t), "DO $$ BEGIN RAISE NOTICE 'hello from plpgsql'; END $$"); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-notices:
		if m != "hello from plpgsql" {
			t.Fatalf("notice %q", m)
		}
	default:
		t.Fatal("no notice reached the client")
	}
}

// TestBackendUnreachable: a pool whose PostgreSQL cannot be reached fails
// the login with a clear error instead of hanging. For server_login_retry
// after a failed attempt, logins fail at once with that error and no new
// attempt is made; then pgmts tries again.
func TestBackendUnreachable(t *testing.T) {
	p := startPgmts(t, func(c *config.Config) {
		c.Databases["nowhere"] = config.Database{Host: "127.0.0.1", Port: freePort(t), DBName: "bench"}
		c.Pool.ServerLoginRetry = 2 * time.Second
	})
	failures := func() int64 { return p.poolSum(loginFailures) }
	start := time.Now()
	_, err := pgx.Connect(ctx10(t), p.dsn(benchUser, benchPass, "nowhere"))
	if sqlState(err) != "08006" || !strings.Contains(err.Error(), "could not connect") {
		t.Fatalf("login to an unreachable backend: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}
	var pe *pgconn.PgError
	for range 5 {
		_, err = pgx.Connect(ctx10(t), p.dsn(benchUser, benchPass, "nowhere"))
		if !errors.As(err, &pe) || pe.Code != "08006" || !strings.Contains(pe.Message, "could not connect") ||
			!strings.Contains(pe.Detail, "tries again once server_login_retry (2s) has passed") {
			t.Fatalf("login within server_login_retry: %v (detail %q)", err, pe.Detail)
		}
	}
	if n := failures(); n != 1 {
		t.Fatalf("%d backend logins failed, want 1: logins within server_login_retry must not try again", n)
	}
	time.Sleep(time.Until(start.Add(2100 * time.Millisecond)))
	if _, err = pgx.Connect(ctx10(t), p.dsn(benchUser, benchPass, "nowhere")); sqlState(err) != "08006" {
		t.Fatalf("login after server_login_retry: %v", err)
	}
	if n := failures(); n != 2 {
		t.Fatalf("%d backend logins failed after server_login_retry, want 2", n)
	}
}

// TestQueryWaitTimeout: a request that waits longer than query_wait_timeout
// for a backend gets a FATAL naming the setting.
func TestQueryWaitTimeout(t *testing.T) {
	p := startPgmts(t, func(c *config.Config) {
		c.Pool.MaxSharedServers = 1
		c.Pool.QueryWaitTimeout = time.Second
	})
	holder := p.connect(t)
	tx, err := holder.Begin(ctx10(t))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx10(t))
	waiter := p.connect(t, "default_query_exec_mode=simple_protocol")
	start := time.Now()
	_, err = waiter.Exec(ctx10(t), "SELECT 1")
	if err == nil || !strings.Contains(err.Error(), "query_wait_timeout") {
		t.Fatalf("waiting request: %v", err)
	}
	if d := time.Since(start); d < time.Second || d > 4*time.Second {
		t.Fatalf("failed after %v; query_wait_timeout is 1s", d)
	}
	if _, err := tx.Exec(ctx10(t), "SELECT 1"); err != nil {
		t.Fatalf("the holder is disturbed: %v", err)
	}
}
