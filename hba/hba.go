// Package hba reads a pg_hba.conf-style file (auth_hba_file) and picks,
// top to bottom like PostgreSQL, the rule that applies to a client.
//
// Parsing follows PostgreSQL's tokenizer so that a file written for
// PostgreSQL means the same thing here; anything pgmts cannot honour
// (hostnames, groups, included files, other methods) is refused at load
// time rather than silently never matching.
package hba

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
)

// Rule is one line of the file.
//
// A quoted database or user name that spells a keyword (e.g. "all") is
// stored with its double quotes so it stays distinct from the keyword;
// Match compares it as the plain name.
type Rule struct {
	Line      int               // 1-based line number in the file
	Type      string            // local | host | hostssl | hostnossl
	Databases []string          // as written, keywords lower-cased: all, sameuser, replication, or names
	Users     []string          // all, or names
	Net       *net.IPNet        // nil for "local" and for address "all"
	AllAddrs  bool              // address "all"
	Method    string            // trust | reject | md5 | scram-sha-256 | password | cert
	Options   map[string]string // name=value options after the method (kept, not interpreted)
}

// Conn describes a client asking to log in.
type Conn struct {
	Local    bool // unix socket
	TLS      bool
	Addr     net.IP // nil for unix socket
	Database string
	User     string
}

// token is one comma-separated item of a field.
type token struct {
	s string
	// quoted is set when the token starts with a double quote; PostgreSQL
	// then never treats it as a keyword or special prefix.
	quoted bool
}

// Parse reads rules from r; name prefixes error messages ("NAME:LINE: ...").
func Parse(r io.Reader, name string) ([]Rule, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	var rules []Rule
	lines := strings.Split(string(data), "\n")
	for i := 0; i < len(lines); i++ {
		lineNo := i + 1
		line := strings.TrimRight(lines[i], "\r")
		// As in PostgreSQL, a backslash that is the very last character
		// joins the next line; at end of file it is just dropped.
		for strings.HasSuffix(line, `\`) {
			line = line[:len(line)-1]
			if i+1 == len(lines) {
				break
			}
			i++
			line += strings.TrimRight(lines[i], "\r")
		}
		fields := tokenize(line)
		if len(fields) == 0 {
			continue
		}
		rule, err := parseLine(fields, lineNo)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, lineNo, err)
		}
		rules = append(rules, rule)
	}
	return rules, nil
}

// Load reads and parses the file at path.
func Load(path string) ([]Rule, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(bytes.NewReader(data), path)
}

// Match returns the first rule that applies; ok is false when none does
// (PostgreSQL then refuses the login: "no pg_hba.conf entry for ...").
func Match(rules []Rule, c Conn) (r Rule, ok bool) {
	for _, r := range rules {
		if connMatches(r, c) && databaseMatches(r.Databases, c) && userMatches(r.Users, c.User) {
			return r, true
		}
	}
	return Rule{}, false
}

func connMatches(r Rule, c Conn) bool {
	switch r.Type {
	case "local":
		return c.Local
	case "host":
	case "hostssl":
		if !c.TLS {
			return false
		}
	case "hostnossl":
		if c.TLS {
			return false
		}
	default:
		return false
	}
	if c.Local {
		return false
	}
	if r.AllAddrs {
		return true
	}
	if r.Net == nil || c.Addr == nil {
		return false
	}
	// Rules only match their own IP family, as in PostgreSQL. Go reports
	// IPv4 and IPv4-mapped IPv6 peers alike (To4 != nil), so both count as
	// IPv4; the explicit check also keeps net.IPNet.Contains from treating
	// an IPv6 rule such as ::ffff:0:0/96 as an IPv4 one.
	ruleIs4 := len(r.Net.Mask) == net.IPv4len
	return ruleIs4 == (c.Addr.To4() != nil) && r.Net.Contains(c.Addr)
}

func databaseMatches(databases []string, c Conn) bool {
	for _, d := range databases {
		switch d {
		case "all":
			return true
		case "sameuser":
			if c.Database == c.User {
				return true
			}
		case "replication":
			// Matches only replication connections, which pgmts never serves.
		default:
			if unquote(d) == c.Database {
				return true
			}
		}
	}
	return false
}

func userMatches(users []string, user string) bool {
	for _, u := range users {
		if u == "all" || unquote(u) == user {
			return true
		}
	}
	return false
}

// storedName is how a database or user token is kept in a Rule: quoted
// names that would otherwise read as a keyword (or as such a quoted name)
// keep their quotes.
func storedName(t token) string {
	if t.quoted && (isKeyword(t.s) || strings.HasPrefix(t.s, `"`)) {
		return `"` + t.s + `"`
	}
	return t.s
}

func unquote(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return s[1 : len(s)-1]
	}
	return s
}

func isKeyword(s string) bool {
	return s == "all" || s == "sameuser" || s == "replication"
}

func isBlank(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\n'
}

// tokenize splits a line into whitespace-separated fields of
// comma-separated tokens, the way PostgreSQL's next_field_expand does.
func tokenize(line string) [][]token {
	var fields [][]token
	for p := 0; p < len(line); {
		var field []token
		for {
			t, comma, ok := nextToken(line, &p)
			if !ok {
				break
			}
			field = append(field, t)
			if !comma {
				break
			}
		}
		if field != nil {
			fields = append(fields, field)
		}
	}
	return fields
}

// nextToken mirrors PostgreSQL's next_token: leading blanks and commas are
// skipped, "#" outside quotes ends the line, and "" inside quotes is a
// literal quote. ok is false when no token remains.
func nextToken(line string, pos *int) (t token, comma, ok bool) {
	p := *pos
	for p < len(line) && (isBlank(line[p]) || line[p] == ',') {
		p++
	}
	var b strings.Builder
	inQuote, wasQuote, sawQuote := false, false, false
	for ; p < len(line) && (inQuote || !isBlank(line[p])); p++ {
		c := line[p]
		if c == '#' && !inQuote {
			p = len(line)
			break
		}
		if c == ',' && !inQuote {
			comma = true
			p++
			break
		}
		if c != '"' || wasQuote {
			b.WriteByte(c)
		}
		wasQuote = inQuote && c == '"' && !wasQuote
		if c == '"' {
			inQuote = !inQuote
			sawQuote = true
			if b.Len() == 0 {
				t.quoted = true
			}
		}
	}
	*pos = p
	t.s = b.String()
	return t, comma, sawQuote || b.Len() > 0
}

const methods = "trust, reject, md5, scram-sha-256, password and cert"

func parseLine(fields [][]token, lineNo int) (Rule, error) {
	for _, f := range fields {
		for _, t := range f {
			if !t.quoted && len(t.s) > 1 && t.s[0] == '@' {
				return Rule{}, fmt.Errorf("file inclusion %q is not supported by pgmts; list the names on the line instead", t.s)
			}
		}
	}
	typ, err := single(fields[0], "connection type")
	if err != nil {
		return Rule{}, err
	}
	format := typ + " DATABASE USER ADDRESS METHOD [OPTIONS]"
	switch typ {
	case "include", "include_if_exists", "include_dir":
		return Rule{}, fmt.Errorf("%q directives are not supported by pgmts; put all rules in this file", typ)
	case "local":
		format = "local DATABASE USER METHOD [OPTIONS]"
	case "host", "hostssl", "hostnossl":
	default:
		return Rule{}, fmt.Errorf("unknown connection type %q; use local, host, hostssl or hostnossl", typ)
	}
	fields = fields[1:]
	next := func(what string) ([]token, error) {
		if len(fields) == 0 {
			return nil, fmt.Errorf("line ends before the %s field; expected %q", what, format)
		}
		f := fields[0]
		fields = fields[1:]
		return f, nil
	}

	r := Rule{Line: lineNo, Type: typ}
	dbs, err := next("database")
	if err != nil {
		return Rule{}, err
	}
	for _, t := range dbs {
		if !t.quoted {
			switch {
			case t.s == "samerole" || t.s == "samegroup":
				return Rule{}, fmt.Errorf("database keyword %q is not supported by pgmts; list the databases by name", t.s)
			case strings.HasPrefix(t.s, "/"):
				return Rule{}, regexpError(t.s)
			}
		}
		r.Databases = append(r.Databases, storedName(t))
	}
	users, err := next("user")
	if err != nil {
		return Rule{}, err
	}
	for _, t := range users {
		if !t.quoted {
			switch {
			case strings.HasPrefix(t.s, "+"):
				return Rule{}, fmt.Errorf("group entry %q is not supported by pgmts; list the users by name", t.s)
			case strings.HasPrefix(t.s, "/"):
				return Rule{}, regexpError(t.s)
			}
		}
		r.Users = append(r.Users, storedName(t))
	}
	if typ != "local" {
		f, err := next("address")
		if err != nil {
			return Rule{}, err
		}
		if err := parseAddress(&r, f, &fields); err != nil {
			return Rule{}, err
		}
	}

	f, err := next("method")
	if err != nil {
		return Rule{}, err
	}
	if r.Method, err = single(f, "method"); err != nil {
		return Rule{}, err
	}
	switch r.Method {
	case "trust", "reject", "md5", "scram-sha-256", "password", "cert":
	default:
		hint := ""
		if _, err := netip.ParseAddr(r.Method); typ == "local" && (err == nil || strings.Contains(r.Method, "/")) {
			hint = " (local lines have no address field)"
		}
		return Rule{}, fmt.Errorf("unknown authentication method %q%s; pgmts supports %s", r.Method, hint, methods)
	}
	// PostgreSQL refuses this too: without TLS there is no client certificate.
	if r.Method == "cert" && typ != "hostssl" {
		return Rule{}, errors.New(`method "cert" needs a TLS connection; use connection type hostssl`)
	}

	for _, f := range fields {
		for _, t := range f {
			k, v, ok := strings.Cut(t.s, "=")
			if !ok || k == "" {
				return Rule{}, fmt.Errorf("option %q is not in name=value form", t.s)
			}
			if r.Options == nil {
				r.Options = make(map[string]string)
			}
			r.Options[k] = v
		}
	}
	return r, nil
}

func regexpError(s string) error {
	return fmt.Errorf("regular expression %q is not supported by pgmts; list the names, or double-quote a name that starts with a slash", s)
}

func single(f []token, what string) (string, error) {
	if len(f) != 1 {
		return "", fmt.Errorf("the %s field must hold exactly one value, not a comma-separated list; use one line per value", what)
	}
	return f[0].s, nil
}

// parseAddress fills r.Net or r.AllAddrs from the address field, taking the
// netmask column from the remaining fields when the address has no /bits.
func parseAddress(r *Rule, f []token, rest *[][]token) error {
	a, err := single(f, "address")
	if err != nil {
		return err
	}
	quoted := f[0].quoted
	switch {
	case !quoted && a == "all":
		r.AllAddrs = true
		return nil
	case !quoted && (a == "samehost" || a == "samenet"):
		return fmt.Errorf("address %q is not supported by pgmts; use an IP address or CIDR", a)
	case strings.Contains(a, "/"):
		p, err := netip.ParsePrefix(a)
		if err != nil {
			return fmt.Errorf("invalid CIDR address %q; write it like 10.0.0.0/8 or ::1/128", a)
		}
		r.Net = ipNet(p.Masked())
		return nil
	}
	ip, err := netip.ParseAddr(a)
	if err != nil || ip.Zone() != "" {
		return fmt.Errorf("address %q is not an IP address; hostnames are not supported by pgmts, use an IP address or CIDR", a)
	}
	noMask := fmt.Errorf("IP address %q has no netmask; write it as %s/%d or put a netmask column after it", a, a, ip.BitLen())
	if len(*rest) == 0 {
		return noMask
	}
	mf := (*rest)[0]
	*rest = (*rest)[1:]
	m, err := single(mf, "netmask")
	if err != nil {
		return err
	}
	mask, err := netip.ParseAddr(m)
	if err != nil || mask.Zone() != "" {
		return noMask
	}
	if mask.Is4() != ip.Is4() {
		return fmt.Errorf("netmask %q is not the same IP version as address %q", m, a)
	}
	ones, bits := net.IPMask(mask.AsSlice()).Size()
	if bits == 0 {
		return fmt.Errorf("invalid netmask %q: its one bits must be contiguous, like 255.255.255.0", m)
	}
	r.Net = ipNet(netip.PrefixFrom(ip, ones).Masked())
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
