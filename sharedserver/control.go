package sharedserver

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/pgmts/pgmts/config"
	"github.com/pgmts/pgmts/queue"
	"github.com/pgmts/pgmts/wire"
)

// Growth, retirement and the operator's controls (PAUSE, RESUME,
// RECONNECT, KILL, WAIT_CLOSE) of the pools.

// counter returns the shared counter for key, making it on first use.
// Callers hold Pools.mu.
func counter(m map[string]*atomic.Int64, key string) *atomic.Int64 {
	c, ok := m[key]
	if !ok {
		c = new(atomic.Int64)
		m[key] = c
	}
	return c
}

// reserve counts one more server against max_db_connections and
// max_user_connections, unless that would pass one of them.
func (p *Pool) reserve() bool {
	if !take(p.dbConns, p.conf().MaxDBConnections) {
		return false
	}
	if !take(p.userConns, p.conf().MaxUserConnections) {
		p.dbConns.Add(-1)
		return false
	}
	return true
}

// take adds one to c unless it is at max (0 = no cap).
func take(c *atomic.Int64, max int) bool {
	for {
		n := c.Load()
		if max > 0 && n >= int64(max) {
			return false
		}
		if c.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// reserveAnyway counts a server the pool must open whatever the caps: the
// one that learns the server's parameters for the first login.
func (p *Pool) reserveAnyway() {
	p.dbConns.Add(1)
	p.userConns.Add(1)
}

func (p *Pool) unreserve() {
	p.dbConns.Add(-1)
	p.userConns.Add(-1)
}

// grow starts servers while requests wait: one per waiting request not
// already covered by a server being opened or one about to take a
// request, once the oldest has waited scale_up_wait, up to
// max_shared_servers and the database and user caps. A pool with no
// server at all starts one at once.
func (p *Pool) grow() {
	p.mu.Lock()
	if !p.closed && !p.paused && p.backingOff() {
		// No server will be opened for a while: requests that have none
		// to wait for hear why now.
		var waiting []*queue.Client
		var werr *wire.Error
		if p.size() == 0 {
			if waiting = p.q.Requests.Drain(); len(waiting) > 0 {
				werr = p.loginFailedError()
			}
		}
		p.mu.Unlock()
		for _, c := range waiting {
			c.Fail(werr)
		}
		return
	}
	defer p.mu.Unlock()
	if p.closed || p.paused || p.size() >= p.conf().MaxSharedServers {
		return
	}
	st := p.q.Requests.Stats() // lock order: pool, then queue
	covered := len(p.starting)
	for s := range p.servers {
		if s.idleSince.Load() != 0 {
			covered++
		}
	}
	if st.Waiting <= covered {
		return
	}
	if wait := p.conf().ScaleUpWait - st.OldestWait; wait > 0 && p.size() > 0 {
		if p.growTimer == nil {
			p.growTimer = time.AfterFunc(wait, func() {
				p.mu.Lock()
				p.growTimer = nil
				p.mu.Unlock()
				p.grow()
			})
		}
		return
	}
	for n := st.Waiting - covered; n > 0 && p.size() < p.conf().MaxSharedServers; n-- {
		if !p.reserve() {
			p.log.Debug("requests wait, but max_db_connections or max_user_connections is reached",
				"max_db_connections", p.conf().MaxDBConnections, "max_user_connections", p.conf().MaxUserConnections)
			return
		}
		if !p.startLocked() {
			return
		}
	}
}

// growOnEvery spaces growOn's looks under the pool's lock: a pool that
// cannot grow, or a loop that has a server busy with another client,
// would otherwise cost a lock per request.
const growOnEvery = 10 * time.Millisecond

// growOn opens a server on the loop whose response queue is from when the
// pool has none there, open or starting, and room for one: a request from
// that loop just went to a server parked on another loop, which costs a
// wake-up of that loop's thread and a second one for the reply. One
// server per loop is enough for a light load; heavier ones grow the pool
// through grow. Servers above shared_servers still retire after
// server_idle_timeout.
func (p *Pool) growOn(from *queue.ResponseQueue) {
	now, last := queue.Nanotime(), p.elsewhereAt.Load()
	if now-last < int64(growOnEvery) || !p.elsewhereAt.CompareAndSwap(last, now) {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.paused || p.backingOff() || p.size() >= p.conf().MaxSharedServers ||
		slices.Contains(p.starting, from) {
		return
	}
	for s := range p.servers {
		if s.home == from {
			return
		}
	}
	loop := p.parent.loopOf(from)
	if loop == nil || !p.reserve() {
		return
	}
	p.log.Debug("opening a server on a dispatcher that has none, for its clients", "servers", p.size())
	p.startOn(loop)
}

// retireIdle retires the servers above shared_servers that have been idle
// longer than server_idle_timeout.
func (p *Pool) retireIdle() {
	timeout := p.conf().ServerIdleTimeout
	if timeout <= 0 {
		return
	}
	cut := queue.Nanotime() - int64(timeout)
	p.mu.Lock()
	defer p.mu.Unlock()
	excess := len(p.servers) - p.conf().SharedServers
	for s := range p.servers {
		if excess <= 0 {
			return
		}
		if since := s.idleSince.Load(); since != 0 && since < cut {
			s.retire()
			excess--
		}
	}
}

// retireAll asks every server to close once it has no client.
func (p *Pool) retireAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for s := range p.servers {
		s.retire()
	}
}

// Pause holds the pool's requests in its queue, and waits until every
// server has finished with its client and closed: nothing stale survives
// a PostgreSQL restart, and RESUME opens fresh servers. If ctx ends first
// the pool stays paused and the error says how many servers are busy.
func (p *Pool) Pause(ctx context.Context) error {
	p.hold()
	busy := queue.WaitZero(ctx, func() int {
		p.retireAll()
		return p.open()
	})
	if busy > 0 {
		return fmt.Errorf("pool %s: %d servers still hold a client (in a transaction, bound in session mode, or pinned by session state: SHOW CIRCUITS says which)", p.q.Name, busy)
	}
	return nil
}

// hold stops handing out requests and opening servers.
func (p *Pool) hold() {
	p.q.Requests.Pause()
	p.mu.Lock()
	p.paused = true
	p.mu.Unlock()
}

// Resume ends a pause: the held requests go to new servers.
func (p *Pool) Resume() {
	p.mu.Lock()
	p.paused = false
	p.keepMinimum()
	p.mu.Unlock()
	p.q.Requests.Resume()
}

// Reconnect replaces every server with a fresh one, each once its client
// lets it go (after a change of host or password, say).
func (p *Pool) Reconnect() { p.retireAll() }

// Pause pauses every pool of database db ("" = every pool), including
// pools that clients open meanwhile, and waits for them all (see
// Pool.Pause).
func (p *Pools) Pause(ctx context.Context, db string) error {
	p.mu.Lock()
	p.paused[db] = true
	p.mu.Unlock()
	var errs []error
	for _, pool := range p.poolsOf(db) {
		pool.hold()
	}
	for _, pool := range p.poolsOf(db) {
		if err := pool.Pause(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Resume ends the pause of database db ("" = every pool).
func (p *Pools) Resume(db string) {
	p.mu.Lock()
	if db == "" {
		clear(p.paused)
	} else {
		delete(p.paused, db)
	}
	p.mu.Unlock()
	for _, pool := range p.poolsOf(db) {
		if !p.Paused(pool.conf().Database) {
			pool.Resume()
		}
	}
}

// Reconnect replaces the servers of database db ("" = every pool).
func (p *Pools) Reconnect(db string) {
	for _, pool := range p.poolsOf(db) {
		pool.Reconnect()
	}
}

// Paused reports whether database db is paused (PAUSE or KILL, of db or
// of every database): new pools of db start paused.
func (p *Pools) Paused(db string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.paused[""] || p.paused[db]
}

// errKilled closes the servers KILL drops.
var errKilled = errors.New("KILL from the admin console")

// Kill pauses database db as PAUSE does, but at once: every server of
// its pools closes now, whatever its client is doing (an open
// transaction is rolled back), and the requests waiting in its queues
// are dropped with their clients, which the caller disconnects.
func (p *Pools) Kill(db string) {
	p.mu.Lock()
	p.paused[db] = true
	p.mu.Unlock()
	for _, pool := range p.poolsOf(db) {
		pool.hold()
		pool.q.Requests.Drain()
		pool.failAll(errKilled)
	}
}

// WaitClose waits until the servers of database db ("" = all) that
// RECONNECT or RELOAD marked to close are gone: retired servers, and
// every server of a pool a reload detached. If ctx ends first, the error
// says how many are left.
func (p *Pools) WaitClose(ctx context.Context, db string) error {
	left := queue.WaitZero(ctx, func() int {
		n := 0
		p.mu.Lock()
		draining := slices.Clone(p.draining)
		p.mu.Unlock()
		for _, pool := range draining {
			if db == "" || pool.conf().Database == db {
				n += pool.open()
			}
		}
		for _, pool := range p.poolsOf(db) {
			n += pool.closing()
		}
		return n
	})
	if left > 0 {
		return fmt.Errorf("%d servers marked to close are still open: their clients hold them (in a transaction, or in session mode)", left)
	}
	return nil
}

// open counts the pool's servers, open or opening.
func (p *Pool) open() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.size()
}

// size is open with p.mu held.
func (p *Pool) size() int { return len(p.servers) + len(p.starting) }

// closing counts the pool's retired servers that are still open.
func (p *Pool) closing() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for s := range p.servers {
		if s.quitting.Load() {
			n++
		}
	}
	return n
}

// poolsOf lists the pools of database db ("" = every pool).
func (p *Pools) poolsOf(db string) []*Pool {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*Pool
	for _, pool := range p.pools {
		if db == "" || pool.conf().Database == db {
			out = append(out, pool)
		}
	}
	return out
}

// conf is the configuration in force.
func (p *Pools) conf() *config.Config { return p.current.Load() }

// conf is the pool's configuration in force.
func (p *Pool) conf() *config.PoolConfig { return p.cfg.Load() }

// Reload puts cfg in force. A pool whose settings changed only in its
// limits and timeouts takes them at once. A pool whose backend (host,
// port, dbname, login) or mode changed, or whose database is gone, is
// detached: its clients keep it until they leave, its idle servers close,
// and new logins get a new pool (or "does not exist"). It returns the
// names of the detached pools.
func (p *Pools) Reload(cfg *config.Config) []string {
	p.current.Store(cfg)
	p.mu.Lock()
	var detached []*Pool
	var updated []*Pool
	for key, pool := range p.pools {
		old := pool.conf()
		pc, ok := cfg.PoolFor(old.Database, old.User)
		switch {
		case !ok || !sameBackend(*old, pc):
			delete(p.pools, key)
			p.dropWaitHistogram(pool.wait)
			p.draining = append(p.draining, pool)
			detached = append(detached, pool)
		case pc != *old:
			pool.cfg.Store(&pc)
			updated = append(updated, pool)
		}
	}
	p.mu.Unlock()
	var names []string
	for _, pool := range detached {
		pool.drain()
		names = append(names, pool.q.Name)
	}
	for _, pool := range updated {
		pool.mu.Lock()
		pool.trim()
		pool.keepMinimum()
		pool.mu.Unlock()
		pool.grow()
	}
	return names
}

// trim retires the servers above a lowered max_shared_servers, idle ones
// first; a busy one closes once its client lets it go (p.mu held).
func (p *Pool) trim() {
	excess := -p.conf().MaxSharedServers
	for s := range p.servers {
		if !s.quitting.Load() {
			excess++
		}
	}
	for _, idleOnly := range []bool{true, false} {
		for s := range p.servers {
			if excess <= 0 {
				return
			}
			if !s.quitting.Load() && (!idleOnly || s.idleSince.Load() != 0) {
				s.retire()
				excess--
			}
		}
	}
}

// sameBackend reports whether two pool configurations reach PostgreSQL
// the same way with the same pool mode, so that one pool can switch from
// one to the other in place.
func sameBackend(a, b config.PoolConfig) bool {
	return a.Host == b.Host && a.Port == b.Port && a.DBName == b.DBName && a.BackendUser == b.BackendUser &&
		a.BackendPassword == b.BackendPassword && a.Mode == b.Mode
}

// drain makes a detached pool keep no idle server: it still serves the
// clients that use it, opening servers for them as needed.
func (p *Pool) drain() {
	cfg := *p.conf()
	cfg.SharedServers, cfg.ServerIdleTimeout = 0, time.Nanosecond
	p.cfg.Store(&cfg)
	p.retireIdle()
}
