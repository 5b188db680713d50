package config

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/pgmts/pgmts/auth"
	"github.com/pgmts/pgmts/hba"
)

// ParseUserlist reads PgBouncer's auth_file format, so an existing
// userlist.txt works unchanged: each line is "user" "password" (plain, md5
// hash or SCRAM verifier); "" inside quotes is a quote; the rest of the
// line is ignored, and so are blank lines and lines starting with ; or #.
func ParseUserlist(r io.Reader, name string) (map[string]string, error) {
	users := map[string]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == ';' || line[0] == '#' {
			continue
		}
		user, rest, err := quoted(line)
		if err == nil {
			var password string
			password, _, err = quoted(strings.TrimLeft(rest, " \t"))
			if err == nil {
				if _, kerr := auth.StoredKind(password); kerr != nil {
					err = fmt.Errorf("password of %q: %w", user, kerr)
				}
				users[user] = password
			}
		}
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, n, err)
		}
	}
	return users, sc.Err()
}

// quoted reads one double-quoted field at the start of s.
func quoted(s string) (field, rest string, err error) {
	if s == "" || s[0] != '"' {
		return "", "", fmt.Errorf(`expected a double-quoted field, as in "user" "password"`)
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		if s[i] != '"' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 < len(s) && s[i+1] == '"' {
			b.WriteByte('"')
			i++
			continue
		}
		return b.String(), s[i+1:], nil
	}
	return "", "", fmt.Errorf("unterminated double quote")
}

// loadFiles reads the files the config names (auth_file, auth_hba_file),
// with relative paths taken from dir, the config file's directory.
func (c *Config) loadFiles(dir string) error {
	resolve := func(p string) string {
		if filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	if c.Pgmts.AuthFile != "" {
		path := resolve(c.Pgmts.AuthFile)
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("pgmts.auth_file: %w", err)
		}
		defer f.Close()
		users, err := ParseUserlist(f, path)
		if err != nil {
			return fmt.Errorf("pgmts.auth_file: %w", err)
		}
		if c.Users == nil {
			c.Users = map[string]User{}
		}
		// [users.NAME] sections win over auth_file lines.
		for name, password := range users {
			if _, ok := c.Users[name]; !ok {
				c.Users[name] = User{Password: password}
			}
		}
	}
	g := &c.Pgmts
	for _, p := range []*string{&g.ClientTLSCertFile, &g.ClientTLSKeyFile, &g.ClientTLSCAFile} {
		if *p != "" {
			*p = resolve(*p)
		}
	}
	// Read now, so that --check reports a bad certificate; the dispatchers
	// read the files again at start and on reload.
	if g.ClientTLSMode != "disable" {
		if _, err := tls.LoadX509KeyPair(g.ClientTLSCertFile, g.ClientTLSKeyFile); err != nil {
			return fmt.Errorf("pgmts.client_tls_cert_file / client_tls_key_file: %w", err)
		}
		if g.ClientTLSCAFile != "" {
			if _, err := LoadCAFile(g.ClientTLSCAFile); err != nil {
				return fmt.Errorf("pgmts.client_tls_ca_file: %w", err)
			}
		}
	}
	if c.Pgmts.AuthHBAFile != "" {
		rules, err := hba.Load(resolve(c.Pgmts.AuthHBAFile))
		if err != nil {
			return fmt.Errorf("pgmts.auth_hba_file: %w", err)
		}
		c.hbaRules = rules
	}
	return c.checkAuthUsers()
}

// LoadCAFile reads a PEM file of CA certificates.
func LoadCAFile(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate found", path)
	}
	return pool, nil
}

// HBA returns the rules of auth_hba_file (auth_type = "hba").
func (c *Config) HBA() []hba.Rule { return c.hbaRules }
