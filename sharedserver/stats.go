package sharedserver

import (
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/pgmts/pgmts/queue"
)

// serverStats are one shared server's counters, written on its loop only
// (queue.AddOwned); snapshots read them from anywhere.
type serverStats struct {
	born time.Time

	requests, received atomic.Int64
	reqStart           atomic.Int64 // nanotime of the last request written

	queries, xacts, sent, errors atomic.Int64
	stateQueries, refusals       atomic.Int64
	queryTime, xactTime          atomic.Int64 // nanoseconds
	lastReady                    atomic.Int64 // nanotime of the last ReadyForQuery
	xactStart                    int64        // loop only: when the open transaction began

	// The query and transaction durations, kept per server like the
	// counters and summed per pool at a scrape: no lock and no locked
	// instruction per ReadyForQuery (a shared Prometheus histogram took
	// a mutex, and a dozen cache lines per transaction).
	queryHist, xactHist ownedHistogram
}

// request is called just before a client's bytes are written to PostgreSQL.
func (st *serverStats) request(bytes int, now int64) {
	st.reqStart.Store(now)
	queue.AddOwned(&st.requests, 1)
	queue.AddOwned(&st.received, int64(bytes))
}

// replied is called for each reply chunk sent to a client.
func (st *serverStats) replied(bytes int) { queue.AddOwned(&st.sent, int64(bytes)) }

// ready is called at a client's ReadyForQuery: one query
// ended, and with status 'I' one transaction.
func (st *serverStats) ready(status byte, now int64) {
	start := st.reqStart.Load()
	queue.AddOwned(&st.queries, 1)
	queue.AddOwned(&st.queryTime, now-start)
	st.queryHist.observe(now - start)
	if st.xactStart == 0 {
		st.xactStart = start
	}
	if status == 'I' {
		queue.AddOwned(&st.xacts, 1)
		queue.AddOwned(&st.xactTime, now-st.xactStart)
		st.xactHist.observe(now - st.xactStart)
		st.xactStart = 0
	}
	st.lastReady.Store(now)
}

// errored is called for each ErrorResponse relayed to a client.
func (st *serverStats) errored() { queue.AddOwned(&st.errors, 1) }

// asked is called for each query sent to ask the backend about a client's
// session state (sessionstate.go).
func (st *serverStats) asked() { queue.AddOwned(&st.stateQueries, 1) }

// refused is called for each command refused in statement mode for the
// session state it made.
func (st *serverStats) refused() { queue.AddOwned(&st.refusals, 1) }

// Totals are traffic and timing counters, per server or summed per pool.
type Totals struct {
	Requests     int64 // request batches written to PostgreSQL
	Queries      int64 // ReadyForQuery messages relayed (one per Query or Sync)
	Transactions int64 // ReadyForQuery with status idle
	Received     int64 // client bytes written to PostgreSQL
	Sent         int64 // reply bytes handed to clients
	Errors       int64 // ErrorResponses relayed to clients
	StateQueries int64 // queries pgmts sent to ask about session state
	Refusals     int64 // statement-mode commands refused for their session state
	QueryTime    time.Duration
	XactTime     time.Duration
	// QueryHist and XactHist are the query and transaction durations.
	QueryHist, XactHist Histogram
}

// Add adds o's counters to t.
func (t *Totals) Add(o Totals) {
	t.Requests += o.Requests
	t.Queries += o.Queries
	t.Transactions += o.Transactions
	t.Received += o.Received
	t.Sent += o.Sent
	t.Errors += o.Errors
	t.StateQueries += o.StateQueries
	t.Refusals += o.Refusals
	t.QueryTime += o.QueryTime
	t.XactTime += o.XactTime
	t.QueryHist.add(&o.QueryHist)
	t.XactHist.add(&o.XactHist)
}

func (st *serverStats) totals() Totals {
	return Totals{
		Requests: st.requests.Load(), Queries: st.queries.Load(), Transactions: st.xacts.Load(),
		Received: st.received.Load(), Sent: st.sent.Load(), Errors: st.errors.Load(), StateQueries: st.stateQueries.Load(),
		Refusals:  st.refusals.Load(),
		QueryTime: time.Duration(st.queryTime.Load()), XactTime: time.Duration(st.xactTime.Load()),
		QueryHist: st.queryHist.load(), XactHist: st.xactHist.load(),
	}
}

// ServerState is what a shared server is doing.
type ServerState string

const (
	ServerIdle ServerState = "idle" // waiting on its pool's request queue
	ServerExec ServerState = "exec" // a client's request is in flight
	// ServerBound: it holds a client between requests (open transaction,
	// session mode, unfinished extended-protocol batch).
	ServerBound ServerState = "bound"
)

// ServerSnapshot is one shared server (Oracle's V$SHARED_SERVER row).
type ServerSnapshot struct {
	PID    uint32
	State  ServerState
	Client uint64 // the client (circuit) it holds; 0 for none
	Totals
	Born        time.Time
	LastRequest time.Time     // zero before the first request
	Busy        time.Duration // time with a request in flight
	Local       net.Addr
	Remote      net.Addr
	TLSVersion  string // "" for plaintext
	Dispatcher  int    // the ID of the dispatcher whose loop it runs on
	// CloseNeeded: RECONNECT, RELOAD or the idle timeout retired it; it
	// closes once its client lets it go.
	CloseNeeded bool
}

// PoolSnapshot is one pool: its queue, servers and counters.
type PoolSnapshot struct {
	Name           string // database/user
	Database, User string
	Mode           string
	MaxServers     int
	MinServers     int
	Queue          queue.Stats
	Servers        []ServerSnapshot
	Starting       int   // backends logging in
	Started        int64 // backends ever opened
	Terminated     int64 // backends ever closed
	LoginFailures  int64 // backend logins that failed
	HighWater      int   // most backends open at once
	Totals         Totals
}

// Snapshot is every pool, sorted by name, and the process-wide server
// monitor figures (Oracle's V$SHARED_SERVER_MONITOR).
type Snapshot struct {
	Pools     []PoolSnapshot
	Started   int64
	HighWater int64
}

// Snapshot reads every pool's state and counters.
func (p *Pools) Snapshot() Snapshot {
	p.mu.Lock()
	pools := slices.Collect(maps.Values(p.pools))
	p.mu.Unlock()
	out := Snapshot{Started: p.started.Load(), HighWater: p.highWater.Load()}
	for _, pool := range pools {
		out.Pools = append(out.Pools, pool.snapshot())
	}
	slices.SortFunc(out.Pools, func(a, b PoolSnapshot) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func (p *Pool) snapshot() PoolSnapshot {
	pc := p.conf()
	ps := PoolSnapshot{
		Name: p.q.Name, Database: pc.Database, User: pc.User, Mode: p.q.Mode.String(),
		MaxServers: pc.MaxSharedServers, MinServers: pc.SharedServers, Queue: p.q.Requests.Stats(),
	}
	p.mu.Lock()
	servers := make([]*Server, 0, len(p.servers))
	for s := range p.servers {
		servers = append(servers, s)
	}
	ps.Starting, ps.Started, ps.Terminated, ps.HighWater = len(p.starting), p.started, p.terminated, p.highWater
	ps.LoginFailures = p.loginFailures
	ps.Totals = p.retired
	p.mu.Unlock()
	now := queue.Nanotime()
	for _, s := range servers {
		ss := s.snapshot(now)
		ps.Totals.Add(ss.Totals)
		ps.Servers = append(ps.Servers, ss)
	}
	slices.SortFunc(ps.Servers, func(a, b ServerSnapshot) int { return int(a.PID) - int(b.PID) })
	return ps
}

func (s *Server) snapshot(now int64) ServerSnapshot {
	ss := ServerSnapshot{PID: s.pid, State: ServerIdle, Totals: s.stats.totals(), Born: s.stats.born,
		Local: s.local, Remote: s.remote, TLSVersion: s.tlsVersion, CloseNeeded: s.quitting.Load(), Dispatcher: s.loop.ID()}
	ss.Busy = ss.QueryTime
	start, ready := s.stats.reqStart.Load(), s.stats.lastReady.Load()
	if start != 0 {
		ss.LastRequest = queue.NanotimeToTime(start)
	}
	if c := s.owner.Load(); c != nil {
		ss.Client = c.ID
		ss.State = ServerBound
		if start > ready {
			ss.State = ServerExec
			ss.Busy += time.Duration(now - start)
		}
	}
	return ss
}

// recordStart counts a server that logged in (p.mu held).
func (p *Pool) recordStart(s *Server) {
	s.stats.born = time.Now()
	p.started++
	p.highWater = max(p.highWater, len(p.servers))
	p.parent.started.Add(1)
	n := p.parent.live.Add(1)
	for {
		hw := p.parent.highWater.Load()
		if n <= hw || p.parent.highWater.CompareAndSwap(hw, n) {
			break
		}
	}
}

// recordEnd counts a server that is gone and keeps its totals (p.mu held).
func (p *Pool) recordEnd(s *Server) {
	p.terminated++
	p.parent.live.Add(-1)
	p.retired.Add(s.stats.totals())
}

// durationBuckets are the histograms' upper bounds in seconds, from 50µs
// (a cached query on a local backend) to 10s, about three per decade.
var durationBuckets = [...]float64{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
	0.25, 0.5, 1, 2.5, 5, 10}

// bucketBounds are durationBuckets in nanoseconds.
var bucketBounds = func() (b [len(durationBuckets)]int64) {
	for i, s := range durationBuckets {
		b[i] = int64(math.Round(s * 1e9))
	}
	return b
}()

// Histogram is a histogram of durations: Buckets[i] counts those up to
// durationBuckets[i] (the last one, those above), Sum is their total.
type Histogram struct {
	Sum     time.Duration
	Buckets [len(durationBuckets) + 1]int64
}

func (h *Histogram) add(o *Histogram) {
	h.Sum += o.Sum
	for i, n := range o.Buckets {
		h.Buckets[i] += n
	}
}

// ownedHistogram is a Histogram written on one goroutine only
// (queue.AddOwned) and read anywhere.
type ownedHistogram struct {
	sum     atomic.Int64
	buckets [len(durationBuckets) + 1]atomic.Int64
}

// observe counts a duration in nanoseconds.
func (h *ownedHistogram) observe(ns int64) {
	if ns < 0 {
		return // a clock that went back; Prometheus histograms skip these too
	}
	i := 0
	for i < len(bucketBounds) && ns > bucketBounds[i] {
		i++
	}
	queue.AddOwned(&h.buckets[i], 1)
	queue.AddOwned(&h.sum, ns)
}

func (h *ownedHistogram) load() Histogram {
	out := Histogram{Sum: time.Duration(h.sum.Load())}
	for i := range h.buckets {
		out.Buckets[i] = h.buckets[i].Load()
	}
	return out
}

// Histogram names, labelled per pool.
const (
	QueueWaitHistogram   = "pgmts_pool_queue_wait_seconds"
	QueryHistogram       = "pgmts_pool_query_duration_seconds"
	TransactionHistogram = "pgmts_pool_transaction_duration_seconds"
)

// waitHistogram is a pool's queue-wait histogram. It lives in its Pools'
// set, which holds every pool's, so that a scrape lists the histogram's
// series together (the text format wants a family in one block); a pool
// leaving the registry takes its series out of the set.
type waitHistogram struct {
	name string
	h    *metrics.PrometheusHistogram
}

// newWaitHistogram registers a pool's queue-wait histogram (p.mu held).
func (p *Pools) newWaitHistogram(database, user string) *waitHistogram {
	w := &waitHistogram{name: QueueWaitHistogram + "{" + PoolLabels(database, user) + "}"}
	w.h = p.metrics.NewPrometheusHistogramExt(w.name, durationBuckets[:])
	return w
}

// dropWaitHistogram takes a pool's queue-wait histogram out of the scrape
// (p.mu held). Its request queue may still update it: it just goes
// unreported.
func (p *Pools) dropWaitHistogram(w *waitHistogram) { p.metrics.UnregisterMetric(w.name) }

// WriteHistograms writes the histograms of the pools in Prometheus text
// format: the queue waits of every pool in the registry, then the query
// and transaction durations of pools, a Snapshot's (summed over each
// pool's servers, live and gone), which the caller has taken anyway.
func (p *Pools) WriteHistograms(w io.Writer, pools []PoolSnapshot) {
	p.metrics.WritePrometheus(w)
	if len(pools) == 0 {
		return
	}
	for _, family := range []struct {
		name string
		of   func(*Totals) *Histogram
	}{
		{QueryHistogram, func(t *Totals) *Histogram { return &t.QueryHist }},
		{TransactionHistogram, func(t *Totals) *Histogram { return &t.XactHist }},
	} {
		metrics.WriteMetadataIfNeeded(w, family.name, "histogram")
		for i := range pools {
			writeHistogram(w, family.name, PoolLabels(pools[i].Database, pools[i].User), family.of(&pools[i].Totals))
		}
	}
}

// writeHistogram writes one histogram's series as
// github.com/VictoriaMetrics/metrics writes a PrometheusHistogram.
func writeHistogram(w io.Writer, name, labels string, h *Histogram) {
	var count int64
	for i, le := range durationBuckets {
		count += h.Buckets[i]
		fmt.Fprintf(w, "%s_bucket{%s,le=\"%v\"} %d\n", name, labels, le, count)
	}
	count += h.Buckets[len(durationBuckets)]
	fmt.Fprintf(w, "%s_bucket{%s,le=\"+Inf\"} %d\n", name, labels, count)
	if sum := h.Sum.Seconds(); float64(int64(sum)) == sum {
		fmt.Fprintf(w, "%s_sum{%s} %d\n", name, labels, int64(sum))
	} else {
		fmt.Fprintf(w, "%s_sum{%s} %g\n", name, labels, sum)
	}
	fmt.Fprintf(w, "%s_count{%s} %d\n", name, labels, count)
}

// PoolLabels are the Prometheus labels of a pool's series, without braces.
func PoolLabels(database, user string) string {
	return `database="` + labelValue(database) + `",user="` + labelValue(user) + `"`
}

// labelValue escapes a Prometheus label value.
var labelValue = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace
