package admin

import (
	"fmt"
	"maps"
	"net"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgmts/pgmts/circuits"
	"github.com/pgmts/pgmts/config"
	"github.com/pgmts/pgmts/dispatcher"
	"github.com/pgmts/pgmts/queue"
	"github.com/pgmts/pgmts/sharedserver"
	"github.com/pgmts/pgmts/wire"
)

// view is one SHOW subject: its columns and how to fill its rows.
type view struct {
	cols []column
	rows func(c *Console, st *state) []row
}

func cols(typ colType, names ...string) []column {
	out := make([]column, len(names))
	for i, n := range names {
		out[i] = column{n, typ}
	}
	return out
}

func concat(parts ...[]column) []column { return slices.Concat(parts...) }

// Columns and types are PgBouncer 1.18's, so tools written for it work;
// the MTS views are pgmts's own, with int8 counters and times in µs.
var (
	socketCols = concat(cols(typeText, "type", "user", "database", "state", "addr"), cols(typeInt4, "port"),
		cols(typeText, "local_addr"), cols(typeInt4, "local_port"), cols(typeText, "connect_time", "request_time"),
		cols(typeInt4, "wait", "wait_us", "close_needed"), cols(typeText, "ptr", "link"), cols(typeInt4, "remote_pid"),
		cols(typeText, "tls", "application_name"))
	statsTotalCols   = cols(typeNumeric, "xact_count", "query_count", "bytes_received", "bytes_sent", "xact_time", "query_time", "wait_time")
	statsAverageCols = statsTotalCols

	views = map[string]*view{
		"VERSION": {cols(typeText, "version"), (*Console).showVersion},
		"CONFIG":  {cols(typeText, "key", "value", "default", "changeable"), (*Console).showConfig},
		"DATABASES": {concat(cols(typeText, "name", "host"), cols(typeInt4, "port"), cols(typeText, "database", "force_user"),
			cols(typeInt4, "pool_size", "min_pool_size", "reserve_pool"), cols(typeText, "pool_mode"),
			cols(typeInt4, "max_connections", "current_connections", "paused", "disabled")), (*Console).showDatabases},
		"POOLS": {concat(cols(typeText, "database", "user"), cols(typeInt4, "cl_active", "cl_waiting", "cl_active_cancel_req",
			"cl_waiting_cancel_req", "sv_active", "sv_active_cancel", "sv_being_canceled", "sv_idle", "sv_used", "sv_tested",
			"sv_login", "maxwait", "maxwait_us"), cols(typeText, "pool_mode")), (*Console).showPools},
		// id is PgBouncer 1.23's, the argument of KILL_CLIENT.
		"CLIENTS": {concat(socketCols, cols(typeInt8, "id")), (*Console).showClients},
		"SERVERS": {socketCols, (*Console).showServers},
		// total_requests is PgBouncer 1.7's name for total_query_count,
		// still read by Debian's prometheus-pgbouncer-exporter.
		"STATS": {concat(cols(typeText, "database"), cols(typeNumeric, "total_xact_count", "total_query_count",
			"total_received", "total_sent", "total_xact_time", "total_query_time", "total_wait_time", "avg_xact_count",
			"avg_query_count", "avg_recv", "avg_sent", "avg_xact_time", "avg_query_time", "avg_wait_time", "total_requests")),
			(*Console).showStats},
		"STATS_TOTALS":   {concat(cols(typeText, "database"), statsTotalCols), (*Console).showStatsTotals},
		"STATS_AVERAGES": {concat(cols(typeText, "database"), statsAverageCols), (*Console).showStatsAverages},
		"LISTS":          {concat(cols(typeText, "list"), cols(typeInt4, "items")), (*Console).showLists},
		"USERS":          {cols(typeText, "name", "pool_mode"), (*Console).showUsers},

		"DISPATCHERS": {concat(cols(typeText, "name", "listen", "status"), cols(typeInt8, "accepted", "owned", "messages",
			"bytes_received", "bytes_sent", "busy_us", "idle_us", "queue_depth", "queue_total")), (*Console).showDispatchers},
		"SHARED_SERVERS": {concat(cols(typeText, "database", "user"), cols(typeInt8, "pid"), cols(typeText, "status"),
			cols(typeInt8, "requests", "transactions", "queries", "bytes_received", "bytes_sent", "circuit"),
			cols(typeText, "bound_reason"), cols(typeInt8, "busy_us", "idle_us", "age_us"), cols(typeText, "dispatcher")), (*Console).showSharedServers},
		"QUEUE": {concat(cols(typeText, "type", "name"), cols(typeInt8, "queued", "total_queued", "total_wait_us",
			"avg_wait_us", "max_wait_us")), (*Console).showQueue},
		"CIRCUITS": {concat(cols(typeInt8, "circuit"), cols(typeText, "database", "user", "dispatcher"), cols(typeInt8, "server"),
			cols(typeText, "status", "queue"), cols(typeInt8, "requests", "messages", "bytes_received", "bytes_sent"),
			cols(typeText, "pool_mode", "pinned")), (*Console).showCircuits},
		"SHARED_SERVER_MONITOR": {concat(cols(typeText, "pool"), cols(typeInt8, "servers", "starting", "servers_started",
			"servers_terminated", "servers_highwater", "max_servers")), (*Console).showMonitor},
	}
)

// fakeParams answer clients that SHOW or SET session parameters on
// connect (JDBC sets extra_float_digits), as PgBouncer's console does.
var fakeParams = map[string]string{
	"client_encoding": "UTF-8", "default_transaction_isolation": "read committed",
	"standard_conforming_strings": "on", "datestyle": "ISO", "timezone": "GMT", "extra_float_digits": "2",
}

// lookupView finds a SHOW subject (upper case); nil if there is none.
func lookupView(subject string) *view {
	if v, ok := views[subject]; ok {
		return v
	}
	name := strings.ToLower(subject)
	if value, ok := fakeParams[name]; ok {
		return &view{cols(typeText, name), func(*Console, *state) []row { return []row{{value}} }}
	}
	return nil
}

const helpText = `
	SHOW HELP|VERSION|CONFIG|DATABASES|POOLS|CLIENTS|SERVERS|USERS|LISTS
	SHOW STATS|STATS_TOTALS|STATS_AVERAGES
	SHOW DISPATCHERS|SHARED_SERVERS|QUEUE|CIRCUITS|SHARED_SERVER_MONITOR
	SET key = arg
	SET db.key = arg
	RELOAD
	PAUSE [<db>]
	RESUME [<db>]
	DISABLE <db>
	ENABLE <db>
	RECONNECT [<db>]
	KILL <db>
	KILL_CLIENT <client_id>
	SUSPEND
	SHUTDOWN
	SHUTDOWN WAIT_FOR_CLIENTS
	WAIT_CLOSE [<db>]`

func notice(message, detail string) *pgproto3.NoticeResponse {
	return &pgproto3.NoticeResponse{Severity: "NOTICE", SeverityUnlocalized: "NOTICE", Code: "00000", Message: message, Detail: detail}
}

// execute runs a parsed command for a session of an admin user (admin) or
// a stats user.
func (c *Console) execute(cmd command, admin bool) (*result, *wire.Error) {
	switch cmd.verb {
	case "SHOW":
		if cmd.arg == "HELP" {
			return &result{notice: notice("Console usage", helpText), tag: "SHOW"}, nil
		}
		v := lookupView(cmd.arg)
		return &result{cols: v.cols, rows: v.rows(c, c.state()), tag: "SHOW"}, nil
	case "SET":
		if _, ok := fakeParams[cmd.key]; ok {
			return &result{notice: notice("SET ignored", ""), tag: "SET"}, nil
		}
	}
	if !admin {
		return nil, consoleError("42501", "admin access needed: %s is for admin_users; stats_users may run SHOW only", cmd.verb)
	}
	return c.control(cmd)
}

// describe is a command's result columns; nil when it returns no rows.
func describe(cmd command) []column {
	if cmd.verb == "SHOW" && cmd.arg != "HELP" {
		return lookupView(cmd.arg).cols
	}
	return nil
}

// state is one consistent-enough reading of everything a view may show.
type state struct {
	pools sharedserver.Snapshot
	disp  dispatcher.Snapshot
	// loggedIn counts the logged-in clients; active and waiting count
	// them by pool name, as PgBouncer's cl_active (any state but waiting)
	// and cl_waiting (a request in the queue); pinned counts, by pool
	// name, those that keep their server until they leave (metricsState
	// only).
	loggedIn                int
	active, waiting, pinned map[string]int64
	// Only from state, not metricsState:
	clients  []clientRow
	byID     map[uint64]*clientRow
	serverOf map[uint64]uint32 // client ID → backend PID serving it
}

func (st *state) count(pool *queue.Pool, s queue.ClientState) {
	st.loggedIn++
	if s == queue.ClientWaiting {
		st.waiting[pool.Name]++
	} else {
		st.active[pool.Name]++
	}
}

type clientRow struct {
	info dispatcher.ClientInfo
	snap queue.ClientSnapshot
}

func (c *Console) state() *state {
	st := &state{pools: c.pools.Snapshot(), disp: c.dispatchers(), byID: map[uint64]*clientRow{}, serverOf: map[uint64]uint32{},
		active: map[string]int64{}, waiting: map[string]int64{}}
	st.clients = make([]clientRow, len(st.disp.Clients))
	for i, ci := range st.disp.Clients {
		st.clients[i] = clientRow{ci, ci.Client.Snapshot()}
		st.byID[ci.Client.ID] = &st.clients[i]
		st.count(ci.Client.Pool, st.clients[i].snap.State)
	}
	for _, p := range st.pools.Pools {
		for _, s := range p.Servers {
			if s.Client != 0 {
				st.serverOf[s.Client] = s.PID
			}
		}
	}
	return st
}

// pgTime formats a time as PgBouncer's console does.
func pgTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") }

func us(d time.Duration) int64 { return d.Microseconds() }

func i64[T ~int | ~int32 | ~uint32](v T) int64 { return int64(v) }

func nullable[T comparable](v T) any {
	var zero T
	if v == zero {
		return nil
	}
	return v
}

func (c *Console) showVersion(*state) []row {
	return []row{{"PgBouncer " + compatVersion + " (pgmts " + c.version + ")"}}
}

// showConfig lists [pgmts] and [pool] settings by their key in the file,
// then the pool settings [databases.NAME] sections override, as
// NAME.key (their default is the [pool] value).
func (c *Console) showConfig(*state) []row {
	var rows []row
	cfg, def := c.Config(), config.Default()
	for _, sec := range []struct {
		name       string
		value, def reflect.Value
	}{
		{"pgmts", reflect.ValueOf(cfg.Pgmts), reflect.ValueOf(def.Pgmts)},
		{"pool", reflect.ValueOf(cfg.Pool), reflect.ValueOf(def.Pool)},
	} {
		for i := range sec.value.NumField() {
			key := sec.value.Type().Field(i).Tag.Get("toml")
			rows = append(rows, row{key, configValue(sec.value.Field(i)), configValue(sec.def.Field(i)),
				yesNo(!config.RestartOnly(sec.name + "." + key))})
		}
	}
	pool := map[string]string{"mode": cfg.Pool.Mode, "shared_servers": strconv.Itoa(cfg.Pool.SharedServers),
		"max_shared_servers": strconv.Itoa(cfg.Pool.MaxSharedServers)}
	for _, name := range slices.Sorted(maps.Keys(cfg.Databases)) {
		db := cfg.Databases[name]
		set := map[string]string{"mode": db.Mode}
		if db.SharedServers != nil {
			set["shared_servers"] = strconv.Itoa(*db.SharedServers)
		}
		if db.MaxSharedServers != nil {
			set["max_shared_servers"] = strconv.Itoa(*db.MaxSharedServers)
		}
		for _, key := range config.DatabaseKeys {
			if set[key] != "" {
				rows = append(rows, row{name + "." + key, set[key], pool[key], "yes"})
			}
		}
	}
	return rows
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// boolInt is a PgBouncer 0/1 flag column.
func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func configValue(v reflect.Value) string {
	if s, ok := v.Interface().([]string); ok {
		return strings.Join(s, ",")
	}
	return fmt.Sprint(v.Interface())
}

func listenPort(cfg *config.Config) int64 {
	_, port, _ := net.SplitHostPort(cfg.Pgmts.Listen)
	n, _ := strconv.Atoi(port)
	return int64(n)
}

func (c *Console) showDatabases(st *state) []row {
	names := map[string]bool{}
	for name := range c.Config().Databases {
		if name != "*" {
			names[name] = true
		}
	}
	suspended := st.disp.Suspended
	conns := map[string]int{}
	for _, p := range st.pools.Pools {
		names[p.Database] = true
		conns[p.Database] += len(p.Servers) + p.Starting
	}
	var rows []row
	for _, name := range slices.Sorted(maps.Keys(names)) {
		pc, ok := c.Config().PoolFor(name, "")
		if !ok {
			continue
		}
		db, ok := c.Config().Databases[name]
		if !ok {
			db = c.Config().Databases["*"]
		}
		paused := suspended || c.pools.Paused(name)
		rows = append(rows, row{name, pc.Host, i64(pc.Port), pc.DBName, nullable(db.User), i64(pc.MaxSharedServers),
			i64(pc.SharedServers), int64(0), pc.Mode, int64(0), i64(conns[name]), boolInt(paused), boolInt(c.disabledDB(name))})
	}
	for _, name := range Names {
		rows = append(rows, row{name, nil, listenPort(c.Config()), name, name, int64(workers), int64(0), int64(0), "statement",
			int64(0), int64(0), int64(0), int64(0)})
	}
	return rows
}

// consolePools are the console's own pools, as SHOW POOLS lists them.
func (c *Console) consolePools() []*queue.Pool {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := slices.Collect(maps.Values(c.routes))
	slices.SortFunc(out, func(a, b *queue.Pool) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// metricsState is state without the per-client rows, which the metrics
// endpoint does not need: with 10,000 clients they were 5.6 MB of garbage
// a scrape.
func (c *Console) metricsState() *state {
	st := &state{pools: c.pools.Snapshot(), active: map[string]int64{}, waiting: map[string]int64{}, pinned: map[string]int64{}}
	if g := c.attached(); g != nil {
		var clients []*queue.Client
		st.disp, clients = g.Counters()
		for _, cl := range clients {
			st.count(cl.Pool, cl.State())
			if cl.Pinned() {
				st.pinned[cl.Pool.Name]++
			}
		}
	}
	return st
}

func (c *Console) showPools(st *state) []row {
	active, waiting := st.active, st.waiting
	var rows []row
	for _, p := range st.pools.Pools {
		var svActive, svIdle int64
		for _, s := range p.Servers {
			if s.State == sharedserver.ServerIdle {
				svIdle++
			} else {
				svActive++
			}
		}
		wait := p.Queue.OldestWait
		rows = append(rows, row{p.Database, p.User, active[p.Name], waiting[p.Name], int64(0), int64(0), svActive, int64(0),
			int64(0), svIdle, int64(0), int64(0), i64(p.Starting), int64(wait / time.Second), us(wait % time.Second), p.Mode})
	}
	for _, p := range c.consolePools() {
		rows = append(rows, row{p.Database, p.User, active[p.Name], waiting[p.Name], int64(0), int64(0),
			int64(0), int64(0), int64(0), int64(0), int64(0), int64(0), int64(0), int64(0), int64(0), "statement"})
	}
	return rows
}

// addrPort splits an address for the addr/port columns; unix sockets
// show as "unix" with pgmts's port, as in PgBouncer.
func addrPort(a net.Addr, port int64) (string, int64) {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.IP.String(), int64(t.Port)
	}
	return "unix", port
}

func (c *Console) showClients(st *state) []row {
	now := time.Now()
	port := listenPort(c.Config())
	localHost, _, _ := net.SplitHostPort(c.Config().Pgmts.Listen)
	waitSince := map[*queue.Client]time.Time{}
	for _, p := range st.clients {
		if p.snap.State == queue.ClientWaiting {
			for _, w := range p.snap.Pool.Requests.Waiting() {
				waitSince[w.Client] = w.Since
			}
		}
	}
	var rows []row
	for _, cl := range st.clients {
		s := cl.snap
		addr, rport := addrPort(cl.info.Addr, port)
		request, wait := s.Connected, time.Duration(0)
		if since, ok := waitSince[cl.info.Client]; ok {
			request, wait = since, now.Sub(since)
		}
		var link any
		if pid, ok := st.serverOf[s.ID]; ok {
			link = fmt.Sprintf("S%d", pid)
		}
		rows = append(rows, row{"C", s.Pool.User, s.Pool.Database, string(s.State), addr, rport, localHost, port,
			pgTime(s.Connected), pgTime(request), int64(wait / time.Second), us(wait % time.Second), int64(0),
			fmt.Sprintf("C%d", s.ID), link, int64(0), cl.info.TLSVersion, s.ApplicationName, int64(s.ID)})
	}
	return rows
}

func (c *Console) showServers(st *state) []row {
	var rows []row
	for _, p := range st.pools.Pools {
		for _, s := range p.Servers {
			state, link := "idle", any(nil)
			if s.Client != 0 {
				state, link = "active", fmt.Sprintf("C%d", s.Client)
			}
			addr, port := addrPort(s.Remote, 0)
			laddr, lport := addrPort(s.Local, 0)
			request := s.Born
			if !s.LastRequest.IsZero() {
				request = s.LastRequest
			}
			rows = append(rows, row{"S", p.User, p.Database, state, addr, port, laddr, lport, pgTime(s.Born), pgTime(request),
				int64(0), int64(0), boolInt(s.CloseNeeded), fmt.Sprintf("S%d", s.PID), link, i64(s.PID), s.TLSVersion, ""})
		}
	}
	return rows
}

// dbStats sums the pools of each database, by name.
func (c *Console) dbStats(st *state) ([]string, map[string]*sharedserver.Totals, map[string]queue.Stats) {
	totals, waits := map[string]*sharedserver.Totals{}, map[string]queue.Stats{}
	for _, p := range st.pools.Pools {
		t, ok := totals[p.Database]
		if !ok {
			t = &sharedserver.Totals{}
			totals[p.Database] = t
		}
		t.Add(p.Totals)
		w := waits[p.Database]
		w.TotalQueued += p.Queue.TotalQueued
		w.TotalWait += p.Queue.TotalWait
		waits[p.Database] = w
	}
	return slices.Sorted(maps.Keys(totals)), totals, waits
}

// averages are PgBouncer's avg_* figures: counts and bytes per second,
// times per transaction, query and queued request. PgBouncer computes
// them over its last stats_period; pgmts over its uptime.
func (c *Console) averages(t *sharedserver.Totals, w queue.Stats) row {
	secs := max(int64(time.Since(c.started)/time.Second), 1)
	per := func(d time.Duration, n int64) int64 {
		if n == 0 {
			return 0
		}
		return us(d) / n
	}
	return row{t.Transactions / secs, t.Queries / secs, t.Received / secs, t.Sent / secs,
		per(t.XactTime, t.Transactions), per(t.QueryTime, t.Queries), per(w.TotalWait, w.TotalQueued)}
}

func totalsRow(t *sharedserver.Totals, w queue.Stats) row {
	return row{t.Transactions, t.Queries, t.Received, t.Sent, us(t.XactTime), us(t.QueryTime), us(w.TotalWait)}
}

func (c *Console) showStats(st *state) []row {
	names, totals, waits := c.dbStats(st)
	var rows []row
	for _, db := range names {
		t := totals[db]
		r := row{db}
		r = append(r, totalsRow(t, waits[db])...)
		r = append(r, c.averages(t, waits[db])...)
		rows = append(rows, append(r, t.Queries))
	}
	return rows
}

func (c *Console) showStatsTotals(st *state) []row {
	names, totals, waits := c.dbStats(st)
	var rows []row
	for _, db := range names {
		rows = append(rows, append(row{db}, totalsRow(totals[db], waits[db])...))
	}
	return rows
}

func (c *Console) showStatsAverages(st *state) []row {
	names, totals, waits := c.dbStats(st)
	var rows []row
	for _, db := range names {
		rows = append(rows, append(row{db}, c.averages(totals[db], waits[db])...))
	}
	return rows
}

func (c *Console) showLists(st *state) []row {
	servers := int64(0)
	for _, p := range st.pools.Pools {
		servers += int64(len(p.Servers) + p.Starting)
	}
	dbs := len(c.showDatabases(st))
	return []row{
		{"databases", int64(dbs)}, {"users", int64(len(c.Config().Users))}, {"pools", int64(len(st.pools.Pools))},
		{"free_clients", int64(0)}, {"used_clients", int64(len(st.clients))}, {"login_clients", int64(st.disp.Logins)},
		{"free_servers", int64(0)}, {"used_servers", servers},
		{"dns_names", int64(0)}, {"dns_zones", int64(0)}, {"dns_queries", int64(0)}, {"dns_pending", int64(0)},
	}
}

func (c *Console) showUsers(*state) []row {
	var rows []row
	for _, name := range slices.Sorted(maps.Keys(c.Config().Users)) {
		rows = append(rows, row{name, nullable(c.Config().Users[name].Mode)})
	}
	return rows
}

func dispatcherName(id int) string { return fmt.Sprintf("D%03d", id) }

func (c *Console) showDispatchers(st *state) []row {
	var rows []row
	for _, d := range st.disp.Dispatchers {
		status := "accepting"
		switch {
		case !d.Accepting:
			status = "closing"
		case st.disp.Suspended:
			status = "suspended"
		}
		rows = append(rows, row{dispatcherName(d.ID), strings.Join(d.Addresses, ","), status, d.Accepted, d.Open, d.Messages,
			d.Received, d.Sent, us(d.Busy), us(d.Idle), i64(d.Responses.Depth), d.Responses.Pushed})
	}
	return rows
}

// boundReason says why a circuit holds its server between requests.
func boundReason(s queue.ClientSnapshot) string {
	switch {
	case s.Pool.Mode == circuits.Session:
		return "session mode"
	case s.Pins != 0:
		return "pinned: " + s.Pins.String()
	case s.TxStatus == circuits.TxInTx:
		return "transaction"
	case s.TxStatus == circuits.TxFailed:
		return "failed transaction"
	case s.Busy:
		return "request"
	case !s.Idle:
		return "extended protocol batch"
	}
	return ""
}

func (c *Console) showSharedServers(st *state) []row {
	now := time.Now()
	var rows []row
	for _, p := range st.pools.Pools {
		for _, s := range p.Servers {
			var circuit, reason any
			if s.Client != 0 {
				circuit = int64(s.Client)
				if cl, ok := st.byID[s.Client]; ok {
					reason = nullable(boundReason(cl.snap))
				}
			}
			age := now.Sub(s.Born)
			rows = append(rows, row{p.Database, p.User, i64(s.PID), string(s.State), s.Requests, s.Transactions, s.Queries,
				s.Received, s.Sent, circuit, reason, us(s.Busy), us(max(age-s.Busy, 0)), us(age), dispatcherName(s.Dispatcher)})
		}
	}
	return rows
}

func (c *Console) showQueue(st *state) []row {
	var rows []row
	common := func(name string, q queue.Stats) {
		var avg int64
		if q.TotalQueued > 0 {
			avg = us(q.TotalWait) / q.TotalQueued
		}
		rows = append(rows, row{"common", name, i64(q.Waiting), q.TotalQueued, us(q.TotalWait), avg, us(q.OldestWait)})
	}
	for _, p := range st.pools.Pools {
		common(p.Name, p.Queue)
	}
	common(Names[0], c.requests.Stats())
	for _, d := range st.disp.Dispatchers {
		rows = append(rows, row{"dispatcher", dispatcherName(d.ID), i64(d.Responses.Depth), d.Responses.Pushed, nil, nil, nil})
	}
	return rows
}

func (c *Console) showCircuits(st *state) []row {
	var rows []row
	for _, cl := range st.clients {
		s := cl.snap
		var server, pinned any
		where := "none"
		switch {
		case s.State == queue.ClientWaiting:
			where = "common"
		case s.State == queue.ClientActive:
			where = "server"
			pinned = nullable(boundReason(s))
			if pid, ok := st.serverOf[s.ID]; ok {
				server = i64(pid)
			}
		case s.Backlog > 0:
			where = "dispatcher"
		}
		rows = append(rows, row{int64(s.ID), s.Pool.Database, s.Pool.User, dispatcherName(cl.info.Dispatcher),
			server, string(s.State), where, s.Requests, s.Messages, s.Received, s.Sent, s.Pool.Mode.String(), pinned})
	}
	return rows
}

func (c *Console) showMonitor(st *state) []row {
	var rows []row
	var servers, starting, terminated int64
	for _, p := range st.pools.Pools {
		rows = append(rows, row{p.Name, i64(len(p.Servers)), i64(p.Starting), p.Started, p.Terminated, i64(p.HighWater),
			i64(p.MaxServers)})
		servers += int64(len(p.Servers))
		starting += int64(p.Starting)
		terminated += p.Terminated
	}
	return append(rows, row{"(total)", servers, starting, st.pools.Started, terminated, st.pools.HighWater, nil})
}
