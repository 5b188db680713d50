package admin

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/pgmts/pgmts/config"
	"github.com/pgmts/pgmts/sharedserver"
)

func parseConfig(t *testing.T, toml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(toml))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

const metricsConfig = `
[databases.a]
host = "127.0.0.1"
port = 1
[databases."*"]
host = "127.0.0.1"
port = 1
`

// checkExposition checks what promtool would: every family once, in one
// block, with a HELP text and a TYPE; counters named _total and nothing
// else; histograms with _bucket (le), _sum and _count series only.
func checkExposition(t *testing.T, out string) {
	t.Helper()
	types := map[string]string{}
	var current string
	for line := range strings.Lines(out) {
		line = strings.TrimSuffix(line, "\n")
		if rest, ok := strings.CutPrefix(line, "# HELP "); ok {
			name, help, _ := strings.Cut(rest, " ")
			if help == "" {
				t.Errorf("%s: no help text", name)
			}
			continue
		}
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, typ, _ := strings.Cut(rest, " ")
			if _, dup := types[name]; dup {
				t.Errorf("%s: a second TYPE line", name)
			}
			types[name], current = typ, name
			if (typ == "counter") != strings.HasSuffix(name, "_total") {
				t.Errorf("%s: a %s, named _total: %v", name, typ, strings.HasSuffix(name, "_total"))
			}
			continue
		}
		name, _, _ := strings.Cut(line, " ")
		name, _, _ = strings.Cut(name, "{")
		switch types[current] {
		case "histogram":
			if name != current+"_bucket" && name != current+"_sum" && name != current+"_count" {
				t.Errorf("%q outside its family's block (%s)", line, current)
			}
			if name == current+"_bucket" && !strings.Contains(line, `le="`) {
				t.Errorf("bucket without le: %q", line)
			}
		case "summary":
			if name != current && name != current+"_sum" && name != current+"_count" {
				t.Errorf("%q outside its family's block (%s)", line, current)
			}
		default:
			if name != current {
				t.Errorf("%q outside its family's block (%s)", line, current)
			}
		}
	}
}

// TestWriteMetrics: the exposition of a console with two pools (one
// auto-created by the "*" database, with a name that needs escaping), and
// of the same console after a reload removed both the "*" database and
// that pool.
func TestWriteMetrics(t *testing.T) {
	cfg := parseConfig(t, metricsConfig)
	log := slog.New(slog.DiscardHandler)
	pools := sharedserver.NewPools(cfg, log)
	defer pools.Close()
	c := New(cfg, "", new(slog.LevelVar), pools, log, "test")
	defer c.Close()
	q, err := pools.Route("a", "u")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pools.Route(`we"ird\db`, "u"); err != nil {
		t.Fatal(err)
	}
	q.Requests.WaitTime.Update(0.003)

	var b bytes.Buffer
	c.WriteMetrics(&b)
	out := b.String()
	checkExposition(t, out)
	for _, want := range []string{
		"# TYPE pgmts_clients gauge\npgmts_clients 0\n",
		"# TYPE pgmts_pool_transactions_total counter\n",
		`pgmts_pool_transactions_total{database="a",user="u"} 0` + "\n",
		`pgmts_pool_servers{database="a",user="u",state="starting"} 0` + "\n",
		`pgmts_pool_clients{database="a",user="u",state="waiting"} 0` + "\n",
		"# TYPE pgmts_pool_clients_pinned gauge\n",
		`pgmts_pool_clients_pinned{database="a",user="u"} 0` + "\n",
		`pgmts_pool_max_servers{database="a",user="u"} 20` + "\n",
		"# TYPE pgmts_pool_queue_wait_seconds histogram\n",
		`pgmts_pool_queue_wait_seconds_bucket{database="a",user="u",le="0.0025"} 0` + "\n",
		`pgmts_pool_queue_wait_seconds_bucket{database="a",user="u",le="0.005"} 1` + "\n",
		`pgmts_pool_queue_wait_seconds_count{database="a",user="u"} 1` + "\n",
		`pgmts_pool_query_duration_seconds_bucket{database="a",user="u",le="10"} 0` + "\n",
		`pgmts_pool_transaction_duration_seconds_bucket{database="a",user="u",le="+Inf"} 0` + "\n",
		`pgmts_pool_errors_total{database="we\"ird\\db",user="u"} 0` + "\n",
		"# TYPE pgmts_pool_session_state_queries_total counter\n",
		`pgmts_pool_statement_mode_refusals_total{database="a",user="u"} 0` + "\n",
		`pgmts_pool_server_login_failures_total{database="a",user="u"} 0` + "\n",
		`pgmts_pool_query_duration_seconds_count{database="we\"ird\\db",user="u"} 0` + "\n",
		"# TYPE go_goroutines gauge\n",
		"process_resident_memory_bytes ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}

	pools.Reload(parseConfig(t, "[databases.a]\nhost = \"127.0.0.1\"\nport = 1\n"))
	b.Reset()
	c.WriteMetrics(&b)
	out = b.String()
	checkExposition(t, out)
	if strings.Contains(out, "ird") {
		t.Errorf("the pool a reload removed is still reported:\n%s", out)
	}
	if !strings.Contains(out, `pgmts_pool_queue_wait_seconds_count{database="a",user="u"} 1`) {
		t.Errorf("the pool a reload kept lost its series:\n%s", out)
	}
}

// TestWriteLinted: VictoriaMetrics output gets HELP texts, _total gauges
// become counters, and _count families that are not histograms go.
func TestWriteLinted(t *testing.T) {
	in := "# HELP a_seconds\n# TYPE a_seconds histogram\na_seconds_bucket{le=\"1\"} 1\na_seconds_count 1\n" +
		"# HELP go_cpu_count\n# TYPE go_cpu_count gauge\ngo_cpu_count 2\n" +
		"# HELP process_io_read_bytes_total\n# TYPE process_io_read_bytes_total gauge\nprocess_io_read_bytes_total 7\n"
	var b bytes.Buffer
	writeLinted(&b, []byte(in), map[string]string{"a_seconds": "A."})
	want := "# HELP a_seconds A.\n# TYPE a_seconds histogram\na_seconds_bucket{le=\"1\"} 1\na_seconds_count 1\n" +
		"# HELP process_io_read_bytes_total Go runtime or process metric, as github.com/VictoriaMetrics/metrics names it.\n" +
		"# TYPE process_io_read_bytes_total counter\nprocess_io_read_bytes_total 7\n"
	if b.String() != want {
		t.Fatalf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}
