package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseUserlist(t *testing.T) {
	in := `"alice" "plain pw"
; comment
# comment

"bo""b" "md5` + strings.Repeat("0", 32) + `" trailing text
`
	got, err := ParseUserlist(strings.NewReader(in), "userlist.txt")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["alice"] != "plain pw" || got[`bo"b`] != "md5"+strings.Repeat("0", 32) {
		t.Fatalf("got %q", got)
	}
	for _, bad := range []struct{ in, want string }{
		{"alice plain\n", `userlist.txt:1: expected a double-quoted field`},
		{`"alice" "unterminated` + "\n", `userlist.txt:1: unterminated double quote`},
		{"\n\n\"alice\"\n", `userlist.txt:3: expected a double-quoted field`},
		{`"alice" "SCRAM-SHA-256$broken"` + "\n", `userlist.txt:1: password of "alice"`},
	} {
		_, err := ParseUserlist(strings.NewReader(bad.in), "userlist.txt")
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q: err = %v, want %q", bad.in, err, bad.want)
		}
	}
}

func TestLoadReadsNamedFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("userlist.txt", `"alice" "from-file"`+"\n"+`"bob" "from-file"`+"\n")
	write("hba.conf", "host all all 127.0.0.1/32 scram-sha-256\n")
	write("pgmts.toml", `[pgmts]
auth_type = "hba"
auth_file = "userlist.txt"
auth_hba_file = "hba.conf"
[users.bob]
password = "from-section"
`)
	cfg, err := Load(filepath.Join(dir, "pgmts.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Users["alice"].Password != "from-file" || cfg.Users["bob"].Password != "from-section" {
		t.Fatalf("users %+v: auth_file adds users, [users] sections win", cfg.Users)
	}
	if rules := cfg.HBA(); len(rules) != 1 || rules[0].Method != "scram-sha-256" {
		t.Fatalf("hba rules %+v", rules)
	}

	write("hba.conf", "host all all 127.0.0.1/32 sometimes\n")
	if _, err := Load(filepath.Join(dir, "pgmts.toml")); err == nil || !strings.Contains(err.Error(), "pgmts.auth_hba_file") || !strings.Contains(err.Error(), "hba.conf:1") {
		t.Fatalf("bad hba file: %v", err)
	}
	write("pgmts.toml", "[pgmts]\nauth_type = \"hba\"\n")
	if _, err := Load(filepath.Join(dir, "pgmts.toml")); err == nil || !strings.Contains(err.Error(), "pgmts.auth_hba_file: required") {
		t.Fatalf("hba without a file: %v", err)
	}
	write("pgmts.toml", "[pgmts]\nauth_file = \"missing.txt\"\n")
	if _, err := Load(filepath.Join(dir, "pgmts.toml")); err == nil || !strings.Contains(err.Error(), "missing.txt") {
		t.Fatalf("missing auth_file: %v", err)
	}
}
