package main

import (
	"testing"

	"github.com/pgmts/pgmts/config"
)

func TestFileBudget(t *testing.T) {
	cfg, err := config.Parse([]byte(`
[pgmts]
max_client_conn = 1000
[pool]
max_shared_servers = 20
[databases.a]
[databases.b]
max_shared_servers = 5
`))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fileBudget(cfg), uint64(1000+64+20+5); got != want {
		t.Fatalf("fileBudget = %d, want %d", got, want)
	}
}
