package admin

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/pgmts/pgmts/dispatcher"
	"github.com/pgmts/pgmts/sharedserver"
)

// ServeMetrics serves /metrics in Prometheus text format on
// metrics_listen, and Go's /debug/pprof there too with debug_pprof. It
// returns nil when metrics_listen is "".
func (c *Console) ServeMetrics() (*http.Server, error) {
	cfg := c.Config().Pgmts
	if cfg.MetricsListen == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", cfg.MetricsListen)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		c.WriteMetrics(w)
	})
	if cfg.DebugPprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			c.log.Error("metrics endpoint stopped", "err", err)
		}
	}()
	return srv, nil
}

// histogramHelp describes the pools' histograms (sharedserver/stats.go).
var histogramHelp = map[string]string{
	sharedserver.QueueWaitHistogram: "Time requests waited in the pool's request queue for a shared server " +
		"(a request sent while its client holds a server skips the queue).",
	sharedserver.QueryHistogram:       "Time from a request written to PostgreSQL to its ReadyForQuery.",
	sharedserver.TransactionHistogram: "Time from a transaction's first request to the ReadyForQuery that ends it.",
}

// WriteMetrics writes every metric in Prometheus text format: counters and
// gauges read from the same snapshots as the SHOW commands (so a pool a
// reload removed is gone from both), the pools' histograms, and the Go
// runtime and process metrics.
func (c *Console) WriteMetrics(w io.Writer) {
	st := c.metricsState()
	var b bytes.Buffer
	pw := promWriter{&b}

	pw.family("pgmts_clients", "gauge", "Client connections, logged in or logging in.")
	pw.sample("pgmts_clients", "", float64(st.loggedIn+st.disp.Logins))
	pw.family("pgmts_server_connections", "gauge", "Backend connections open or opening, in every pool.")
	pw.sample("pgmts_server_connections", "", float64(c.pools.BackendCount()))
	pw.family("pgmts_servers_started_total", "counter", "Backend connections ever opened.")
	pw.sample("pgmts_servers_started_total", "", float64(st.pools.Started))
	pw.family("pgmts_servers_highwater", "gauge", "Most backend connections open at once since the start.")
	pw.sample("pgmts_servers_highwater", "", float64(st.pools.HighWater))

	c.writePoolMetrics(pw, st)
	writeDispatcherMetrics(pw, st)

	// Metadata on: the filter below needs the HELP and TYPE lines.
	metrics.ExposeMetadata(true)
	var vm bytes.Buffer
	c.pools.WriteHistograms(&vm, st.pools.Pools)
	metrics.WriteProcessMetrics(&vm)
	writeLinted(&b, vm.Bytes(), histogramHelp)
	_, _ = w.Write(b.Bytes())
}

// metric is a counter or gauge read from a snapshot of T.
type metric[T any] struct {
	name, typ, help string
	value           func(*T) float64
}

// writeFamilies writes each metric's family, with one sample per item
// labelled by labels[i].
func writeFamilies[T any](pw promWriter, ms []metric[T], items []T, labels []string) {
	for _, m := range ms {
		pw.family(m.name, m.typ, m.help)
		for i := range items {
			pw.sample(m.name, labels[i], m.value(&items[i]))
		}
	}
}

// poolMetrics are the per-pool counters and gauges.
var poolMetrics = []metric[sharedserver.PoolSnapshot]{
	{"pgmts_pool_requests_total", "counter", "Request batches written to PostgreSQL.",
		func(p *sharedserver.PoolSnapshot) float64 { return float64(p.Totals.Requests) }},
	{"pgmts_pool_queries_total", "counter", "Queries ended (ReadyForQuery relayed to a client).",
		func(p *sharedserver.PoolSnapshot) float64 { return float64(p.Totals.Queries) }},
	{"pgmts_pool_transactions_total", "counter", "Transactions ended (ReadyForQuery with status idle).",
		func(p *sharedserver.PoolSnapshot) float64 { return float64(p.Totals.Transactions) }},
	{"pgmts_pool_received_bytes_total", "counter", "Client bytes written to PostgreSQL.",
		func(p *sharedserver.PoolSnapshot) float64 { return float64(p.Totals.Received) }},
	{"pgmts_pool_sent_bytes_total", "counter", "PostgreSQL reply bytes handed to clients.",
		func(p *sharedserver.PoolSnapshot) float64 { return float64(p.Totals.Sent) }},
	{"pgmts_pool_errors_total", "counter", "ErrorResponses PostgreSQL sent to the pool's clients.",
		func(p *sharedserver.PoolSnapshot) float64 { return float64(p.Totals.Errors) }},
	{"pgmts_pool_session_state_queries_total", "counter", "Queries pgmts sent to ask a backend which session state a client holds, or which parameters it set (after SET, RESET, DISCARD ALL, or SQL naming TEMP, WITH HOLD or an advisory lock).",
		func(p *sharedserver.PoolSnapshot) float64 { return float64(p.Totals.StateQueries) }},
	{"pgmts_pool_statement_mode_refusals_total", "counter", "Commands refused with ERROR 0A000 in statement pooling mode because they made session state (LISTEN, PREPARE, LOAD, a temporary table, a WITH HOLD cursor, a session advisory lock); each closes the backend that ran it.",
		func(p *sharedserver.PoolSnapshot) float64 { return float64(p.Totals.Refusals) }},
	{"pgmts_pool_queue_oldest_wait_seconds", "gauge", "How long the oldest waiting request has waited.",
		func(p *sharedserver.PoolSnapshot) float64 { return p.Queue.OldestWait.Seconds() }},
	{"pgmts_pool_servers_started_total", "counter", "Backend connections the pool opened (autoscaling included).",
		func(p *sharedserver.PoolSnapshot) float64 { return float64(p.Started) }},
	{"pgmts_pool_servers_terminated_total", "counter", "Backend connections the pool closed (idle retirement included).",
		func(p *sharedserver.PoolSnapshot) float64 { return float64(p.Terminated) }},
	{"pgmts_pool_server_login_failures_total", "counter", "Backend logins that failed (PostgreSQL unreachable, starting or shutting down, or refusing the login); after each the pool opens no backend for server_login_retry.",
		func(p *sharedserver.PoolSnapshot) float64 { return float64(p.LoginFailures) }},
	{"pgmts_pool_min_servers", "gauge", "shared_servers: backend connections the pool keeps open.",
		func(p *sharedserver.PoolSnapshot) float64 { return float64(p.MinServers) }},
	{"pgmts_pool_max_servers", "gauge", "max_shared_servers: the most backend connections the pool may open.",
		func(p *sharedserver.PoolSnapshot) float64 { return float64(p.MaxServers) }},
}

// serverStates are the states pgmts_pool_servers counts.
var serverStates = []sharedserver.ServerState{sharedserver.ServerIdle, sharedserver.ServerExec, sharedserver.ServerBound}

func (c *Console) writePoolMetrics(pw promWriter, st *state) {
	pools := st.pools.Pools
	labels := make([]string, len(pools))
	for i, p := range pools {
		labels[i] = sharedserver.PoolLabels(p.Database, p.User)
	}
	active, waiting := st.active, st.waiting
	pw.family("pgmts_pool_clients", "gauge", "Clients of the pool: waiting (a request in the queue) or active (any other).")
	for i, p := range pools {
		pw.sample("pgmts_pool_clients", labels[i]+`,state="active"`, float64(active[p.Name]))
		pw.sample("pgmts_pool_clients", labels[i]+`,state="waiting"`, float64(waiting[p.Name]))
	}
	pw.family("pgmts_pool_clients_pinned", "gauge",
		"Clients that keep their backend while their session holds state only it has (LISTEN, SQL PREPARE, WITH HOLD cursor, temporary table, advisory lock, LOAD), in transaction or statement mode.")
	for i, p := range pools {
		pw.sample("pgmts_pool_clients_pinned", labels[i], float64(st.pinned[p.Name]))
	}
	pw.family("pgmts_pool_servers", "gauge",
		"Backend connections by state: idle, exec (a request in flight), bound (holding a client between requests), starting (logging in).")
	for i, p := range pools {
		n := map[sharedserver.ServerState]int{}
		for _, s := range p.Servers {
			n[s.State]++
		}
		for _, state := range serverStates {
			pw.sample("pgmts_pool_servers", labels[i]+`,state="`+string(state)+`"`, float64(n[state]))
		}
		pw.sample("pgmts_pool_servers", labels[i]+`,state="starting"`, float64(p.Starting))
	}
	writeFamilies(pw, poolMetrics, pools, labels)
}

// dispatcherMetrics are the per-dispatcher counters and gauges.
var dispatcherMetrics = []metric[dispatcher.DispatcherSnapshot]{
	{"pgmts_dispatcher_connections", "gauge", "Client connections the dispatcher owns.",
		func(d *dispatcher.DispatcherSnapshot) float64 { return float64(d.Open) }},
	{"pgmts_dispatcher_connections_accepted_total", "counter", "Client connections the dispatcher accepted.",
		func(d *dispatcher.DispatcherSnapshot) float64 { return float64(d.Accepted) }},
	{"pgmts_dispatcher_messages_total", "counter", "Client messages framed into requests.",
		func(d *dispatcher.DispatcherSnapshot) float64 { return float64(d.Messages) }},
	{"pgmts_dispatcher_received_bytes_total", "counter", "Client bytes framed into requests.",
		func(d *dispatcher.DispatcherSnapshot) float64 { return float64(d.Received) }},
	{"pgmts_dispatcher_sent_bytes_total", "counter", "Reply bytes written to clients.",
		func(d *dispatcher.DispatcherSnapshot) float64 { return float64(d.Sent) }},
	{"pgmts_dispatcher_busy_seconds_total", "counter", "Time the dispatcher's event loop spent in callbacks (one wake-up in eight is timed and counts for eight).",
		func(d *dispatcher.DispatcherSnapshot) float64 { return d.Busy.Seconds() }},
	{"pgmts_dispatcher_response_queue_depth", "gauge", "Replies waiting in the dispatcher's response queue.",
		func(d *dispatcher.DispatcherSnapshot) float64 { return float64(d.Responses.Depth) }},
	{"pgmts_dispatcher_responses_total", "counter", "Replies pushed into the dispatcher's response queue.",
		func(d *dispatcher.DispatcherSnapshot) float64 { return float64(d.Responses.Pushed) }},
}

func writeDispatcherMetrics(pw promWriter, st *state) {
	labels := make([]string, len(st.disp.Dispatchers))
	for i, d := range st.disp.Dispatchers {
		labels[i] = `dispatcher="` + dispatcherName(d.ID) + `"`
	}
	writeFamilies(pw, dispatcherMetrics, st.disp.Dispatchers, labels)
}

// promWriter writes Prometheus text format.
type promWriter struct{ b *bytes.Buffer }

func (pw promWriter) family(name, typ, help string) {
	fmt.Fprintf(pw.b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
}

func (pw promWriter) sample(name, labels string, v float64) {
	pw.b.WriteString(name)
	if labels != "" {
		pw.b.WriteString("{" + labels + "}")
	}
	pw.b.WriteByte(' ')
	pw.b.Write(strconv.AppendFloat(nil, v, 'f', -1, 64))
	pw.b.WriteByte('\n')
}

// writeLinted copies VictoriaMetrics/metrics output (metadata on) to b so
// that promtool check metrics accepts it: every family gets a HELP text
// (help[name], else a pointer to the library), a gauge named _total is a
// counter (process_io_*_total are), and families named _count that are
// neither histograms nor summaries (go_cgo_calls_count, go_cpu_count,
// go_gc_forced_count) are left out, as Prometheus reserves that suffix.
func writeLinted(b *bytes.Buffer, src []byte, help map[string]string) {
	drop := false
	for line := range strings.Lines(string(src)) {
		if strings.HasPrefix(line, "# HELP ") {
			continue
		}
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, typ, _ := strings.Cut(strings.TrimSpace(rest), " ")
			drop = strings.HasSuffix(name, "_count") && typ != "histogram" && typ != "summary"
			if drop {
				continue
			}
			if typ == "gauge" && strings.HasSuffix(name, "_total") {
				typ = "counter"
			}
			text, ok := help[name]
			if !ok {
				text = "Go runtime or process metric, as github.com/VictoriaMetrics/metrics names it."
			}
			fmt.Fprintf(b, "# HELP %s %s\n# TYPE %s %s\n", name, text, name, typ)
			continue
		}
		if !drop {
			b.WriteString(line)
		}
	}
}
