package sharedserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/panjf2000/gnet/v2"

	"github.com/pgmts/pgmts/circuits"
	"github.com/pgmts/pgmts/looptls"
	"github.com/pgmts/pgmts/queue"
	"github.com/pgmts/pgmts/wire"
)

// Backpressure: a server stops reading its backend while this many reply
// bytes for its client are not yet on the client's socket, so a slow reader
// of a huge result costs bounded memory.
const highWater = 1 << 20

// Server is one shared server: one backend connection, hosted on a
// dispatcher's event loop (queue.Loop). Everything it does runs on that
// loop: it takes a client from its pool's queue (or is handed one), writes
// the client's requests, streams PostgreSQL's replies to the client (at
// once when the client is on the same loop) and decides, at each
// ReadyForQuery, whether the pool mode lets it go. Nothing blocks: waiting
// for a reply is waiting for the loop's next event.
type Server struct {
	pool        *Pool
	loop        queue.Loop
	home        *queue.ResponseQueue // loop.Responses(): the loop as a pointer
	pid         uint32
	cancel      queue.CancelTarget
	loginParams map[string]string
	log         *slog.Logger
	// local, remote and tlsVersion describe the connection for the
	// console; sess is the backend's TLS session, if any (tls.go).
	local, remote net.Addr
	tlsVersion    string
	sess          *looptls.Session
	// conn is the login's socket until host hands it to the loop.
	conn net.Conn

	// gc is the backend socket on the loop: nil before it opens and while
	// the server waits for a slow client (detach). Loop-owned, like every
	// field down to stats except the atomics.
	gc       gnet.Conn
	dead     bool
	detached bool
	// inputWaits: Poke left the client's input in its inbox while the
	// backend's outbound buffer was full; HostedDrained pokes again.
	inputWaits bool
	// quitting: close the backend the next time it has no client (retire):
	// idle timeout, PAUSE, RECONNECT.
	quitting atomic.Bool
	owner    atomic.Pointer[queue.Client]
	// idleSince is when the server parked on the queue (queue.Nanotime);
	// 0 while it serves a client.
	idleSince atomic.Int64
	failOnce  sync.Once

	// settings are the GUCs pgmts set on this backend beyond its login
	// defaults (lower-case names), to diff against the next client's.
	settings map[string]string
	// carries is the SettingsKey of the client settings were last taken
	// from, while settings still equal them (carriesKnown).
	carries      string
	carriesKnown bool
	// internal lists queries pgmts itself sent whose replies must be
	// swallowed; a non-nil func runs when that reply is done, given the
	// query's DataRow messages (rows) and whether it succeeded (no
	// ErrorResponse: failed is false).
	internal []func(rows []byte, ok bool)
	rows     []byte
	failed   bool
	// recheck and refetch: the owner's current transaction may have made
	// or dropped session state, or set parameters PostgreSQL does not
	// report (sessionstate.go).
	recheck, refetch bool
	// Statement mode keeps no state past a statement (sessionstate.go):
	// refusing drops the rest of a reply, up to ReadyForQuery, whose client
	// got an error in place of a command that made some; readyHeld: the
	// owner's ReadyForQuery (idle, wire.ReadyIdle) waits while the backend
	// is asked whether its last command left some.
	refusing, readyHeld bool
	// refused: a command's state was refused here, and the backend closes
	// once its client lets it go. Until then a notification it gets (a
	// LISTEN refused, queries pipelined behind it) is not passed on.
	refused bool
	// statements are the named prepared statements on this backend:
	// name → the Parse message that made it (see statements.go).
	statements map[string]string
	injected   []injected
	// wseg counts requests written, rseg ReadyForQuery messages read: the
	// Sync segments that tag slipped-in messages.
	wseg, rseg uint64

	// Reading state: pass counts the bytes of a large message still to
	// stream through (dropped when passDrop); out is the reply chunk
	// being filled.
	pass     int
	passDrop bool
	out      *[]byte
	spare    []byte

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
	dialTransports(cfg)
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
		pool: p, pid: hj.PID, loginParams: hj.ParameterStatuses,
		local: hj.Conn.LocalAddr(), remote: hj.Conn.RemoteAddr(),
		cancel:   queue.CancelTarget{Network: network, Address: address, PID: hj.PID, Key: hj.SecretKey},
		log:      p.log.With("backend_pid", hj.PID),
		settings: map[string]string{}, statements: map[string]string{},
	}
	s.stats.born = time.Now()
	if s.conn, err = s.hostable(hj.Conn); err != nil {
		hj.Conn.Close()
		return nil, err
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

// host registers the server's backend socket on its loop; the server
// starts serving there (HostedOpen).
func (s *Server) host() error {
	conn := s.conn
	s.conn = nil
	return s.loop.Host(conn, s)
}

// Loop implements queue.Server.
func (s *Server) Loop() queue.Loop { return s.loop }

// Home implements queue.Server.
func (s *Server) Home() *queue.ResponseQueue { return s.home }

// HostedOpen implements queue.Hosted: the socket is on the loop, for the
// first time (take a client) or back from a detach (go on serving).
func (s *Server) HostedOpen(gc gnet.Conn) {
	if s.dead {
		gc.SetContext(nil) // failed while detached
		_ = gc.Close()
		return
	}
	s.gc = gc
	if s.sess != nil {
		s.sess.OnLoop(gc)
	}
	if s.detached {
		s.detached = false
		s.Poke()
		return
	}
	s.next()
}

// HostedClose implements queue.Hosted.
func (s *Server) HostedClose(_ gnet.Conn, err error) {
	s.gc = nil
	if err == nil {
		err = errors.New("backend connection closed")
	}
	s.fail(err)
}

// onLoop runs fn on the server's loop; when the loop has stopped (and
// closed the socket), fn runs here.
func (s *Server) onLoop(fn func()) {
	if s.loop.Run(fn) != nil {
		fn()
	}
}

// fail closes the backend once; the client being served, if any, is told
// and disconnected (its session is gone with the backend). On the loop.
func (s *Server) fail(err error) {
	s.failOnce.Do(func() {
		s.dead = true
		s.idleSince.Store(0)
		s.pool.q.Requests.Unpark(s)
		if s.gc != nil {
			s.gc.SetContext(nil) // its OnClose is this
			_ = s.gc.Close()
			s.gc = nil
		}
		s.internal = nil
		if s.out != nil {
			queue.PutBuffer(*s.out)
			s.out = nil
		}
		if c := s.owner.Swap(nil); c != nil {
			c.SetCancelTarget(nil)
			c.Release(s)
			c.Fail(wire.Fatal("08006", "server connection lost: %v", err))
		}
		s.log.Debug("backend closed", "reason", err)
		s.pool.remove(s)
		s.pool.parent.wg.Done()
	})
}

// errRetired closes a server the pool no longer wants.
var errRetired = errors.New("server retired")

// retire closes the backend now if it is idle, else once its client lets
// it go. From any goroutine, even with the pool's lock held: the work is
// done on the loop (a stopped loop has closed the backend already).
func (s *Server) retire() {
	s.quitting.Store(true)
	_ = s.loop.Run(func() {
		if s.pool.q.Requests.Unpark(s) {
			s.fail(errRetired)
		}
	})
}

// next takes the next waiting client, or parks the server on the queue
// until Serve hands it one.
func (s *Server) next() {
	if s.quitting.Load() {
		s.fail(errRetired)
		return
	}
	for !s.dead {
		s.idleSince.Store(s.loop.Now()) // the loop's reading: no clock read of its own
		c := s.pool.q.Requests.Next(s)
		if c == nil {
			return // parked
		}
		if s.begin(c) {
			return
		}
	}
}

// Serve implements queue.Server: the queue hands the parked server a client.
func (s *Server) Serve(c *queue.Client) {
	if s.dead {
		c.Pool.Requests.Requeue(c)
		return
	}
	if !s.begin(c) {
		s.next()
	}
}

// begin starts serving c; false when c left while it waited.
func (s *Server) begin(c *queue.Client) bool {
	if !c.BeginHosted(s) {
		return false
	}
	s.idleSince.Store(0)
	s.owner.Store(c)
	c.SetCancelTarget(&s.cancel)
	if err := s.applySettings(c); err != nil {
		s.fail(err)
		return true
	}
	s.Poke()
	return true
}

// Poke implements queue.Server: it writes what the client sent since, or
// cleans up after a client that left.
func (s *Server) Poke() {
	c := s.owner.Load()
	if c == nil || s.gc == nil {
		return // between clients, or detached: HostedOpen pokes again
	}
	if s.gc.OutboundBuffered() > highWater && !c.Closed() {
		// PostgreSQL reads slower than the client sends: the bytes stay
		// in the client's inbox, whose dispatcher stops reading the
		// client once it is full, until the backend took these.
		s.inputWaits = true
		return
	}
	data, mine, gone := c.Take(s, s.spare)
	switch {
	case !mine:
		s.spare = data
	case gone:
		s.spare = data
		s.clientGone(c)
	case len(data) > 0:
		s.stats.request(len(data), s.loop.Now())
		if err := s.send(s.prepareStatements(c, data)); err != nil {
			s.fail(err)
			return
		}
		s.scanSessionState(c, data)
		if cap(data) <= 1<<20 {
			s.spare = data[:0]
		} else {
			s.spare = nil // let a burst's big buffer go
		}
	default:
		s.spare = data
	}
}

// HostedDrained implements queue.Hosted: the backend took everything
// written to it, so the client's waiting input goes next.
func (s *Server) HostedDrained(gnet.Conn) {
	if s.inputWaits {
		s.inputWaits = false
		s.Poke()
	}
}

// applySettings makes the backend carry exactly the client's settings
// (startup parameters and reported SETs), swallowing the reply.
func (s *Server) applySettings(c *queue.Client) error {
	var set [][2]string
	var reset []string
	c.Circuit(func(ci *circuits.Circuit) {
		key, shared := ci.SettingsKey()
		if shared && s.carriesKnown && key == s.carries {
			return // the same login set as last time: nothing to diff
		}
		set, reset = circuits.SettingsDiff(s.settings, ci.Settings())
		if len(set)+len(reset) > 0 {
			clear(s.settings)
			maps.Copy(s.settings, ci.Settings())
		}
		s.carries, s.carriesKnown = key, shared
	})
	if len(set)+len(reset) == 0 {
		return nil
	}
	return s.internalQuery(circuits.SettingsSQL(set, reset), nil)
}

// internalQuery sends a query of pgmts's own; its reply is swallowed and
// done (if not nil) runs when it has come.
func (s *Server) internalQuery(sql string, done func(rows []byte, ok bool)) error {
	s.internal = append(s.internal, done)
	s.wseg++
	msg := append([]byte{'Q', 0, 0, 0, 0}, sql...)
	msg = append(msg, 0)
	putLen(msg)
	return s.send(msg)
}

func putLen(msg []byte) {
	n := len(msg) - 1
	msg[1], msg[2], msg[3], msg[4] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
}

// clientGone cleans up after a client that left while this server held
// it: reset and keep the backend if the session was idle, else close it
// (cancelling a running query) so no state reaches the next client.
func (s *Server) clientGone(c *queue.Client) {
	var idle, busy bool
	var pins circuits.Pins
	c.Circuit(func(ci *circuits.Circuit) { idle, busy, pins = ci.Idle(), ci.Busy(), ci.Pins() })
	s.owner.Store(nil)
	s.recheck, s.refetch, s.refusing, s.readyHeld = false, false, false, false
	c.Release(s)
	c.SetCancelTarget(nil)
	if !idle {
		if busy {
			t := s.cancel
			timeout := s.pool.conf().ServerConnectTimeout
			s.pool.parent.wg.Go(func() { _ = sendCancel(&t, timeout) })
		}
		s.fail(errors.New("client left in the middle of a transaction or request"))
		return
	}
	if pins&circuits.PinLoad != 0 {
		s.fail(errors.New("the client had LOADed a library, which no reset unloads"))
		return
	}
	var reset string
	switch {
	case pins != 0:
		// What pinned the session (listens, statements, cursors, temporary
		// tables, advisory locks) must not reach the next client, whatever
		// server_reset_query says: DISCARD ALL drops all of it.
		reset = "DISCARD ALL"
	case s.pool.q.Mode == circuits.Session:
		reset = s.pool.conf().ServerResetQuery
	}
	if reset != "" {
		err := s.internalQuery(reset, func([]byte, bool) {
			clear(s.settings)
			s.carriesKnown = false
			s.next()
		})
		if err != nil {
			s.fail(err)
		}
		return
	}
	s.next()
}

// HostedTraffic implements queue.Hosted: it streams what PostgreSQL sent
// to the owning client.
func (s *Server) HostedTraffic(gc gnet.Conn) gnet.Action {
	if s.dead {
		return gnet.Close
	}
	if s.sess == nil {
		buf, _ := gc.Peek(-1)
		if n := s.consume(buf); n > 0 {
			_, _ = gc.Discard(n) // Discard(0) would drop everything
		}
	} else {
		// The session decrypts gnet's bytes first (tls.go); its failure
		// counts after what came before it.
		err := s.sess.Decrypt(gc)
		if n := s.consume(s.sess.Plain()); n > 0 {
			s.sess.Used(n)
		}
		if err != nil && !s.dead {
			s.fail(fmt.Errorf("backend TLS session: %w", err))
		}
	}
	if s.dead {
		return gnet.None // fail closed it
	}
	s.flush()
	if c := s.owner.Load(); c != nil && c.Backlog() > highWater && gc.OutboundBuffered() == 0 && gc.InboundBuffered() == 0 {
		return s.detach(gc, c)
	}
	return gnet.None
}

// consume handles the whole messages in buf and streams large ones
// through; it returns how many bytes it used. Whole messages that handle
// would only pass on as they are (rows, RowDescription, BindComplete...)
// are emitted together, one run of them at a time.
func (s *Server) consume(buf []byte) int {
	start := 0
	run := -1 // where the run of messages not yet emitted starts, if any
	for start < len(buf) && !s.dead {
		if s.pass > 0 {
			k := min(s.pass, len(buf)-start)
			if !s.passDrop {
				s.emit(buf[start : start+k])
			}
			start += k
			s.pass -= k
			continue
		}
		typ, size, ok := wire.Header(buf[start:])
		if ok && size >= 5 && size <= len(buf)-start && !inspected(typ) && s.verbatim() {
			if run < 0 {
				run = start
			}
			start += size
			continue
		}
		if run >= 0 {
			s.emit(buf[run:start])
			run = -1
		}
		if !ok {
			break
		}
		if size < 5 {
			s.fail(fmt.Errorf("backend sent a malformed message (type %q, length %d)", typ, size-1))
			break
		}
		if size > len(buf)-start {
			if inspected(typ) || typ == 'D' && len(s.internal) > 0 {
				break // wait for the whole message: gnet keeps the bytes
			}
			// Stream big rows and COPY data through without ever holding
			// the whole message.
			s.pass = size - (len(buf) - start)
			s.passDrop = len(s.internal) > 0 || s.owner.Load() == nil || s.refusing
			if !s.passDrop {
				s.emit(buf[start:])
			}
			start = len(buf)
			continue
		}
		msg := buf[start : start+size]
		start += size
		s.handle(typ, msg)
	}
	if run >= 0 {
		s.emit(buf[run:start])
	}
	return start
}

// verbatim reports whether handle would pass a message it does not
// inspect on to the owner as it is: there is an owner, the message is not
// an answer to pgmts's own question, and no refused command is being
// answered.
func (s *Server) verbatim() bool {
	return len(s.internal) == 0 && !s.refusing && s.owner.Load() != nil
}

// inspected lists the message types the server must see whole.
func inspected(typ byte) bool {
	switch typ {
	case 'Z', 'S', 'E', 'N', 'A', 'C', 'G', 'H', 'W', 'K', '1', '3':
		return true
	}
	return false
}

// handle processes one whole message from PostgreSQL.
func (s *Server) handle(typ byte, msg []byte) {
	internal := len(s.internal) > 0
	owner := s.owner.Load()
	if (typ == '1' || typ == '3') && s.swallowInjected(typ) {
		return
	}
	if s.refusing && !internal && typ != 'Z' && typ != 'C' {
		if typ == 'G' || typ == 'W' {
			s.failCopy() // the client will send no COPY data
		}
		return // the client got an error in place of this command
	}
	switch typ {
	case 'C':
		tag := msg[5 : len(msg)-1]
		switch string(tag) {
		case "DISCARD ALL", "DEALLOCATE", "DEALLOCATE ALL":
			s.forgetStatements()
		}
		if owner != nil && !internal && !s.refusing {
			s.sessionTag(owner, tag)
		}
		if s.refusing && !internal {
			return
		}
	case 'Z':
		s.segmentDone()
		if internal {
			done := s.internal[0]
			s.internal = s.internal[1:]
			rows, ok := s.rows, !s.failed
			s.rows, s.failed = s.rows[:0], false
			if done != nil {
				done(rows, ok)
			}
			return
		}
		s.refusing = false
		if owner == nil {
			return
		}
		if circuits.Refuses(owner.Pool.Mode, msg[5]) {
			// Refuse before the client is told the block began; closing
			// the backend rolls it back.
			s.flush()
			owner.Fail(wire.Fatal("25001", "transaction blocks not allowed in statement pooling mode"))
			s.fail(errors.New("client opened a transaction block in statement mode"))
			return
		}
		// In statement mode, the client hears whether its command left
		// session state before it is told the command is over.
		s.readyHeld = s.recheck && owner.Pool.Mode == circuits.Statement && msg[5] == circuits.TxIdle
		if !s.readyHeld {
			s.emit(msg)
		}
		s.flush()
		s.stats.ready(msg[5], s.loop.Now())
		ask := s.recheck || s.refetch
		if ask && msg[5] == circuits.TxIdle {
			owner.Circuit(func(ci *circuits.Circuit) { ci.Pin(circuits.PinChecking) })
		}
		if owner.Ready(s, msg[5]) {
			s.release(owner)
			return
		}
		// The questions go out once nothing of the client's is in flight:
		// until their replies, everything the backend sends is theirs.
		if ask && owner.Idle() {
			if err := s.askBackend(owner); err != nil {
				s.fail(err)
			}
			return
		}
		if s.readyHeld { // asked at a later ReadyForQuery, held then
			s.releaseReady()
		}
		return
	case 'A':
		if s.refused {
			return // the client was told its LISTEN failed
		}
	case 'S':
		name, value, ok := wire.ParameterStatus(msg[5:])
		if !ok || owner == nil {
			return
		}
		var send bool
		owner.Circuit(func(ci *circuits.Circuit) { send = ci.Reported(name, value, !internal) })
		if !internal {
			// The client changed a reported setting: it is now part of
			// what this backend carries for it.
			s.settings[strings.ToLower(name)] = value
			s.carriesKnown = false
		}
		if send {
			s.emit(msg)
		}
		return
	case 'E':
		if internal {
			s.failed = true
			e := wire.ErrorFields(msg[5:])
			s.log.Warn("a query pgmts sent on its own failed (session settings, reset, or session-state check: after a failed check the client stays pinned)", "err", e.Error())
			return
		}
		if owner == nil {
			s.log.Info("backend error while idle", "err", wire.ErrorFields(msg[5:]).Error())
			return
		}
		s.stats.errored()
		if e := wire.ErrorFields(msg[5:]); e.Severity == "FATAL" || e.Severity == "PANIC" {
			// The backend is ending the session: pass its own words on and
			// close the client, whose session ends with it.
			s.emit(msg)
			s.flush()
			s.owner.Store(nil)
			owner.SetCancelTarget(nil)
			owner.Release(s)
			owner.Responses.Send(queue.Reply{Client: owner, Close: true}, s.home)
			return
		}
	}
	if internal {
		if typ == 'D' {
			s.rows = append(s.rows, msg...) // the answer to a question of ours
		}
		return
	}
	if owner != nil {
		s.emit(msg)
	}
}

// release lets the server go after its owner is done with it.
func (s *Server) release(owner *queue.Client) {
	s.recheck, s.refetch = false, false
	s.resync()
	owner.SetCancelTarget(nil)
	s.owner.Store(nil)
	s.next()
}

// emit appends reply bytes for the owner, sending full chunks.
func (s *Server) emit(b []byte) {
	for len(b) > 0 {
		if s.out == nil {
			s.out = s.home.Chunk()
		}
		buf := *s.out
		k := min(len(b), cap(buf)-len(buf))
		if k == 0 {
			s.flush()
			continue
		}
		*s.out = append(buf, b[:k]...)
		b = b[k:]
	}
}

// flush hands the filled chunk to the owner's dispatcher: written at once
// when the client is on this loop, else through its response queue.
func (s *Server) flush() {
	if s.out == nil || len(*s.out) == 0 {
		return
	}
	c := s.owner.Load()
	if c == nil {
		queue.PutBuffer(*s.out)
		s.out = nil
		return
	}
	s.stats.replied(len(*s.out))
	c.Responses.SendChunk(c, s.out, s.home)
	s.out = nil
}

// detach takes the backend socket off the loop while its client is too
// far behind: PostgreSQL's output then waits in the kernel, and PostgreSQL
// itself (backpressure), not in pgmts's memory. gnet cannot stop reading
// a connection it hosts, so the server keeps a duplicate of the socket,
// lets gnet close its own, and hosts it again once the client caught up.
func (s *Server) detach(gc gnet.Conn, c *queue.Client) gnet.Action {
	fd, err := gc.Dup()
	if err != nil {
		return gnet.None // keep reading: more memory, but a working session
	}
	f := os.NewFile(uintptr(fd), "backend")
	conn, err := net.FileConn(f)
	_ = f.Close()
	if err != nil {
		return gnet.None
	}
	gc.SetContext(nil) // its OnClose is not the backend's end
	s.gc, s.detached = nil, true
	s.pool.parent.wg.Go(func() { s.waitForClient(c, conn) })
	return gnet.Close
}

// waitForClient waits (off the loop) until c's backlog is low or c is
// gone, then hosts the backend again. gnet has no "drained" event: the
// dispatcher is asked for a fresh reading, at most once a millisecond.
func (s *Server) waitForClient(c *queue.Client, conn net.Conn) {
	drained := c.Drained() // before the first reading is asked for
	for c.Backlog() > highWater/4 && !c.Closed() {
		c.Responses.Push(queue.Reply{Client: c, Poll: true})
		<-drained
		if c.Backlog() > highWater/4 {
			time.Sleep(time.Millisecond)
		}
	}
	if err := s.loop.Host(conn, s); err != nil {
		_ = conn.Close()
		s.onLoop(func() { s.fail(err) })
	}
}
