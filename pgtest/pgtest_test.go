package pgtest

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestCluster(t *testing.T) {
	c := Require(t, Options{
		Users:     []User{{Name: "app", Password: "s3cret 'x'"}},
		Databases: []string{"appdb"},
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// The password must be stored as SCRAM, and TCP auth must check it.
	n, err := c.QueryInt(`SELECT count(*) FROM pg_authid WHERE rolname = 'app' AND rolpassword LIKE 'SCRAM-SHA-256$%'`)
	if err != nil || n != 1 {
		t.Fatalf("SCRAM password for app: n=%d err=%v", n, err)
	}
	if conn, err := pgx.Connect(ctx, c.DSN("app", "wrong", "appdb")); err == nil {
		conn.Close(ctx)
		t.Fatal("connected with a wrong password")
	}

	connect := func() *pgx.Conn {
		t.Helper()
		conn, err := pgx.Connect(ctx, c.DSN("app", "s3cret 'x'", "appdb"))
		if err != nil {
			t.Fatal(err)
		}
		var db string
		if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil || db != "appdb" {
			t.Fatalf("current_database: %q, %v", db, err)
		}
		return conn
	}
	wantBackends := func(user string, want int) {
		t.Helper()
		got, err := c.BackendCount(user)
		if err != nil || got != want {
			t.Fatalf("BackendCount(%q) = %d, %v; want %d", user, got, err, want)
		}
	}

	conn := connect()
	wantBackends("app", 1)
	wantBackends("nobody", 0)

	if err := c.Restart(); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx) // its backend died with the restart

	conn = connect()
	wantBackends("app", 1)
	conn.Close(ctx)

	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(c.Dir); !os.IsNotExist(err) {
		t.Fatalf("data dir still there after Stop: %v", err)
	}
	if err := c.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}

func TestDSNQuoting(t *testing.T) {
	c := &Cluster{Host: "127.0.0.1", Port: 5432}
	cfg, err := pgx.ParseConfig(c.DSN("u s", `p'w\d `, ""))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.User != "u s" || cfg.Password != `p'w\d ` || cfg.Database != "" || cfg.Port != 5432 {
		t.Fatalf("round trip: user=%q password=%q db=%q port=%d", cfg.User, cfg.Password, cfg.Database, cfg.Port)
	}
}
