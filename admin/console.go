// Package admin is the admin console: the virtual database "pgmts" (alias
// "pgbouncer") that answers PgBouncer's SHOW commands and pgmts's MTS views.
//
// It fits the MTS model: the console is served like a pool. Its clients
// log in through the dispatchers as any client does, their requests go to
// the console's own request queue, and console workers (its "shared
// servers", goroutines with no backend) take them from there and answer
// through the client's response queue.
package admin

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgmts/pgmts/auth"
	"github.com/pgmts/pgmts/circuits"
	"github.com/pgmts/pgmts/config"
	"github.com/pgmts/pgmts/dispatcher"
	"github.com/pgmts/pgmts/queue"
	"github.com/pgmts/pgmts/sharedserver"
	"github.com/pgmts/pgmts/wire"
)

// Names are the console's database names.
var Names = []string{"pgmts", "pgbouncer"}

// workers is how many goroutines answer console requests: one suffices for
// snapshots; a second keeps the console responsive while one client holds
// a worker with an unfinished extended-protocol batch.
const workers = 2

// compatVersion is the PgBouncer console this one follows: tools pick the
// column set they expect from server_version and SHOW VERSION.
const compatVersion = "1.18.0"

// Console is the admin console. It is the dispatchers' queue.Router: it
// answers for its own database names and hands every other name to pools.
type Console struct {
	current atomic.Pointer[config.Config] // RELOAD and SET replace it
	path    string                        // the config file, for RELOAD
	level   *slog.LevelVar                // log_level
	applyMu sync.Mutex                    // one RELOAD or SET at a time
	pools   *sharedserver.Pools
	log     *slog.Logger
	version string
	started time.Time

	requests *queue.RequestQueue
	stop     chan struct{}
	wg       sync.WaitGroup

	mu       sync.Mutex
	group    *dispatcher.Group
	routes   map[string]*queue.Pool // by database + "\x00" + user
	sessions map[*queue.Client]*session
	disabled map[string]bool           // DISABLE: databases refusing new logins
	shutdown func(waitForClients bool) // SHUTDOWN's hook (OnShutdown)
}

// New starts the console's workers. path is the config file that RELOAD
// reads ("" when there is none), level the log level that log_level sets,
// version pgmts's own.
func New(cfg *config.Config, path string, level *slog.LevelVar, pools *sharedserver.Pools, log *slog.Logger, version string) *Console {
	c := &Console{path: path, level: level, pools: pools, log: log.With("component", "admin"), version: version, started: time.Now(),
		requests: &queue.RequestQueue{}, stop: make(chan struct{}),
		routes: map[string]*queue.Pool{}, sessions: map[*queue.Client]*session{}, disabled: map[string]bool{}}
	c.current.Store(cfg)
	for i := range workers {
		c.wg.Go(func() { c.work(i) })
	}
	return c
}

// Attach gives the console the dispatchers it reports on. The group is
// made after the console (the console is its router), hence this step.
func (c *Console) Attach(g *dispatcher.Group) {
	c.mu.Lock()
	c.group = g
	c.mu.Unlock()
	c.pools.SetLoops(g) // the shared servers run on the dispatchers' loops
}

// Close stops the workers.
func (c *Console) Close() {
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	c.wg.Wait()
}

func isConsole(database string) bool {
	for _, n := range Names {
		if database == n {
			return true
		}
	}
	return false
}

// Route implements queue.Router. Console users get the console's pool;
// anyone else asking for it is refused with FATAL 28000.
func (c *Console) Route(database, user string) (*queue.Pool, error) {
	if !isConsole(database) {
		if c.disabledDB(database) {
			return nil, wire.Fatal("57P03", "database does not allow connections: %s", database)
		}
		return c.pools.Route(database, user)
	}
	if !c.Config().IsAdminUser(user) && !c.Config().IsStatsUser(user) {
		return nil, wire.Fatal("28000", "not allowed: user %q is in neither admin_users nor stats_users", user)
	}
	key := database + "\x00" + user
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.routes[key]; ok {
		p.Join()
		return p, nil
	}
	// Transaction mode: the circuit lets its worker go at every
	// ReadyForQuery, as a transaction-mode backend would.
	p := &queue.Pool{Name: database + "/" + user, Mode: circuits.Transaction, Requests: c.requests, Backend: backend{},
		Database: database, User: user}
	c.routes[key] = p
	p.Join()
	return p, nil
}

// LookupUser implements queue.Router. Console users need a password in
// [users] or auth_file: auth_query runs in a PostgreSQL database, and the
// console has none.
func (c *Console) LookupUser(database, user string, done func(auth.Secret, error)) {
	if isConsole(database) {
		done(auth.Secret{}, nil)
		return
	}
	c.pools.LookupUser(database, user, done)
}

// backend is the console pool's queue.Backend: no PostgreSQL behind it.
type backend struct{}

// consoleParams are the ParameterStatus values console clients get, as
// PgBouncer sends them (libpq and psycopg2 need client_encoding).
var consoleParams = map[string]string{
	"server_version":              compatVersion + "/pgmts",
	"client_encoding":             "UTF8",
	"server_encoding":             "UTF8",
	"DateStyle":                   "ISO, MDY",
	"TimeZone":                    "UTC",
	"standard_conforming_strings": "on",
	"integer_datetimes":           "on",
	"application_name":            "",
}

func (backend) Prepare(done func(map[string]string, error)) { done(consoleParams, nil) }
func (backend) Cancel(*queue.Client)                        {}
func (backend) Passthrough(auth.Passthrough)                {}

// worker identifies one console worker to the clients it serves (not
// zero-sized: distinct workers must have distinct addresses).
type worker struct{ id int }

// work is one console worker: it takes clients from the console's request
// queue and answers their requests until the circuit lets it go.
func (c *Console) work(id int) {
	w := &worker{id: id}
	parked := make(chan *queue.Client, 1)
	var spare []byte
	for {
		cl := c.requests.Take(parked, c.stop)
		if cl == nil {
			return
		}
		if !cl.Begin(w) {
			c.forget(cl)
			continue
		}
		spare = c.serve(w, cl, spare)
	}
}

// serve answers cl's requests until it is released or gone.
func (c *Console) serve(w *worker, cl *queue.Client, spare []byte) []byte {
	s := c.session(cl)
	for {
		data, mine, gone := cl.Take(w, spare)
		spare = data[:0]
		switch {
		case !mine:
			return spare
		case gone:
			cl.Release(w)
			c.forget(cl)
			return spare
		case len(data) == 0:
			select {
			case <-cl.Wake():
				continue
			case <-c.stop:
				return spare
			}
		}
		out, readies := c.handle(s, data)
		if len(out) > 0 {
			cl.Responses.Push(queue.Reply{Client: cl, Data: out})
		}
		for _, fn := range s.after {
			fn()
		}
		s.after = nil
		released := false
		for range readies {
			if cl.Ready(w, circuits.TxIdle) {
				released = true
			}
		}
		if released {
			return spare
		}
	}
}

// session returns cl's console session, making it on first use. Sessions
// of clients that left are dropped here: a client that leaves while idle
// never reaches a worker again.
func (c *Console) session(cl *queue.Client) *session {
	c.mu.Lock()
	defer c.mu.Unlock()
	for other := range c.sessions {
		if other != cl && other.Closed() {
			delete(c.sessions, other)
		}
	}
	s, ok := c.sessions[cl]
	if !ok {
		s = newSession(c.Config().IsAdminUser(cl.Pool.User))
		c.sessions[cl] = s
	}
	return s
}

func (c *Console) forget(cl *queue.Client) {
	c.mu.Lock()
	delete(c.sessions, cl)
	c.mu.Unlock()
}

// attached is the group Attach gave.
func (c *Console) attached() *dispatcher.Group {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.group
}

// dispatchers returns the attached group's snapshot, if any.
func (c *Console) dispatchers() dispatcher.Snapshot {
	g := c.attached()
	if g == nil {
		return dispatcher.Snapshot{}
	}
	return g.Snapshot()
}
