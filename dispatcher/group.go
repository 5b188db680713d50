// Package dispatcher runs the dispatchers: gnet event loops that accept
// clients, run their startup and authentication, frame their messages into
// requests for the pools' request queues, and write the replies that shared
// servers post into each dispatcher's response queue. A dispatcher never
// blocks and never talks to PostgreSQL.
package dispatcher

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/pgmts/pgmts/auth"
	"github.com/pgmts/pgmts/config"
	"github.com/pgmts/pgmts/queue"
)

// Group is the set of dispatchers of one pgmts process.
type Group struct {
	router queue.Router
	log    *slog.Logger

	// live is the configuration in force; Reload replaces it whole, so a
	// login reads one consistent version.
	live atomic.Pointer[liveConfig]
	// decoy stands in for unknown users, so a failed login looks the same
	// whether or not the user exists.
	decoy auth.Secret

	dmu            sync.Mutex
	dispatchers    []*Dispatcher // running ones, retiring ones included
	nextDispatcher int
	handOffs       atomic.Uint64
	hosted         atomic.Uint64 // servers hosted so far (NextLoop's turn)
	wg             sync.WaitGroup
	// quit ends the group's own goroutines (releaseAfterLogins).
	quit     chan struct{}
	quitOnce sync.Once

	mu           sync.Mutex
	clientsByPID registry // logged-in clients, by cancel key
	tlsConns     map[*tlsConn]struct{}
	clients      atomic.Int64
	nextID       atomic.Uint64
	// loginSeen wakes releaseAfterLogins at a login (capacity 1).
	loginSeen chan struct{}

	shuttingDown atomic.Bool
	// refusing: SHUTDOWN WAIT_FOR_CLIENTS; new connections are refused,
	// connected clients carry on.
	refusing atomic.Bool
	// suspended is SUSPEND's state while it lasts (nil otherwise).
	suspended atomic.Pointer[suspension]
}

// suspension is a SUSPEND in force: the clients of every pool but the
// exempt ones (the admin console's) are not read, and their logins wait.
type suspension struct{ exempt func(*queue.Pool) bool }

// liveConfig is what the dispatchers read from the configuration.
type liveConfig struct {
	cfg     *config.Config
	secrets map[string]auth.Secret // [users] passwords, parsed
	tls     *tlsOffer              // client TLS on offer; nil: none
}

// New prepares the dispatchers; Start opens the listeners.
func New(cfg *config.Config, router queue.Router, log *slog.Logger) (*Group, error) {
	g := &Group{router: router, log: log, tlsConns: map[*tlsConn]struct{}{}, quit: make(chan struct{}), loginSeen: make(chan struct{}, 1)}
	if err := g.Reload(cfg); err != nil {
		return nil, err
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	decoy, err := auth.ParseSecret(fmt.Sprintf("%x", b))
	if err != nil {
		return nil, err
	}
	g.decoy = decoy
	return g, nil
}

// cfg is the configuration in force.
func (g *Group) cfg() *config.Config { return g.live.Load().cfg }

// Reload puts cfg in force for what comes next: logins (users, auth,
// TLS certificates, which it reads again), limits and timeouts, and the
// number of dispatchers. Connected clients are not touched. On error
// nothing changes. Listen addresses need a restart.
func (g *Group) Reload(cfg *config.Config) error {
	live := &liveConfig{cfg: cfg, secrets: map[string]auth.Secret{}}
	for name, u := range cfg.Users {
		s, err := auth.ParseSecret(u.Password)
		if err != nil {
			return fmt.Errorf("users.%s.password: %w", name, err)
		}
		live.secrets[name] = s
	}
	offer, err := loadTLS(cfg.Pgmts)
	if err != nil {
		return err
	}
	live.tls = offer
	old := g.live.Swap(live)
	if old != nil && cfg.Pgmts.Dispatchers != old.cfg.Pgmts.Dispatchers {
		return g.SetDispatchers(cfg.Pgmts.DispatcherCount())
	}
	return nil
}

// Start starts the dispatchers and returns once all listen.
func (g *Group) Start() error {
	n := g.cfg().Pgmts.DispatcherCount()
	// Every TCP dispatcher listens with SO_REUSEPORT, so that dispatchers
	// can come and go (SetDispatchers); a plain bind first makes sure no
	// other process holds the port.
	ln, err := net.Listen("tcp", g.cfg().Pgmts.Listen)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w", g.cfg().Pgmts.Listen, err)
	}
	_ = ln.Close()
	g.wg.Go(func() { g.releaseAfterLogins(g.quit) })
	if err := g.SetDispatchers(n); err != nil {
		g.Stop()
		return err
	}
	if g.cfg().Pgmts.UnixSocketDir == "" {
		return nil
	}
	// gnet turns SO_REUSEPORT off for an engine with a unix listener: the
	// unix socket gets a dispatcher of its own.
	path, err := g.unixSocketPath()
	if err == nil {
		err = g.startDispatcher("unix://"+path, false)
	}
	if err == nil {
		mode, _ := strconv.ParseUint(g.cfg().Pgmts.UnixSocketMode, 8, 32)
		if err = os.Chmod(path, os.FileMode(mode)); err != nil {
			err = fmt.Errorf("unix socket %s: %w", path, err)
		}
	}
	if err != nil {
		g.Stop()
	}
	return err
}

// startDispatcher starts a dispatcher listening on addr.
func (g *Group) startDispatcher(addr string, reusePort bool) error {
	g.dmu.Lock()
	defer g.dmu.Unlock()
	d := g.newDispatcher(g.nextDispatcher)
	g.nextDispatcher++
	if err := d.start([]string{addr}, reusePort); err != nil {
		return err
	}
	g.dispatchers = append(g.dispatchers, d)
	return nil
}

// SetDispatchers changes the number of TCP dispatchers that take new
// clients. New ones start accepting at once (a retired one comes back
// first). A retired one keeps serving its own clients, and hands each
// connection the kernel still gives it to an active dispatcher. It keeps
// its listener: closing a SO_REUSEPORT listener resets the connections
// waiting in its accept queue.
func (g *Group) SetDispatchers(n int) error {
	if n < 1 || n > 256 {
		return fmt.Errorf("dispatchers: %d is not between 1 and 256", n)
	}
	g.dmu.Lock()
	active := 0
	for _, d := range g.dispatchers {
		switch {
		case !d.tcp:
		case active < n:
			active++
			if d.retiring.CompareAndSwap(true, false) {
				d.log.Info("dispatcher takes new clients again")
			}
		case d.retiring.CompareAndSwap(false, true):
			d.log.Info("dispatcher retired: new clients go to the other dispatchers; it serves its own until they leave", "clients", d.stats.open())
		}
	}
	g.dmu.Unlock()
	for ; active < n; active++ {
		if err := g.startDispatcher("tcp://"+g.cfg().Pgmts.Listen, true); err != nil {
			return err
		}
	}
	return nil
}

// active lists the TCP dispatchers that take new clients.
func (g *Group) active() []*Dispatcher {
	g.dmu.Lock()
	defer g.dmu.Unlock()
	var out []*Dispatcher
	for _, d := range g.dispatchers {
		if d.tcp && !d.retiring.Load() {
			out = append(out, d)
		}
	}
	return out
}

// Dispatchers counts the TCP dispatchers that take new clients, and the
// retired ones that still serve clients of their own.
func (g *Group) Dispatchers() (active, draining int) {
	g.dmu.Lock()
	defer g.dmu.Unlock()
	for _, d := range g.dispatchers {
		switch {
		case !d.tcp:
		case !d.retiring.Load():
			active++
		case d.stats.open() > 0:
			draining++
		}
	}
	return active, draining
}

// NextLoop implements queue.Loops: new shared servers are spread over the
// dispatchers that take new clients, in turn.
func (g *Group) NextLoop() queue.Loop {
	if g.shuttingDown.Load() {
		return nil
	}
	active := g.active()
	if len(active) == 0 {
		g.dmu.Lock()
		active = slices.Clone(g.dispatchers) // only the unix socket's
		g.dmu.Unlock()
		if len(active) == 0 {
			return nil
		}
	}
	return active[int(g.hosted.Add(1))%len(active)]
}

// LoopOf implements queue.Loops: the dispatcher that takes new clients
// and has home as its response queue.
func (g *Group) LoopOf(home *queue.ResponseQueue) queue.Loop {
	if g.shuttingDown.Load() {
		return nil
	}
	for _, d := range g.active() {
		if d.responses == home {
			return d
		}
	}
	return nil
}

// handOff picks an active dispatcher for a client a retiring one accepted.
func (g *Group) handOff() *Dispatcher {
	active := g.active()
	if len(active) == 0 {
		return nil
	}
	return active[int(g.handOffs.Add(1))%len(active)]
}

// unixSocketPath is where psql looks: DIR/.s.PGSQL.PORT, with the port of
// the TCP listener. A stale socket file from a crashed run is removed.
func (g *Group) unixSocketPath() (string, error) {
	_, port, err := net.SplitHostPort(g.cfg().Pgmts.Listen)
	if err != nil {
		return "", err
	}
	path := filepath.Join(g.cfg().Pgmts.UnixSocketDir, ".s.PGSQL."+port)
	if fi, err := os.Stat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		_ = os.Remove(path)
	}
	return path, nil
}

// ClientCount is the number of connected clients.
func (g *Group) ClientCount() int { return int(g.clients.Load()) }

// Shutdown stops accepting clients and lets running transactions finish
// (at most until ctx ends), then closes every connection.
func (g *Group) Shutdown(ctx context.Context) {
	g.shuttingDown.Store(true)
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for !g.allIdle() {
		select {
		case <-ctx.Done():
			g.log.Warn("shutdown timeout: closing clients with transactions still open")
			g.Stop()
			return
		case <-t.C:
		}
	}
	g.Stop()
}

// StopAccepting refuses every new connection from now on, and lets the
// connected clients carry on (SHUTDOWN WAIT_FOR_CLIENTS).
func (g *Group) StopAccepting() { g.refusing.Store(true) }

// Suspend stops reading from the clients of every pool exempt does not
// exempt and holds their new logins, then waits until none has a request
// in flight or a reply not yet on its socket (SUSPEND). If ctx ends first,
// the clients stay suspended and the error says how many are still busy.
func (g *Group) Suspend(ctx context.Context, exempt func(*queue.Pool) bool) error {
	if !g.suspended.CompareAndSwap(nil, &suspension{exempt: exempt}) {
		return errors.New("already suspended")
	}
	busy := queue.WaitZero(ctx, func() int {
		busy := 0
		for _, c := range g.loggedIn() {
			if exempt(c.Pool) {
				continue
			}
			s := c.Snapshot()
			if s.State == queue.ClientWaiting || s.Busy || s.Backlog > 0 {
				busy++
			}
			if s.Backlog > 0 {
				// gnet has no "drained" event: ask the loop for a fresh
				// reading of the socket's unsent bytes.
				c.Responses.Push(queue.Reply{Client: c, Poll: true})
			}
		}
		return busy
	})
	if busy > 0 {
		return fmt.Errorf("%d clients still have a request in flight or replies not yet sent", busy)
	}
	return nil
}

// Resume ends a SUSPEND: every dispatcher goes on with the clients and
// logins it held. It reports whether there was one.
func (g *Group) Resume() bool {
	if g.suspended.Swap(nil) == nil {
		return false
	}
	g.dmu.Lock()
	defer g.dmu.Unlock()
	for _, d := range g.dispatchers {
		if d.loop.Load() != nil {
			d.run(d.releaseHeld)
		}
	}
	return true
}

// Suspended reports whether a SUSPEND is in force.
func (g *Group) Suspended() bool { return g.suspended.Load() != nil }

// holds reports whether SUSPEND holds the clients of pool.
func (g *Group) holds(pool *queue.Pool) bool {
	s := g.suspended.Load()
	return s != nil && !s.exempt(pool)
}

// loggedIn lists the clients that finished their login.
func (g *Group) loggedIn() []*queue.Client {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]*queue.Client, 0, g.clientsByPID.count())
	g.clientsByPID.each(func(cc *clientConn) { out = append(out, cc.client) })
	return out
}

func (g *Group) allIdle() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	idle := true
	g.clientsByPID.each(func(cc *clientConn) { idle = idle && cc.client.Idle() })
	return idle
}

// Stop closes every connection and stops the event loops.
func (g *Group) Stop() {
	g.shuttingDown.Store(true)
	// gnet's Engine.Stop polls every 500 ms: stop the engines together.
	var stopping sync.WaitGroup
	g.dmu.Lock()
	for _, d := range g.dispatchers {
		stopping.Go(d.stop)
	}
	g.dmu.Unlock()
	stopping.Wait()
	g.closeTLS()
	g.quitOnce.Do(func() { close(g.quit) })
	g.wg.Wait()
}

// register gives a logged-in client its cancel key.
func (g *Group) register(cc *clientConn) {
	g.mu.Lock()
	g.clientsByPID.add(cc)
	g.mu.Unlock()
}

func (g *Group) unregister(cc *clientConn) {
	if cc.pid == 0 {
		return
	}
	g.mu.Lock()
	g.clientsByPID.remove(cc)
	g.mu.Unlock()
}

func (g *Group) lookup(pid uint32) *clientConn {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.clientsByPID.get(pid)
}

var errBoot = errors.New("dispatcher did not start")

// gnetLogger routes gnet's own logging into slog.
type gnetLogger struct{ log *slog.Logger }

func (l gnetLogger) Debugf(f string, a ...any) { l.log.Debug(fmt.Sprintf(f, a...)) }
func (l gnetLogger) Infof(f string, a ...any)  { l.log.Debug(fmt.Sprintf(f, a...)) }
func (l gnetLogger) Warnf(f string, a ...any)  { l.log.Warn(fmt.Sprintf(f, a...)) }
func (l gnetLogger) Errorf(f string, a ...any) { l.log.Error(fmt.Sprintf(f, a...)) }
func (l gnetLogger) Fatalf(f string, a ...any) { l.log.Error(fmt.Sprintf(f, a...)) }

var _ gnet.EventHandler = (*Dispatcher)(nil)
