package hba

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func cidr(t testing.TB, s string) *net.IPNet {
	t.Helper()
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []Rule
	}{
		{"empty", "", nil},
		{"only comments and blanks", "# c\n\n   \t\n  # indented\n", nil},
		{
			"local",
			"local all all trust",
			[]Rule{{Line: 1, Type: "local", Databases: []string{"all"}, Users: []string{"all"}, Method: "trust"}},
		},
		{
			"comments blank lines and tabs",
			"# header\n\nhost\tall\tall\t10.0.0.0/8\tmd5 # trailing\n",
			[]Rule{{Line: 3, Type: "host", Databases: []string{"all"}, Users: []string{"all"}, Net: cidr(t, "10.0.0.0/8"), Method: "md5"}},
		},
		{
			"lists, host bits masked off",
			"host db1,db2 alice,bob 10.1.2.3/8 scram-sha-256",
			[]Rule{{Line: 1, Type: "host", Databases: []string{"db1", "db2"}, Users: []string{"alice", "bob"}, Net: cidr(t, "10.0.0.0/8"), Method: "scram-sha-256"}},
		},
		{
			"blank after comma continues the list",
			"host a, b u all trust",
			[]Rule{{Line: 1, Type: "host", Databases: []string{"a", "b"}, Users: []string{"u"}, AllAddrs: true, Method: "trust"}},
		},
		{
			"unquoted names keep case, ALL is a name",
			"hostnossl MyDb,ALL Alice all password",
			[]Rule{{Line: 1, Type: "hostnossl", Databases: []string{"MyDb", "ALL"}, Users: []string{"Alice"}, AllAddrs: true, Method: "password"}},
		},
		{
			"keywords",
			"local sameuser,replication all reject",
			[]Rule{{Line: 1, Type: "local", Databases: []string{"sameuser", "replication"}, Users: []string{"all"}, Method: "reject"}},
		},
		{
			"quoted names with commas, blanks, hash and escaped quote",
			`host "My DB","a,b c","db#1","x""y" "Alice" all md5`,
			[]Rule{{Line: 1, Type: "host", Databases: []string{"My DB", "a,b c", "db#1", `x"y`}, Users: []string{"Alice"}, AllAddrs: true, Method: "md5"}},
		},
		{
			"quoted keywords and special prefixes are names",
			`host "all","sameuser","@dbs","/x","samerole" "all","+admins" all md5`,
			[]Rule{{Line: 1, Type: "host", Databases: []string{`"all"`, `"sameuser"`, "@dbs", "/x", "samerole"}, Users: []string{`"all"`, "+admins"}, AllAddrs: true, Method: "md5"}},
		},
		{
			"continuation lines",
			"host all \\\n  all 10.0.0.0/8 \\\r\n md5\nlocal all all trust\\",
			[]Rule{
				{Line: 1, Type: "host", Databases: []string{"all"}, Users: []string{"all"}, Net: cidr(t, "10.0.0.0/8"), Method: "md5"},
				{Line: 4, Type: "local", Databases: []string{"all"}, Users: []string{"all"}, Method: "trust"},
			},
		},
		{
			"netmask column",
			"host all all 127.0.0.1 255.255.255.255 trust\nhost all all 10.1.2.3 255.0.0.0 md5\nhost all all ::1 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff trust",
			[]Rule{
				{Line: 1, Type: "host", Databases: []string{"all"}, Users: []string{"all"}, Net: cidr(t, "127.0.0.1/32"), Method: "trust"},
				{Line: 2, Type: "host", Databases: []string{"all"}, Users: []string{"all"}, Net: cidr(t, "10.0.0.0/8"), Method: "md5"},
				{Line: 3, Type: "host", Databases: []string{"all"}, Users: []string{"all"}, Net: cidr(t, "::1/128"), Method: "trust"},
			},
		},
		{
			"IPv6 CIDR",
			"host all all fe80::1/10 password\nhost all all ::ffff:10.0.0.0/104 md5",
			[]Rule{
				{Line: 1, Type: "host", Databases: []string{"all"}, Users: []string{"all"}, Net: cidr(t, "fe80::/10"), Method: "password"},
				{Line: 2, Type: "host", Databases: []string{"all"}, Users: []string{"all"}, Net: cidr(t, "::ffff:10.0.0.0/104"), Method: "md5"},
			},
		},
		{
			"options",
			`hostssl all all ::1/128 cert clientcert=verify-full map=a,b=2 "c=x y" d=`,
			[]Rule{{Line: 1, Type: "hostssl", Databases: []string{"all"}, Users: []string{"all"}, Net: cidr(t, "::1/128"), Method: "cert",
				Options: map[string]string{"clientcert": "verify-full", "map": "a", "b": "2", "c": "x y", "d": ""}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(strings.NewReader(tt.in), "pg_hba.conf")
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		in   string
		line int
		want []string // substrings of the message after "NAME:LINE: "
	}{
		{"foo all all trust", 1, []string{`unknown connection type "foo"`, "local, host, hostssl or hostnossl"}},
		{"hostgssenc all all all trust", 1, []string{`unknown connection type "hostgssenc"`}},
		{"host,local all all all trust", 1, []string{"connection type field", "exactly one"}},
		{"host all all all peer", 1, []string{`unknown authentication method "peer"`, "trust, reject, md5, scram-sha-256, password and cert"}},
		{"local all all 127.0.0.1/32 trust", 1, []string{`unknown authentication method "127.0.0.1/32"`, "local lines have no address"}},
		{"host all all all md5,trust", 1, []string{"method field", "exactly one"}},
		{"host all all all cert", 1, []string{`"cert"`, "hostssl"}},
		{"host all all db.example.com md5", 1, []string{`"db.example.com"`, "hostnames are not supported", "use an IP address or CIDR"}},
		{`host all all "all" md5`, 1, []string{`"all"`, "hostnames are not supported"}},
		{"host all all samehost md5", 1, []string{`"samehost"`, "use an IP address or CIDR"}},
		{"host all all samenet md5", 1, []string{`"samenet"`, "use an IP address or CIDR"}},
		{"host all all 10.0.0.0/8,::1/128 md5", 1, []string{"address field", "exactly one"}},
		{"host @dbs all all md5", 1, []string{`"@dbs"`, "not supported by pgmts"}},
		{"host all @users all md5", 1, []string{`"@users"`, "not supported by pgmts"}},
		{"host all +admins all md5", 1, []string{`"+admins"`, "not supported by pgmts"}},
		{"host samerole all all md5", 1, []string{`"samerole"`, "not supported by pgmts"}},
		{"host samegroup all all md5", 1, []string{`"samegroup"`, "not supported by pgmts"}},
		{`host /^db\d+$ all all md5`, 1, []string{"regular expression", "double-quote"}},
		{"host all /^a all md5", 1, []string{"regular expression"}},
		{"include other.conf", 1, []string{`"include"`, "not supported by pgmts"}},
		{"include_if_exists other.conf", 1, []string{`"include_if_exists"`, "not supported by pgmts"}},
		{"include_dir conf.d", 1, []string{`"include_dir"`, "not supported by pgmts"}},
		{"host", 1, []string{"before the database field"}},
		{"host all", 1, []string{"before the user field"}},
		{"host all all", 1, []string{"before the address field", "host DATABASE USER ADDRESS METHOD"}},
		{"host all all 10.0.0.0/8", 1, []string{"before the method field"}},
		{"host all all 127.0.0.1 255.255.255.255", 1, []string{"before the method field"}},
		{"local all all # no method", 1, []string{"before the method field", "local DATABASE USER METHOD"}},
		{"host all all 10.0.0.0/33 md5", 1, []string{`invalid CIDR address "10.0.0.0/33"`}},
		{"host all all 10.0.0/8 md5", 1, []string{`invalid CIDR address "10.0.0/8"`}},
		{"host all all 10.0.0.1 md5", 1, []string{`"10.0.0.1" has no netmask`, "10.0.0.1/32"}},
		{"host all all ::1 md5", 1, []string{`"::1" has no netmask`, "::1/128"}},
		{"host all all 10.0.0.1", 1, []string{"has no netmask"}},
		{"host all all 10.0.0.1 255.0.255.0 md5", 1, []string{`invalid netmask "255.0.255.0"`, "contiguous"}},
		{"host all all 10.0.0.1 ffff:: md5", 1, []string{`netmask "ffff::"`, "IP version"}},
		{"host all all all md5 foo", 1, []string{`option "foo"`, "name=value"}},
		{"host all all all md5 =x", 1, []string{`option "=x"`, "name=value"}},
		{"# ok\nlocal all all trust\n\nhost all all 10.0.0.1 md5", 4, []string{"has no netmask"}},
		{"local all all trust\nhost all \\\nall \\\nfoo.example md5", 2, []string{"hostnames"}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			rules, err := Parse(strings.NewReader(tt.in), "conf/pg_hba.conf")
			if err == nil {
				t.Fatalf("no error, rules %+v", rules)
			}
			if rules != nil {
				t.Errorf("rules returned with error: %+v", rules)
			}
			msg := err.Error()
			prefix := fmt.Sprintf("conf/pg_hba.conf:%d: ", tt.line)
			if !strings.HasPrefix(msg, prefix) {
				t.Errorf("error %q does not start with %q", msg, prefix)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
		})
	}
}

const matchConf = `
local     sameuser  all                       trust          # 2
local     all       all                       md5            # 3
hostnossl all       all       10.0.0.0/8      reject         # 4
hostssl   all       all       10.0.0.0/8      cert           # 5
host      all       evil      all             reject         # 6
host      shop      alice,bob 192.168.1.0 255.255.255.0 scram-sha-256 # 7
host      "Shop"    all       192.168.0.0/16  md5            # 8
host      replication all     all             trust          # 9
host      all       all       ::1/128         trust          # 10
host      all       all       fe80::/10       password       # 11
host      "all"     "all"     172.16.0.0/12   md5            # 12
host      all       v6only    ::/0            trust          # 13
host      all       v4only    0.0.0.0/0       trust          # 14
host      all       mapped    ::ffff:0:0/96   trust          # 15
host      sameuser  all       203.0.113.0/24  md5            # 16
`

func TestMatch(t *testing.T) {
	rules, err := Parse(strings.NewReader(matchConf), "pg_hba.conf")
	if err != nil {
		t.Fatal(err)
	}
	tcp := func(addr string, tls bool, db, user string) Conn {
		ip := net.ParseIP(addr)
		if ip == nil {
			t.Fatalf("bad test address %q", addr)
		}
		return Conn{TLS: tls, Addr: ip, Database: db, User: user}
	}
	tests := []struct {
		name string
		c    Conn
		line int // 0: no rule applies
	}{
		{"local sameuser", Conn{Local: true, Database: "alice", User: "alice"}, 2},
		{"local other database", Conn{Local: true, Database: "shop", User: "alice"}, 3},
		{"hostnossl skips TLS client", tcp("10.1.2.3", true, "shop", "alice"), 5},
		{"first match wins even if reject", tcp("10.1.2.3", false, "shop", "alice"), 4},
		{"IPv4-mapped client matches IPv4 rule", tcp("::ffff:10.1.2.3", true, "shop", "alice"), 5},
		{"4-byte client address", Conn{TLS: true, Addr: net.IP{10, 1, 2, 3}, Database: "shop", User: "alice"}, 5},
		{"reject before later allow", tcp("192.168.1.5", false, "shop", "evil"), 6},
		{"mask column and user list", tcp("192.168.1.5", true, "shop", "bob"), 7},
		{"outside netmask, database case differs", tcp("192.168.2.5", false, "shop", "alice"), 0},
		{"user not listed", tcp("192.168.1.5", false, "shop", "carol"), 0},
		{"quoted database keeps case", tcp("192.168.2.5", false, "Shop", "dave"), 8},
		{"replication keyword never matches", tcp("198.51.100.1", false, "replication", "x"), 0},
		{"IPv6 loopback", tcp("::1", true, "db", "x"), 10},
		{"IPv6 rule does not match IPv4 client", tcp("127.0.0.1", false, "db", "x"), 0},
		{"IPv6 prefix", tcp("fe80::1", false, "db", "x"), 11},
		{"quoted all is a name, both match", tcp("172.16.5.5", false, "all", "all"), 12},
		{"quoted all database is not the keyword", tcp("172.16.5.5", false, "db", "all"), 0},
		{"quoted all user is not the keyword", tcp("172.16.5.5", false, "all", "x"), 0},
		{"::/0 matches IPv6", tcp("2001:db8::1", false, "db", "v6only"), 13},
		{"::/0 does not match IPv4-mapped", tcp("::ffff:198.51.100.1", false, "db", "v6only"), 0},
		{"0.0.0.0/0 matches IPv4", tcp("198.51.100.1", false, "db", "v4only"), 14},
		{"0.0.0.0/0 does not match IPv6", tcp("2001:db8::1", false, "db", "v4only"), 0},
		{"IPv6-format mapped rule stays IPv6", tcp("198.51.100.1", false, "db", "mapped"), 0},
		{"host sameuser", tcp("203.0.113.9", false, "erin", "erin"), 16},
		{"host sameuser mismatch", tcp("203.0.113.9", false, "db", "erin"), 0},
		{"TCP client without address", Conn{Database: "db", User: "x"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, ok := Match(rules, tt.c)
			got := 0
			if ok {
				got = r.Line
			}
			if got != tt.line {
				t.Errorf("Match = line %d, ok %v; want line %d", r.Line, ok, tt.line)
			}
		})
	}
}

func TestMatchConnectionType(t *testing.T) {
	clients := []struct {
		name string
		c    Conn
	}{
		{"unix", Conn{Local: true}},
		{"tcp", Conn{Addr: net.ParseIP("10.0.0.1")}},
		{"tls", Conn{TLS: true, Addr: net.ParseIP("10.0.0.1")}},
	}
	want := map[string][3]bool{ // unix, tcp, tls
		"local":     {true, false, false},
		"host":      {false, true, true},
		"hostssl":   {false, false, true},
		"hostnossl": {false, true, false},
	}
	for typ, w := range want {
		addr := " all"
		if typ == "local" {
			addr = ""
		}
		rules, err := Parse(strings.NewReader(typ+" all all"+addr+" trust"), "t")
		if err != nil {
			t.Fatal(err)
		}
		for i, cl := range clients {
			cl.c.Database, cl.c.User = "db", "u"
			if _, ok := Match(rules, cl.c); ok != w[i] {
				t.Errorf("%s rule, %s client: ok = %v, want %v", typ, cl.name, ok, w[i])
			}
		}
	}
	if _, ok := Match(nil, Conn{Local: true}); ok {
		t.Error("Match on no rules reported a match")
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "pg_hba.conf")
	if err := os.WriteFile(good, []byte("# pgmts\nhost all all 0.0.0.0/0 scram-sha-256\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rules, err := Load(good)
	if err != nil {
		t.Fatal(err)
	}
	want := []Rule{{Line: 2, Type: "host", Databases: []string{"all"}, Users: []string{"all"}, Net: cidr(t, "0.0.0.0/0"), Method: "scram-sha-256"}}
	if !reflect.DeepEqual(rules, want) {
		t.Errorf("got %+v, want %+v", rules, want)
	}

	bad := filepath.Join(dir, "bad.conf")
	if err := os.WriteFile(bad, []byte("host all all example.com md5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(bad); err == nil || !strings.HasPrefix(err.Error(), bad+":1: ") {
		t.Errorf("Load(bad) error = %v, want prefix %q", err, bad+":1: ")
	}
	if _, err := Load(filepath.Join(dir, "missing.conf")); !os.IsNotExist(err) {
		t.Errorf("Load(missing) error = %v, want not-exist", err)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		matchConf,
		"local all all trust",
		`host "a""b",c "x y" 10.0.0.1 255.0.0.0 md5 a=b`,
		"hostssl all all ::1/128 cert clientcert=verify-full \\\n x=y",
		"host all all 10.0.0.1 md5",
		"include x",
		`host "all  # x`,
	} {
		f.Add(s)
	}
	types := map[string]bool{"local": true, "host": true, "hostssl": true, "hostnossl": true}
	methods := map[string]bool{"trust": true, "reject": true, "md5": true, "scram-sha-256": true, "password": true, "cert": true}
	f.Fuzz(func(t *testing.T, s string) {
		rules, err := Parse(strings.NewReader(s), "fuzz")
		if err != nil {
			return
		}
		for _, r := range rules {
			if !types[r.Type] || !methods[r.Method] {
				t.Fatalf("rule with unknown type or method: %+v", r)
			}
			if r.Line < 1 || (r.Type != "local" && r.AllAddrs == (r.Net != nil)) {
				t.Fatalf("inconsistent rule: %+v", r)
			}
		}
		Match(rules, Conn{Local: true, Database: "d", User: "u"})
		Match(rules, Conn{TLS: true, Addr: net.ParseIP("10.0.0.1"), Database: "d", User: "d"})
	})
}
