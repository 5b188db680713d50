package dispatcher

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/pgmts/pgmts/queue"
	"github.com/pgmts/pgmts/wire"
)

// Dispatcher is one gnet event loop with its own listener(s) and response
// queue.
type Dispatcher struct {
	gnet.BuiltinEventEngine
	id        int
	g         *Group
	log       *slog.Logger
	responses *queue.ResponseQueue

	engine gnet.Engine
	// booted is closed once the engine's loop runs (first OnTick).
	booted   chan struct{}
	bootOnce sync.Once
	done     chan error
	// stopped is closed when the engine has stopped.
	stopped chan struct{}
	// loop is set at the first connection; producers only exist after one.
	loop  atomic.Pointer[gnet.EventLoop]
	drain gnet.RunnableFunc
	// logins holds the connections still in startup or authentication,
	// with their client_login_timeout deadline (loop-owned).
	logins       map[*clientConn]time.Time
	expireLogins gnet.RunnableFunc
	// loginTimer asks the loop to drop the logins past their deadline. It
	// runs only while logins are pending (loginTimerArmed, loop-owned), so
	// an idle dispatcher has no timer waking it.
	loginTimer      *time.Timer
	loginTimerArmed bool
	// held are the connections SUSPEND stopped reading, or whose login
	// it holds (loop-owned).
	held map[*clientConn]struct{}
	// types is frame's scratch list of message type bytes: Submit reads it
	// before it returns, so one per loop does for all its clients.
	types []byte
	// batchStart is when the loop's current batch of events began
	// (queue.Nanotime; 0 outside one): see OnBatch.
	batchStart int64

	tcp      bool            // listens on TCP (not the unix socket)
	retiring atomic.Bool     // SetDispatchers retired it
	stats    dispatcherStats // for the admin console (stats.go)
}

func (g *Group) newDispatcher(id int) *Dispatcher {
	d := &Dispatcher{id: id, g: g, log: g.log.With("dispatcher", id), booted: make(chan struct{}), done: make(chan error, 1), stopped: make(chan struct{})}
	d.responses = queue.NewResponseQueue(d.wake)
	d.responses.Attach(d, d.deliver)
	d.drain = func(context.Context) error { d.drainResponses(); return nil }
	d.logins = map[*clientConn]time.Time{}
	d.held = map[*clientConn]struct{}{}
	d.expireLogins = func(context.Context) error {
		d.loginTimerArmed = false
		d.dropSlowLogins()
		if len(d.logins) > 0 {
			d.armLoginTimer()
		}
		return nil
	}
	d.loginTimer = time.AfterFunc(time.Hour, d.checkLogins)
	d.loginTimer.Stop()
	return d
}

func (d *Dispatcher) start(addrs []string, reusePort bool) error {
	d.tcp = reusePort
	d.stats.addrs, d.stats.started = addrs, time.Now()
	d.g.wg.Add(1)
	go func() {
		defer d.g.wg.Done()
		defer close(d.stopped)
		defer d.loginTimer.Stop() // after the loop: nothing arms it again
		d.done <- gnet.Rotate(d, addrs,
			gnet.WithNumEventLoop(1),
			gnet.WithMulticore(false),
			gnet.WithReuseAddr(true),
			gnet.WithReusePort(reusePort),
			gnet.WithTCPNoDelay(gnet.TCPNoDelay),
			gnet.WithLogger(gnetLogger{d.log}),
			gnet.WithTicker(true), // the first tick tells start the loop runs
			gnet.WithIOBatching(d.g.cfg().Pgmts.IOUring),
			// Register (handing a client over) reads the balancer from
			// other goroutines; round robin's counter would race.
			gnet.WithLoadBalancing(gnet.LeastConnections),
		)
	}()
	select {
	case <-d.booted:
		d.log.Info("dispatcher listening", "addresses", addrs)
		return nil
	case err := <-d.done:
		d.done <- err
		if err == nil {
			err = errBoot
		}
		return fmt.Errorf("dispatcher %d cannot listen on %v: %w", d.id, addrs, err)
	}
}

func (d *Dispatcher) stop() {
	select {
	case <-d.booted:
	default:
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.engine.Stop(ctx); err != nil {
		d.log.Warn("dispatcher stop", "err", err)
	}
}

// OnBoot implements gnet.EventHandler.
func (d *Dispatcher) OnBoot(eng gnet.Engine) gnet.Action {
	d.engine = eng
	return gnet.None
}

// OnOpen implements gnet.EventHandler.
func (d *Dispatcher) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	if d.loop.Load() == nil {
		l := c.EventLoop()
		d.loop.Store(&l)
	}
	if h, ok := c.Context().(queue.Hosted); ok {
		h.HostedOpen(c)
		return nil, gnet.None
	}
	if d.g.shuttingDown.Load() || d.g.refusing.Load() {
		return wire.Fatal("57P03", "pgmts is shutting down").Encode(nil), gnet.Close
	}
	if d.retiring.Load() {
		if to := d.g.handOff(); to != nil && d.handOver(c, to) == nil {
			return nil, gnet.Close
		}
	}
	if n := d.g.clients.Add(1); n > int64(d.g.cfg().Pgmts.MaxClientConn) {
		d.g.clients.Add(-1)
		d.log.Warn("client refused: max_client_conn reached", "max_client_conn", d.g.cfg().Pgmts.MaxClientConn, "addr", c.RemoteAddr())
		return wire.Fatal("53300", "no more connections allowed (max_client_conn = %d)", d.g.cfg().Pgmts.MaxClientConn).Encode(nil), gnet.Close
	}
	cc := &clientConn{d: d, c: c, need: 4}
	d.stats.accept()
	c.SetContext(cc)
	if t := d.g.cfg().Pgmts.ClientLoginTimeout; t > 0 {
		d.logins[cc] = time.Now().Add(t)
		d.armLoginTimer()
	}
	return nil, gnet.None
}

// armLoginTimer makes sure the pending logins' deadlines are checked: every
// second, or four times per client_login_timeout when that is shorter (on
// the loop).
func (d *Dispatcher) armLoginTimer() {
	if d.loginTimerArmed {
		return
	}
	d.loginTimerArmed = true
	every := time.Second
	if t := d.g.cfg().Pgmts.ClientLoginTimeout; t > 0 {
		every = min(every, t/4)
	}
	d.loginTimer.Reset(every)
}

// checkLogins is loginTimer's function: it does not run on the loop, so it
// only asks the loop to drop the logins that took too long. OnOpen set
// d.loop before it armed the timer.
func (d *Dispatcher) checkLogins() {
	_ = (*d.loop.Load()).Execute(context.Background(), d.expireLogins)
}

// handOver moves a just-accepted connection to dispatcher to: gnet there
// takes a duplicate of the socket, and this one lets go of its own.
func (d *Dispatcher) handOver(c gnet.Conn, to *Dispatcher) error {
	raw, err := detach(c)
	if err != nil {
		return err
	}
	_, err = to.engine.Register(gnet.NewNetConnContext(context.Background(), raw))
	if err != nil {
		_ = raw.Close()
		d.log.Warn("cannot hand a client to another dispatcher; serving it here", "to", to.id, "err", err)
	}
	return err
}

// OnTick implements gnet.EventHandler. gnet calls OnBoot before its loops
// exist; the first tick comes once they run, and only then may Register
// (Host, handOver) be called. Login deadlines have their own timer
// (armLoginTimer), so later ticks have nothing to do: they are rare.
func (d *Dispatcher) OnTick() (time.Duration, gnet.Action) {
	d.bootOnce.Do(func() { close(d.booted) })
	return time.Hour, gnet.None
}

// dropSlowLogins closes the clients past client_login_timeout (on the loop).
func (d *Dispatcher) dropSlowLogins() {
	now := time.Now()
	for cc, deadline := range d.logins {
		if now.Before(deadline) {
			continue
		}
		delete(d.logins, cc)
		if cc.closed {
			continue
		}
		d.log.Warn("client dropped: login not finished within client_login_timeout", "addr", cc.c.RemoteAddr(), "client_login_timeout", d.g.cfg().Pgmts.ClientLoginTimeout)
		cc.closed = true
		_, _ = cc.c.Write(wire.Fatal("08P01", "client_login_timeout (%s) expired before the login finished", d.g.cfg().Pgmts.ClientLoginTimeout).Encode(nil))
		_ = cc.c.Close()
	}
}

// OnClose implements gnet.EventHandler.
func (d *Dispatcher) OnClose(c gnet.Conn, err error) gnet.Action {
	switch x := c.Context().(type) {
	case *clientConn:
		d.closed(x)
	case queue.Hosted:
		x.HostedClose(c, err)
	}
	return gnet.None
}

// closed forgets a connection that is gone (on the loop).
func (d *Dispatcher) closed(cc *clientConn) {
	d.g.clients.Add(-1)
	d.stats.close()
	cc.closed = true
	cc.gone = true
	delete(d.logins, cc)
	delete(d.held, cc)
	d.g.unregister(cc)
	switch {
	case cc.client != nil:
		cc.client.Close()
		cc.client.Pool.Leave()
	case cc.login != nil && cc.login.pool != nil:
		cc.login.pool.Leave() // routed, but gone before it was ready
	}
}

// OnDrained implements gnet.DrainHandler.
func (d *Dispatcher) OnDrained(c gnet.Conn) {
	if h, ok := c.Context().(queue.Hosted); ok {
		h.HostedDrained(c)
	}
}

// OnTraffic implements gnet.EventHandler.
func (d *Dispatcher) OnTraffic(c gnet.Conn) gnet.Action {
	if d.batchStart == 0 { // in a batch, OnBatchEnd counts the busy time
		defer d.stats.busySince(queue.Nanotime())
	}
	switch x := c.Context().(type) {
	case *clientConn:
		return x.onTraffic()
	case queue.Hosted:
		return x.HostedTraffic(c)
	}
	return gnet.Close // handed over to a TLS session
}

// run runs fn on the loop, from any goroutine.
func (d *Dispatcher) run(fn func()) { _ = d.Run(fn) }

// Run implements queue.Loop.
func (d *Dispatcher) Run(fn func()) error {
	l := d.loop.Load()
	if l == nil {
		return queue.ErrLoopStopped // not booted: nothing can be hosted here yet
	}
	return (*l).Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		fn()
		return nil
	}))
}

// Host implements queue.Loop: the backend socket becomes one more
// connection of this loop, with h as its handler.
func (d *Dispatcher) Host(conn net.Conn, h queue.Hosted) error {
	if d.g.shuttingDown.Load() {
		return queue.ErrLoopStopped
	}
	ctx := gnet.NewNetConnContext(gnet.NewContext(context.Background(), h), conn)
	res, err := d.engine.Register(ctx)
	if err != nil {
		return err
	}
	// A loop that stops meanwhile never opens the connection.
	select {
	case r := <-res:
		return r.Err
	case <-d.stopped:
		return queue.ErrLoopStopped
	}
}

// Responses implements queue.Loop.
func (d *Dispatcher) Responses() *queue.ResponseQueue { return d.responses }

// ID implements queue.Loop.
func (d *Dispatcher) ID() int { return d.id }

// Now implements queue.Loop: within a batch, the time it began, so the
// shared servers' query timings cost no clock reading of their own (a
// reading takes about 80 ns on the VMs pgmts is benchmarked on).
func (d *Dispatcher) Now() int64 {
	if d.batchStart != 0 {
		return d.batchStart
	}
	return queue.Nanotime()
}

// OnBatch implements gnet.BatchHandler: when one wake-up of the loop
// brought several events, the replies they finish wait in the response
// queue and OnBatchEnd writes them together (a single event's reply is
// still written at once, for one client's latency). Under pgbench -S -c 50
// -j 2, pgbench's threads then woke 0.19 times per transaction instead of
// 0.31, and pgmts spent about 1.5 µs less system time per transaction.
// The loop's busy time is counted per batch too, from now (a clock
// reading gnet also uses for its own timing, Clock) to a second reading
// in one wake-up of eight (busyBatch).
func (d *Dispatcher) OnBatch(events int, now int64) {
	d.batchStart = now
	if events > 1 {
		d.responses.Hold()
	}
}

// Clock implements gnet.BatchHandler: the loop's clock is queue.Nanotime.
func (d *Dispatcher) Clock() int64 { return queue.Nanotime() }

// OnBatchEnd implements gnet.BatchHandler.
func (d *Dispatcher) OnBatchEnd() {
	if d.responses.Release() {
		d.writeResponses()
	}
	d.stats.busyBatch(d.batchStart)
	d.batchStart = 0
}

// wake is called by producers when the response queue needs draining.
func (d *Dispatcher) wake() {
	if l := d.loop.Load(); l != nil {
		_ = (*l).Execute(context.Background(), d.drain)
	}
}

// drainResponses writes every queued reply; it runs on the loop.
func (d *Dispatcher) drainResponses() {
	defer d.stats.busySince(queue.Nanotime())
	d.writeResponses()
}

// writeResponses is drainResponses without counting busy time.
func (d *Dispatcher) writeResponses() {
	items := d.responses.Drain()
	for i := range items {
		d.deliver(&items[i])
		items[i].Done()
	}
}

// deliver writes one reply to its client (on the loop).
func (d *Dispatcher) deliver(r *queue.Reply) {
	cc := r.Client.Conn.(*clientConn)
	if cc.closed {
		return
	}
	if r.Resume {
		cc.resumeInput()
		return
	}
	if len(r.Data) > 0 {
		_, _ = cc.c.Write(r.Data)
		d.stats.wrote(len(r.Data))
	}
	if r.Close {
		cc.closed = true
		_ = cc.c.Close()
		return
	}
	r.Client.SetOutbound(cc.c.OutboundBuffered())
}

// conn is a client's byte stream as its loop sees it: a gnet.Conn, or a
// TLS session whose socket is served by goroutines (tls.go). Every method
// is called on the loop only.
type conn interface {
	InboundBuffered() int
	Peek(n int) ([]byte, error)
	Discard(n int) (int, error)
	Write(b []byte) (int, error)
	OutboundBuffered() int
	// PauseRead and ResumeRead stop and restart reading the socket
	// (backpressure, see clientConn.submit).
	PauseRead() error
	ResumeRead() error
	Close() error
	RemoteAddr() net.Addr
}

// clientConn is a connection's state on its dispatcher's loop.
type clientConn struct {
	d     *Dispatcher
	c     conn
	phase phase
	// closed: closing was asked for; gone: the connection is closed.
	// inputPaused: the socket is not read until a server takes the
	// client's inbox (Client.Submit's hold).
	closed, gone, inputPaused bool
	// need is how many buffered bytes the next step waits for, so a big
	// message is not re-peeked on every read (at most max_packet_size).
	need int32

	login  *login
	pid    uint32
	key    [4]byte
	client *queue.Client
}

type phase uint8

const (
	phaseStartup phase = iota
	phaseAuth
	phasePreparing
	phaseReady
)

func (cc *clientConn) onTraffic() gnet.Action {
	for !cc.closed {
		c := cc.c
		if cc.phase == phasePreparing || cc.inputPaused || c.InboundBuffered() < int(cc.need) {
			return gnet.None
		}
		if cc.phase == phaseReady && cc.d.g.holds(cc.client.Pool) {
			// SUSPEND: the bytes wait in gnet's buffer until RESUME.
			cc.d.held[cc] = struct{}{}
			return gnet.None
		}
		buf, _ := c.Peek(-1)
		var n int
		var action gnet.Action
		startup := cc.phase == phaseStartup
		switch cc.phase {
		case phaseStartup:
			n, action = cc.startup(buf)
		case phaseAuth:
			n, action = cc.authMessage(buf)
		case phaseReady:
			n, action = cc.frame(buf)
		}
		if n > 0 {
			_, _ = c.Discard(n) // Discard(0) would drop everything
		}
		// Only a startup packet hands the connection over to TLS; testing
		// for that first spares an interface comparison per request.
		if startup && c != cc.c {
			return gnet.Close // handed to TLS: gnet lets go of its descriptor
		}
		if action != gnet.None {
			cc.closed = true
			return action
		}
		if n == 0 {
			return gnet.None
		}
	}
	return gnet.None
}

// releaseHeld goes on with the connections SUSPEND held (on the loop):
// held logins ask their pool to prepare, then buffered input is read.
func (d *Dispatcher) releaseHeld() {
	for cc := range d.held {
		delete(d.held, cc)
		if cc.closed {
			continue
		}
		if cc.client == nil && cc.prepare() != gnet.None {
			cc.closed = true
			_ = cc.c.Close()
			continue
		}
		cc.resume()
	}
}

// resume processes buffered input outside gnet's OnTraffic (after an
// answer from another goroutine, or bytes a TLS session decrypted).
func (cc *clientConn) resume() {
	if cc.onTraffic() != gnet.None {
		_ = cc.c.Close()
	}
}

// fatal sends a FATAL error, after the login's queued messages, and
// closes the connection.
func (cc *clientConn) fatal(e *wire.Error) gnet.Action {
	var out []byte
	if cc.login != nil {
		out, cc.login.out = cc.login.out, nil
	}
	_, _ = cc.c.Write(e.Encode(out))
	return gnet.Close
}

// frame splits the client's bytes into messages and hands the complete
// ones to the client's server in one batch.
func (cc *clientConn) frame(buf []byte) (int, gnet.Action) {
	pos := 0
	cc.d.types = cc.d.types[:0]
	for {
		typ, size, ok := wire.Header(buf[pos:])
		if !ok {
			cc.need = 5
			break
		}
		if err := wire.CheckSize(size, cc.d.g.cfg().Pgmts.MaxPacketSize); err != nil {
			cc.submit(buf[:pos])
			cc.d.log.Warn("client sent an invalid message length; closing it", "client", cc.client.ID, "type", string(typ), "length", size-1, "addr", cc.c.RemoteAddr())
			return pos, cc.fatal(wire.Fatal("08P01", "invalid message length %d (type %q): max_packet_size is %d", size-1, typ, cc.d.g.cfg().Pgmts.MaxPacketSize))
		}
		if size > len(buf)-pos {
			cc.need = int32(size)
			break
		}
		if typ == 'X' {
			cc.submit(buf[:pos])
			return pos + size, gnet.Close
		}
		cc.d.types = append(cc.d.types, typ)
		pos += size
	}
	if pos > 0 {
		if cc.d.g.shuttingDown.Load() && cc.client.Idle() {
			return pos, cc.fatal(wire.Fatal("57P01", "terminating connection because pgmts is shutting down"))
		}
		cc.submit(buf[:pos])
	}
	if pos == len(buf) {
		cc.need = 5
	}
	return pos, gnet.None
}

// submit hands framed messages to the client's server. When they pile up
// in its inbox (no server takes them: the client waits for one, or its
// backend reads slower than the client sends), the socket is no longer
// read: the client's bytes wait in the kernel, and TCP holds the client
// back, until a server takes the inbox and a Resume reply comes.
func (cc *clientConn) submit(b []byte) {
	if len(b) > 0 {
		cc.d.stats.framed(len(cc.d.types), len(b))
		if _, hold := cc.client.Submit(b, cc.d.types); hold && !cc.inputPaused {
			cc.inputPaused = true
			if err := cc.c.PauseRead(); err != nil {
				cc.d.log.Warn("cannot stop reading a client that sends faster than its server takes", "client", cc.client.ID, "err", err)
			}
		}
	}
}

// resumeInput reads the client again, starting with the bytes read before
// the pause.
func (cc *clientConn) resumeInput() {
	if !cc.inputPaused {
		return
	}
	cc.inputPaused = false
	if err := cc.c.ResumeRead(); err != nil {
		cc.d.log.Warn("cannot read a client again", "client", cc.client.ID, "err", err)
	}
	cc.resume()
}
