package main

import (
	"strings"
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

func TestFileLimitWarning(t *testing.T) {
	msg := fileLimitWarning(1024, 11089, 11000)
	for _, want := range []string{"open-file limit 1024", "11089 descriptors", "max_client_conn = 11000", "ulimit -n 11089", "LimitNOFILE=11089"} {
		if !strings.Contains(msg, want) {
			t.Errorf("warning lacks %q: %s", want, msg)
		}
	}
}
