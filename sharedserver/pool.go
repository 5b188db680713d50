// Package sharedserver runs the shared servers: each owns one PostgreSQL
// backend connection, takes requests from its pool's queue (or its bound
// client's inbox), writes them to PostgreSQL and streams the replies into
// the client's dispatcher response queue.
package sharedserver

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgmts/pgmts/auth"
	"github.com/pgmts/pgmts/circuits"
	"github.com/pgmts/pgmts/config"
	"github.com/pgmts/pgmts/queue"
	"github.com/pgmts/pgmts/wire"
)

// Pools owns every pool; it is the dispatchers' queue.Router.
type Pools struct {
	current atomic.Pointer[config.Config] // Reload replaces it
	log     *slog.Logger

	mu     sync.Mutex
	pools  map[string]*Pool
	closed bool

	stop chan struct{}
	wg   sync.WaitGroup // every goroutine this package starts

	// Server counts per database and per user, shared by their pools.
	dbConns, userConns map[string]*atomic.Int64
	// paused lists the databases PAUSE holds ("" = all).
	paused map[string]bool
	// draining holds the pools a reload detached (see Reload): still
	// swept, counted and closed with the others.
	draining []*Pool

	auth authQueries

	// loops hosts the servers (the dispatchers, see SetLoops).
	loops atomic.Pointer[queue.Loops]

	// started, live and highWater count backends for SHOW
	// SHARED_SERVER_MONITOR (stats.go).
	started, live, highWater atomic.Int64
	// metrics holds the histograms of the pools in p.pools (stats.go).
	metrics *metrics.Set
}

// NewPools starts the pool registry (and its query_wait_timeout sweeper).
func NewPools(cfg *config.Config, log *slog.Logger) *Pools {
	p := &Pools{log: log, pools: map[string]*Pool{}, stop: make(chan struct{}), auth: newAuthQueries(),
		dbConns: map[string]*atomic.Int64{}, userConns: map[string]*atomic.Int64{}, paused: map[string]bool{},
		metrics: metrics.NewSet()}
	p.current.Store(cfg)
	p.wg.Add(1)
	go p.sweep()
	return p
}

// SetLoops names the event loops that host the shared servers; it is
// called once, before any client comes.
func (p *Pools) SetLoops(l queue.Loops) { p.loops.Store(&l) }

// nextLoop is the loop for a new server; nil when none can host one
// (the dispatchers are stopping).
func (p *Pools) nextLoop() queue.Loop {
	if l := p.loops.Load(); l != nil {
		return (*l).NextLoop()
	}
	return nil
}

// loopOf is the loop whose response queue is home, if it can host a new
// server (nil otherwise).
func (p *Pools) loopOf(home *queue.ResponseQueue) queue.Loop {
	if l := p.loops.Load(); l != nil {
		return (*l).LoopOf(home)
	}
	return nil
}

// ErrNoDatabase is returned by Route for a database no section serves.
var ErrNoDatabase = errors.New("no such database")

// Route returns (creating on first use) the pool for database and user.
func (p *Pools) Route(database, user string) (*queue.Pool, error) {
	key := database + "\x00" + user
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errors.New("pgmts is shutting down")
	}
	if pool, ok := p.pools[key]; ok {
		pool.q.Join() // under p.mu: a reload detaching it sees the count
		return pool.q, nil
	}
	pc, ok := p.conf().PoolFor(database, user)
	if !ok {
		return nil, ErrNoDatabase
	}
	mode, err := circuits.ParseMode(pc.Mode)
	if err != nil {
		return nil, err
	}
	pool := &Pool{parent: p, log: p.log.With("pool", database+"/"+user), servers: map[*Server]struct{}{},
		dbConns: counter(p.dbConns, database), userConns: counter(p.userConns, user), wait: p.newWaitHistogram(database, user)}
	pool.cfg.Store(&pc)
	pool.q = &queue.Pool{Name: database + "/" + user, Database: database, User: user, Mode: mode,
		Requests: &queue.RequestQueue{WaitTime: pool.wait.h}, Backend: pool}
	pool.q.Requests.OnWait = pool.grow
	pool.q.Requests.OnElsewhere = pool.growOn
	if p.paused[""] || p.paused[database] {
		pool.hold()
	}
	p.pools[key] = pool
	pool.q.Join()
	return pool.q, nil
}

// sweep, once a second: fails requests that waited longer than
// query_wait_timeout, retires idle servers, and starts servers a pool
// still needs (after a failed connection, say).
func (p *Pools) sweep() {
	defer p.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		p.auth.prune(time.Now())
		for _, pool := range p.all() {
			pool.retireIdle()
			pool.mu.Lock()
			pool.keepMinimum()
			pool.mu.Unlock()
			pool.grow()
			max := pool.conf().QueryWaitTimeout
			if max <= 0 {
				continue
			}
			for _, c := range pool.q.Requests.Expire(max) {
				pool.log.Warn("request waited too long for a server; closing the client", "client", c.ID, "query_wait_timeout", max)
				c.Fail(wire.Fatal("08P01", "query_wait_timeout: no server of pool %s became free within %s", pool.q.Name, max))
			}
		}
		p.forgetDrained()
	}
}

// forgetDrained drops the pools a reload detached once they have neither
// connections nor servers left. Route no longer returns them, so nothing
// can use them again; kept, they would pile up with every reload.
func (p *Pools) forgetDrained() {
	p.mu.Lock()
	defer p.mu.Unlock()
	kept := p.draining[:0]
	for _, pool := range p.draining {
		if pool.q.Connections() == 0 && pool.closeIfEmpty() {
			pool.log.Info("pool detached by a reload has no clients or servers left; it is gone")
			continue
		}
		kept = append(kept, pool)
	}
	clear(p.draining[len(kept):])
	p.draining = kept
}

// all lists every pool, the ones a reload detached included.
func (p *Pools) all() []*Pool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.AppendSeq(slices.Clone(p.draining), maps.Values(p.pools))
}

// Close stops every server and waits for all goroutines of the package.
func (p *Pools) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	close(p.stop)
	p.mu.Unlock()
	for _, pool := range p.all() {
		pool.closeAll()
	}
	p.wg.Wait()
	p.auth.closeAll()
}

// BackendCount is the number of backend connections open or opening.
func (p *Pools) BackendCount() int {
	n := 0
	for _, pool := range p.all() {
		n += pool.open()
	}
	return n
}

// Pool is one pool's shared servers.
type Pool struct {
	parent *Pools
	q      *queue.Pool
	cfg    atomic.Pointer[config.PoolConfig] // Reload may replace it
	log    *slog.Logger

	mu      sync.Mutex
	servers map[*Server]struct{}
	// starting holds the response queue of each opening server's loop.
	starting []*queue.ResponseQueue
	closed   bool
	// params is the ParameterStatus set of the last server that logged in.
	params    map[string]string
	preparing []func(map[string]string, error)
	// elsewhereAt is when growOn last looked for a loop without a server
	// (a Nanotime reading; atomic, read without p.mu).
	elsewhereAt atomic.Int64
	// passthrough is what the last clients' logins left to log in with
	// when the pool has no password (see Passthrough).
	passthrough auth.Passthrough
	// paused: PAUSE holds the queue and the pool opens no server.
	paused bool
	// growTimer re-checks growth once the oldest request has waited
	// scale_up_wait (set while armed).
	growTimer *time.Timer
	// dbConns and userConns count the servers of every pool of this
	// pool's database and of its user, for max_db_connections and
	// max_user_connections.
	dbConns, userConns *atomic.Int64

	// Server monitor counters and the totals of servers that are gone
	// (stats.go).
	started, terminated int64
	highWater           int
	// loginErr is the last backend login's error, if it failed, and
	// loginFailed when: the pool then opens no server for
	// server_login_retry (backingOff). failingSince is the first failure
	// of the current run; loginFailures counts every failed login.
	loginErr      *wire.Error
	loginFailed   time.Time
	failingSince  time.Time
	loginFailures int64
	retired       Totals
	wait          *waitHistogram // its queue-wait histogram
}

func (p *Pool) keepMinimum() {
	for !p.closed && !p.paused && !p.backingOff() && p.size() < p.conf().SharedServers && p.reserve() {
		if !p.startLocked() {
			return
		}
	}
}

// startLocked opens one more server, on the next loop in turn; the
// caller has reserved it against the database and user caps. It reports
// false (and unreserves) when no loop can host a server: pgmts is
// stopping.
func (p *Pool) startLocked() bool {
	return p.startOn(p.parent.nextLoop())
}

// startOn is startLocked on a given loop (nil: none can host one).
func (p *Pool) startOn(loop queue.Loop) bool {
	if loop == nil {
		p.unreserve()
		return false
	}
	home := loop.Responses()
	p.starting = append(p.starting, home)
	p.parent.wg.Add(1)
	go func() {
		defer p.parent.wg.Done()
		s, err := connect(p)
		p.mu.Lock()
		i := slices.Index(p.starting, home)
		p.starting = slices.Delete(p.starting, i, i+1)
		waiters := p.preparing
		p.preparing = nil
		if err != nil {
			p.unreserve()
			werr := asWireError(err)
			p.loginFailures++
			if p.loginErr == nil {
				p.failingSince = time.Now()
			}
			p.loginErr, p.loginFailed = werr, time.Now()
			alone := p.size() == 0
			p.mu.Unlock()
			pc := p.conf()
			p.log.Error("could not open a backend connection; the pool opens none until server_login_retry has passed",
				"host", pc.Host, "port", pc.Port, "dbname", pc.DBName, "user", pc.BackendUser, "err", err, "server_login_retry", pc.ServerLoginRetry)
			for _, w := range waiters {
				w(nil, werr)
			}
			if alone {
				// Nothing will serve the queued requests: tell them why now
				// rather than at query_wait_timeout.
				for _, c := range p.q.Requests.Drain() {
					c.Fail(werr)
				}
			}
			return
		}
		if p.loginErr != nil {
			p.loginErr = nil
			failingFor := time.Since(p.failingSince).Round(time.Millisecond)
			defer p.log.Info("backend logins work again", "failing_for", failingFor) // once p.mu is released
		}
		if p.closed || p.paused {
			p.unreserve()
			p.params = s.loginParams
			p.mu.Unlock()
			_ = s.conn.Close()
			for _, w := range waiters {
				w(s.loginParams, nil)
			}
			return
		}
		s.loop, s.home = loop, home
		s.idleSince.Store(queue.Nanotime()) // counts as idle until it takes a client
		p.servers[s] = struct{}{}
		p.recordStart(s)
		p.params = s.loginParams
		p.parent.wg.Add(1) // until fail
		p.mu.Unlock()
		p.log.Debug("backend connected", "pid", s.pid)
		for _, w := range waiters {
			w(s.loginParams, nil)
		}
		if err := s.host(); err != nil {
			if !errors.Is(err, queue.ErrLoopStopped) {
				p.log.Error("cannot host a backend connection on a dispatcher", "err", err)
			}
			s.fail(err)
		}
	}()
	return true
}

// backingOff reports whether the last backend login failed less than
// server_login_retry ago: the pool opens no server meanwhile, so that a
// PostgreSQL that is down, or refuses the login, sees one attempt per
// period rather than one per client request (p.mu held).
func (p *Pool) backingOff() bool {
	return p.loginErr != nil && time.Since(p.loginFailed) < p.conf().ServerLoginRetry
}

// loginFailedError is what a request no server will take hears while the
// pool backs off: the failed login's error, and when pgmts tries again
// (p.mu held).
func (p *Pool) loginFailedError() *wire.Error {
	e := *p.loginErr
	e.Detail = strings.TrimSpace(e.Detail + fmt.Sprintf(" pgmts's last login to the server failed %s ago; it tries again once server_login_retry (%s) has passed.",
		time.Since(p.loginFailed).Round(time.Millisecond), p.conf().ServerLoginRetry))
	return &e
}

// remove forgets a dead server and replaces it if the pool needs one.
func (p *Pool) remove(s *Server) {
	p.mu.Lock()
	if _, ok := p.servers[s]; ok {
		delete(p.servers, s)
		p.unreserve()
		p.recordEnd(s)
	}
	p.keepMinimum()
	p.mu.Unlock()
	p.grow()
}

// closeIfEmpty closes a pool that has no server, open or opening, so
// that it opens none later (a request of a client that already left may
// still wait in its queue); it reports whether it did.
func (p *Pool) closeIfEmpty() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.size() > 0 {
		return false
	}
	p.closed = true
	return true
}

func (p *Pool) closeAll() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.failAll(errors.New("pgmts is shutting down"))
}

// failAll closes every server now; their clients are told err.
func (p *Pool) failAll(err error) {
	p.mu.Lock()
	servers := make([]*Server, 0, len(p.servers))
	for s := range p.servers {
		servers = append(servers, s)
	}
	p.mu.Unlock()
	for _, s := range servers {
		s.onLoop(func() { s.fail(err) })
	}
}

// Passthrough implements queue.Backend. It applies only when the pool
// logs in as the client's user with no password of its own. The latest
// keys win: a client proved them against the verifier auth_query or the
// config has now.
func (p *Pool) Passthrough(pt auth.Passthrough) {
	if pc := p.conf(); pc.BackendPassword != "" || pc.BackendUser != pc.User {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if pt.SCRAM != nil {
		p.passthrough.SCRAM = pt.SCRAM
	}
	if pt.MD5 != "" {
		p.passthrough.MD5 = pt.MD5
	}
}

// Prepare implements queue.Backend. The pool's first Prepare, not Route,
// opens its shared_servers: Passthrough comes between the two. A paused
// pool still opens one server to learn the parameters, then closes it.
func (p *Pool) Prepare(done func(map[string]string, error)) {
	p.mu.Lock()
	p.keepMinimum()
	if p.params != nil {
		params := p.params
		p.mu.Unlock()
		done(params, nil)
		return
	}
	p.preparing = append(p.preparing, done)
	if len(p.starting) == 0 && !p.closed {
		if p.backingOff() {
			p.failPreparing(p.loginFailedError())
			return
		}
		p.reserveAnyway()
		if !p.startLocked() {
			p.failPreparing(wire.Fatal("57P03", "pgmts is shutting down"))
			return
		}
	}
	p.mu.Unlock()
}

// failPreparing answers every login waiting for the pool's parameters
// with err; it releases p.mu.
func (p *Pool) failPreparing(err error) {
	waiters := p.preparing
	p.preparing = nil
	p.mu.Unlock()
	for _, w := range waiters {
		w(nil, err)
	}
}

// Cancel implements queue.Backend: it sends PostgreSQL a CancelRequest for
// the backend serving c, over a connection of its own.
func (p *Pool) Cancel(c *queue.Client) {
	t := c.CancelTarget()
	if t == nil {
		return
	}
	p.parent.wg.Add(1)
	go func() {
		defer p.parent.wg.Done()
		if err := sendCancel(t, p.conf().ServerConnectTimeout); err != nil {
			p.log.Warn("cancel request to backend failed", "pid", t.PID, "err", err)
		}
	}()
}

func sendCancel(t *queue.CancelTarget, timeout time.Duration) error {
	conn, err := net.DialTimeout(t.Network, t.Address, timeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	msg := wire.Append(nil, &pgproto3.CancelRequest{ProcessID: t.PID, SecretKey: t.Key})
	if _, err := conn.Write(msg); err != nil {
		return err
	}
	// PostgreSQL closes the connection once it has read the request.
	var b [1]byte
	_, _ = conn.Read(b[:])
	return nil
}

// backendAddress returns the dial network and address of the pool's host,
// which is either a TCP host or a unix socket directory.
func backendAddress(cfg config.PoolConfig) (string, string) {
	if len(cfg.Host) > 0 && cfg.Host[0] == '/' {
		return "unix", fmt.Sprintf("%s/.s.PGSQL.%d", cfg.Host, cfg.Port)
	}
	return "tcp", net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port))
}
