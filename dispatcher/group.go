// Package dispatcher runs the dispatchers: gnet event loops that accept
// clients, run their startup and authentication, frame their messages into
// requests for the pools' request queues, and write the replies that shared
// servers post into each dispatcher's response queue. A dispatcher never
// blocks and never talks to PostgreSQL.
package dispatcher

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
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
	cfg    *config.Config
	router queue.Router
	log    *slog.Logger

	secrets map[string]auth.Secret
	// decoy stands in for unknown users, so a failed login looks the same
	// whether or not the user exists.
	decoy auth.Secret

	dispatchers []*Dispatcher
	wg          sync.WaitGroup

	// tls is the client TLS on offer (nil: none); ReloadTLS replaces it.
	tls atomic.Pointer[tlsOffer]

	mu       sync.Mutex
	byPID    map[uint32]*clientConn // cancel keys
	tlsConns map[*tlsConn]struct{}
	clients  atomic.Int64
	nextID   atomic.Uint64

	shuttingDown atomic.Bool
}

// New prepares the dispatchers; Start opens the listeners.
func New(cfg *config.Config, router queue.Router, log *slog.Logger) (*Group, error) {
	g := &Group{cfg: cfg, router: router, log: log, secrets: map[string]auth.Secret{},
		byPID: map[uint32]*clientConn{}, tlsConns: map[*tlsConn]struct{}{}}
	if err := g.ReloadTLS(); err != nil {
		return nil, err
	}
	for name, u := range cfg.Users {
		s, err := auth.ParseSecret(u.Password)
		if err != nil {
			return nil, fmt.Errorf("users.%s.password: %w", name, err)
		}
		g.secrets[name] = s
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

// Start starts the dispatchers and returns once all listen.
func (g *Group) Start() error {
	n := g.cfg.Pgmts.Dispatchers
	if n == 0 {
		n = runtime.NumCPU()
	}
	tcp := "tcp://" + g.cfg.Pgmts.Listen
	var unix string
	if g.cfg.Pgmts.UnixSocketDir != "" {
		path, err := g.unixSocketPath()
		if err != nil {
			return err
		}
		unix = "unix://" + path
	}
	for i := 0; i < n; i++ {
		d := g.newDispatcher(i)
		addrs := []string{tcp}
		// gnet turns SO_REUSEPORT off for an engine that has a unix
		// listener, so the unix socket shares an engine only with a lone
		// dispatcher; otherwise it gets a dispatcher of its own.
		if i == 0 && n == 1 && unix != "" {
			addrs = append(addrs, unix)
		}
		if err := d.start(addrs, n > 1); err != nil {
			g.Stop()
			return err
		}
		g.addDispatcher(d)
	}
	if unix != "" && n > 1 {
		d := g.newDispatcher(n)
		if err := d.start([]string{unix}, false); err != nil {
			g.Stop()
			return err
		}
		g.addDispatcher(d)
	}
	if unix != "" {
		path := unix[len("unix://"):]
		mode, _ := strconv.ParseUint(g.cfg.Pgmts.UnixSocketMode, 8, 32)
		if err := os.Chmod(path, os.FileMode(mode)); err != nil {
			g.Stop()
			return fmt.Errorf("unix socket %s: %w", path, err)
		}
	}
	return nil
}

// unixSocketPath is where psql looks: DIR/.s.PGSQL.PORT, with the port of
// the TCP listener. A stale socket file from a crashed run is removed.
func (g *Group) unixSocketPath() (string, error) {
	_, port, err := net.SplitHostPort(g.cfg.Pgmts.Listen)
	if err != nil {
		return "", err
	}
	path := filepath.Join(g.cfg.Pgmts.UnixSocketDir, ".s.PGSQL."+port)
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

func (g *Group) allIdle() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, cc := range g.byPID {
		if cc.client != nil && !cc.client.Idle() {
			return false
		}
	}
	return true
}

// Stop closes every connection and stops the event loops.
func (g *Group) Stop() {
	g.shuttingDown.Store(true)
	// gnet's Engine.Stop polls every 500 ms: stop the engines together.
	var stopping sync.WaitGroup
	for _, d := range g.dispatchers {
		stopping.Go(d.stop)
	}
	stopping.Wait()
	g.closeTLS()
	g.wg.Wait()
}

// register gives a logged-in client its cancel key.
func (g *Group) register(cc *clientConn) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for {
		var b [8]byte
		_, _ = rand.Read(b[:])
		pid := binary.BigEndian.Uint32(b[:4]) & 0x7fffffff
		if pid == 0 || g.byPID[pid] != nil {
			continue
		}
		cc.pid = pid
		copy(cc.key[:], b[4:])
		g.byPID[pid] = cc
		return
	}
}

func (g *Group) unregister(cc *clientConn) {
	if cc.pid == 0 {
		return
	}
	g.mu.Lock()
	if g.byPID[cc.pid] == cc {
		delete(g.byPID, cc.pid)
	}
	g.mu.Unlock()
}

func (g *Group) lookup(pid uint32) *clientConn {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.byPID[pid]
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
