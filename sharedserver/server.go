package sharedserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgmts/pgmts/circuits"
	"github.com/pgmts/pgmts/queue"
	"github.com/pgmts/pgmts/wire"
)

// Backpressure: a server stops reading its backend while this many reply
// bytes for its client are not yet on the client's socket, so a slow reader
// of a huge result costs bounded memory.
const highWater = 1 << 20

// Server is one shared server: one backend connection, driven by two
// goroutines. The writer takes requests (pool queue, then the bound
// client's inbox) and writes them; the reader streams everything PostgreSQL
// sends to the owning client and decides, at each ReadyForQuery, whether
// the pool mode lets the server go.
type Server struct {
	pool        *Pool
	conn        net.Conn
	pid         uint32
	cancel      queue.CancelTarget
	loginParams map[string]string
	log         *slog.Logger

	owner    atomic.Pointer[queue.Client]
	released chan struct{} // reader → writer: the owner was let go
	dead     chan struct{} // closed when the backend is gone
	failOnce sync.Once
	// quit asks the writer to close the backend the next time it has no
	// client (retire): idle timeout, PAUSE, RECONNECT.
	quit     chan struct{}
	quitOnce sync.Once
	// idleSince is when the writer parked on the queue (queue.Nanotime);
	// 0 while it serves a client.
	idleSince atomic.Int64

	mu sync.Mutex
	// settings are the GUCs pgmts set on this backend beyond its login
	// defaults (lower-case names), to diff against the next client's.
	settings map[string]string
	// internal lists queries pgmts itself sent whose replies the reader
	// must swallow; a non-nil channel is closed when that reply is done.
	internal  []chan struct{}
	internalN atomic.Int32
	// statements are the named prepared statements on this backend:
	// name → the Parse message that made it (see statements.go).
	statements map[string]string
	injected   []injected
	injectedN  atomic.Int32
	// wseg counts requests written (writer), rseg ReadyForQuery messages
	// read (reader): the Sync segments that tag slipped-in messages.
	wseg, rseg uint64

	spare []byte

	stats serverStats // for the admin console (stats.go)
}

// connConfig is pgconn's config for a login to host and port as user.
func (p *Pools) connConfig(host string, port int, dbname, user, password string, timeout time.Duration) (*pgconn.Config, error) {
	// Host, port and TLS go through the connection string so that pgconn
	// builds its TLS config (and prefer's plaintext fallback) as libpq would.
	g := p.conf().Pgmts
	conn := fmt.Sprintf("host=%s port=%d sslmode=%s", connValue(host), port, g.ServerTLSMode)
	for key, file := range map[string]string{"sslrootcert": g.ServerTLSCAFile, "sslcert": g.ServerTLSCertFile, "sslkey": g.ServerTLSKeyFile} {
		if file != "" {
			conn += " " + key + "=" + connValue(file)
		}
	}
	cfg, err := pgconn.ParseConfigWithOptions(conn, pgconn.ParseConfigOptions{})
	if err != nil {
		return nil, err
	}
	cfg.Database, cfg.User, cfg.Password = dbname, user, password
	cfg.ConnectTimeout = timeout
	cfg.RuntimeParams = map[string]string{}
	return cfg, nil
}

func connect(p *Pool) (*Server, error) {
	pc := p.conf()
	cfg, err := p.parent.connConfig(pc.Host, pc.Port, pc.DBName, pc.BackendUser, pc.BackendPassword, pc.ServerConnectTimeout)
	if err != nil {
		return nil, err
	}
	network, address := backendAddress(*pc)
	ctx, cancel := context.WithTimeout(context.Background(), pc.ServerConnectTimeout)
	defer cancel()
	p.mu.Lock()
	pt := p.passthrough
	p.mu.Unlock()
	var hj *pgconn.HijackedConn
	if pt.SCRAM != nil || pt.MD5 != "" {
		hj, err = loginPassthrough(ctx, cfg, pt)
	} else {
		hj, err = loginPgconn(ctx, cfg)
	}
	if err != nil {
		return nil, err
	}
	s := &Server{
		pool: p, conn: hj.Conn, pid: hj.PID, loginParams: hj.ParameterStatuses,
		cancel:   queue.CancelTarget{Network: network, Address: address, PID: hj.PID, Key: hj.SecretKey},
		log:      p.log.With("backend_pid", hj.PID),
		released: make(chan struct{}, 1), dead: make(chan struct{}), quit: make(chan struct{}),
		settings: map[string]string{}, statements: map[string]string{},
	}
	return s, nil
}

// loginPgconn logs in with pgconn and takes over its socket.
func loginPgconn(ctx context.Context, cfg *pgconn.Config) (*pgconn.HijackedConn, error) {
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	// pgconn may still have a background read in flight; it would steal
	// the first reply bytes from the hijacked socket.
	if err := pc.SyncConn(ctx); err != nil {
		pc.Close(ctx)
		return nil, err
	}
	hj, err := pc.Hijack()
	if err != nil {
		pc.Close(ctx)
		return nil, err
	}
	if hj.Frontend.ReadBufferLen() != 0 {
		hj.Conn.Close()
		return nil, errors.New("backend sent data before the first request")
	}
	return hj, nil
}

// connValue quotes a value for a libpq-style connection string.
func connValue(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// asWireError turns a backend login failure into what the client is sent.
func asWireError(err error) *wire.Error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		sev := pe.SeverityUnlocalized
		if sev == "" {
			sev = pe.Severity
		}
		return &wire.Error{Severity: sev, Code: pe.Code, Message: pe.Message, Detail: pe.Detail, Hint: pe.Hint}
	}
	var we *wire.Error
	if errors.As(err, &we) {
		return we
	}
	return &wire.Error{Severity: "FATAL", Code: "08006", Message: fmt.Sprintf("pgmts could not connect to the server: %v", err),
		Hint: "Check that PostgreSQL is running and the [databases] section's host and port."}
}

func (s *Server) start() {
	s.pool.parent.wg.Add(2)
	go func() {
		defer s.pool.parent.wg.Done()
		s.readLoop()
	}()
	go func() {
		defer s.pool.parent.wg.Done()
		s.writeLoop()
	}()
}

// fail closes the backend once; the client being served, if any, is told
// and disconnected (its session is gone with the backend).
func (s *Server) fail(err error) {
	s.failOnce.Do(func() {
		close(s.dead)
		s.retire()
		s.conn.Close()
		s.mu.Lock()
		for _, ch := range s.internal {
			if ch != nil {
				close(ch)
			}
		}
		s.internal = nil
		s.mu.Unlock()
		if c := s.owner.Swap(nil); c != nil {
			c.SetCancelTarget(nil)
			c.Release(s)
			c.Fail(wire.Fatal("08006", "server connection lost: %v", err))
		}
		s.log.Debug("backend closed", "reason", err)
		s.pool.remove(s)
	})
}

// errRetired closes a server the pool no longer wants.
var errRetired = errors.New("server retired")

// retire makes the writer close the backend once it has no client.
func (s *Server) retire() { s.quitOnce.Do(func() { close(s.quit) }) }

func (s *Server) writeLoop() {
	parked := make(chan *queue.Client, 1)
	for {
		s.idleSince.Store(queue.Nanotime())
		c := s.pool.q.Requests.Take(parked, s.quit)
		s.idleSince.Store(0)
		if c == nil {
			s.fail(errRetired)
			return
		}
		if !c.Begin(s) {
			continue
		}
		if !s.serve(c) {
			return
		}
	}
}

// serve runs one client's requests until the reader lets the client go
// (true) or the backend is lost (false).
func (s *Server) serve(c *queue.Client) bool {
	s.owner.Store(c)
	c.SetCancelTarget(&s.cancel)
	if err := s.applySettings(c); err != nil {
		s.fail(err)
		return false
	}
	for {
		data, mine, gone := c.Take(s, s.spare)
		switch {
		case !mine:
			// The reader let the client go; take its signal so that it
			// cannot end the next client's service early.
			s.spare = data
			select {
			case <-s.released:
				return true
			case <-s.dead:
				return false
			}
		case gone:
			s.spare = data
			return s.clientGone(c)
		case len(data) > 0:
			s.stats.request(len(data))
			if _, err := s.conn.Write(s.prepareStatements(c, data)); err != nil {
				s.fail(err)
				return false
			}
			if cap(data) <= 1<<20 {
				s.spare = data[:0]
			} else {
				s.spare = nil // let a burst's big buffer go
			}
			continue
		}
		s.spare = data
		select {
		case <-c.Wake():
		case <-s.released:
			c.SetCancelTarget(nil)
			return true
		case <-s.dead:
			return false
		}
	}
}

// applySettings makes the backend carry exactly the client's settings
// (startup parameters and reported SETs), swallowing the reply.
func (s *Server) applySettings(c *queue.Client) error {
	var set [][2]string
	var reset []string
	c.Circuit(func(ci *circuits.Circuit) {
		s.mu.Lock()
		set, reset = circuits.SettingsDiff(s.settings, ci.Settings())
		if len(set)+len(reset) > 0 {
			s.settings = maps.Clone(ci.Settings())
		}
		s.mu.Unlock()
	})
	if len(set)+len(reset) == 0 {
		return nil
	}
	return s.internalQuery(circuits.SettingsSQL(set, reset), nil)
}

// internalQuery sends a query of pgmts's own; its reply is swallowed and
// done (if not nil) is closed when it has come.
func (s *Server) internalQuery(sql string, done chan struct{}) error {
	s.mu.Lock()
	s.internal = append(s.internal, done)
	s.internalN.Add(1)
	s.wseg++
	s.mu.Unlock()
	msg := append([]byte{'Q', 0, 0, 0, 0}, sql...)
	msg = append(msg, 0)
	putLen(msg)
	_, err := s.conn.Write(msg)
	return err
}

func putLen(msg []byte) {
	n := len(msg) - 1
	msg[1], msg[2], msg[3], msg[4] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
}

// clientGone cleans up after a client that left while this server held
// it: reset and keep the backend if the session was idle, else close it
// (cancelling a running query first) so no state reaches the next client.
func (s *Server) clientGone(c *queue.Client) bool {
	var idle, busy bool
	c.Circuit(func(ci *circuits.Circuit) { idle, busy = ci.Idle(), ci.Busy() })
	s.owner.Store(nil)
	c.Release(s)
	c.SetCancelTarget(nil)
	if !idle {
		if busy {
			t := s.cancel
			_ = sendCancel(&t, s.pool.conf().ServerConnectTimeout)
		}
		s.fail(errors.New("client left in the middle of a transaction or request"))
		return false
	}
	if q := s.pool.conf().ServerResetQuery; q != "" && s.pool.q.Mode == circuits.Session {
		done := make(chan struct{})
		if err := s.internalQuery(q, done); err != nil {
			s.fail(err)
			return false
		}
		select {
		case <-done:
		case <-s.dead:
			return false
		}
		s.mu.Lock()
		clear(s.settings)
		s.mu.Unlock()
	}
	return true
}

// readLoop streams the backend's output to the owning client.
func (s *Server) readLoop() {
	buf := make([]byte, 64<<10)
	start, end := 0, 0
	pass := 0 // bytes of a large message still to pass through
	passDrop := false
	var out *[]byte // reply chunk being filled
	for {
		if start == end {
			start, end = 0, 0
		} else if len(buf)-end < 5 || start > len(buf)/2 {
			end = copy(buf, buf[start:end])
			start = 0
		}
		n, err := s.conn.Read(buf[end:])
		if err != nil {
			s.flush(&out)
			s.fail(err)
			return
		}
		end += n
		for start < end {
			if pass > 0 {
				k := min(pass, end-start)
				if !passDrop {
					s.emit(&out, buf[start:start+k])
				}
				start += k
				pass -= k
				continue
			}
			typ, size, ok := wire.Header(buf[start:end])
			if !ok {
				break
			}
			if size < 5 {
				s.fail(fmt.Errorf("backend sent a malformed message (type %q, length %d)", typ, size-1))
				return
			}
			if size > end-start {
				if !inspected(typ) {
					// Stream big rows and COPY data through without ever
					// holding the whole message.
					pass = size - (end - start)
					passDrop = s.internalN.Load() > 0 || s.owner.Load() == nil
					if !passDrop {
						s.emit(&out, buf[start:end])
					}
					start = end
					continue
				}
				if size > len(buf) {
					nb := make([]byte, size)
					end = copy(nb, buf[start:end])
					start, buf = 0, nb
				}
				break
			}
			msg := buf[start : start+size]
			start += size
			if !s.handle(typ, msg, &out) {
				return
			}
		}
		s.flush(&out)
	}
}

// inspected lists the message types the reader must see whole.
func inspected(typ byte) bool {
	switch typ {
	case 'Z', 'S', 'E', 'N', 'A', 'C', 'G', 'H', 'W', 'K', '1', '3':
		return true
	}
	return false
}

// handle processes one whole message; false means the server is done.
func (s *Server) handle(typ byte, msg []byte, out **[]byte) bool {
	internal := s.internalN.Load() > 0
	owner := s.owner.Load()
	switch typ {
	case '1', '3':
		if s.swallowInjected(typ) {
			return true
		}
	case 'C':
		switch cstr(msg[5:]) {
		case "DISCARD ALL", "DEALLOCATE", "DEALLOCATE ALL":
			s.forgetStatements()
		}
	case 'Z':
		s.segmentDone()
		if internal {
			s.mu.Lock()
			if len(s.internal) > 0 {
				if ch := s.internal[0]; ch != nil {
					close(ch)
				}
				s.internal = s.internal[1:]
				s.internalN.Add(-1)
			}
			s.mu.Unlock()
			return true
		}
		if owner == nil {
			return true
		}
		if circuits.Refuses(owner.Pool.Mode, msg[5]) {
			// Refuse before the client is told the block began; closing
			// the backend rolls it back.
			s.flush(out)
			owner.Fail(wire.Fatal("25001", "transaction blocks not allowed in statement pooling mode"))
			s.fail(errors.New("client opened a transaction block in statement mode"))
			return false
		}
		s.emit(out, msg)
		s.flush(out)
		s.stats.ready(msg[5])
		released := owner.Ready(s, msg[5])
		if released {
			s.resync()
			owner.SetCancelTarget(nil)
			s.owner.Store(nil)
			signalRelease(s.released)
		}
		return true
	case 'S':
		name, value, ok := wire.ParameterStatus(msg[5:])
		if !ok || owner == nil {
			return true
		}
		var send bool
		owner.Circuit(func(ci *circuits.Circuit) { send = ci.Reported(name, value, !internal) })
		if !internal {
			// The client changed a reported setting: it is now part of
			// what this backend carries for it.
			s.mu.Lock()
			s.settings[strings.ToLower(name)] = value
			s.mu.Unlock()
		}
		if send {
			s.emit(out, msg)
		}
		return true
	case 'E':
		if internal {
			e := wire.ErrorFields(msg[5:])
			s.log.Warn("a query pgmts sent to apply session settings failed", "err", e.Error())
			return true
		}
		e := wire.ErrorFields(msg[5:])
		if owner == nil {
			s.log.Info("backend error while idle", "err", e.Error())
			return true
		}
		s.stats.errored()
		if e.Severity == "FATAL" || e.Severity == "PANIC" {
			// The backend is ending the session: pass its own words on and
			// close the client, whose session ends with it.
			s.emit(out, msg)
			s.flush(out)
			s.owner.Store(nil)
			owner.SetCancelTarget(nil)
			owner.Release(s)
			owner.Responses.Push(queue.Reply{Client: owner, Close: true})
			return true
		}
	}
	if internal || owner == nil {
		return true
	}
	s.emit(out, msg)
	return true
}

func signalRelease(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// emit appends reply bytes for the owner, pushing full chunks.
func (s *Server) emit(out **[]byte, b []byte) {
	for len(b) > 0 {
		if *out == nil {
			*out = queue.GetBuffer()
		}
		buf := **out
		k := min(len(b), cap(buf)-len(buf))
		if k == 0 {
			s.flush(out)
			continue
		}
		**out = append(buf, b[:k]...)
		b = b[k:]
	}
}

// flush hands the filled chunk to the owner's dispatcher, first waiting
// while the client is too far behind.
func (s *Server) flush(out **[]byte) {
	if *out == nil || len(**out) == 0 {
		return
	}
	c := s.owner.Load()
	if c == nil {
		queue.PutBuffer(**out)
		*out = nil
		return
	}
	// gnet has no "drained" event: while the client is behind, ask its
	// dispatcher for a fresh reading, at most once a millisecond.
	for c.Backlog() > highWater && !c.Closed() {
		c.Responses.Push(queue.Reply{Client: c, Poll: true})
		select {
		case <-c.Drained():
		case <-s.dead:
		}
		if c.Backlog() > highWater {
			select {
			case <-time.After(time.Millisecond):
			case <-s.dead:
			}
		}
		select {
		case <-s.dead:
			queue.PutBuffer(**out)
			*out = nil
			return
		default:
		}
	}
	s.stats.replied(len(**out))
	c.Responses.PushPooled(c, *out)
	*out = nil
}
