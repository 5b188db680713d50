// Package queue is where dispatchers and shared servers meet: the per-pool
// request queue (FIFO, common to every dispatcher), the per-dispatcher
// response queue, and the Client handle both sides share. The dispatcher and
// the shared servers never import each other.
package queue

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgmts/pgmts/auth"
	"github.com/pgmts/pgmts/circuits"
	"github.com/pgmts/pgmts/wire"
)

// Backend is what a pool's shared-server side offers the dispatchers.
type Backend interface {
	// Prepare makes sure the pool can reach PostgreSQL and reports the
	// server's ParameterStatus set (or why the login was refused), by
	// calling done from any goroutine. The pool's clients share params:
	// nobody writes to it.
	Prepare(done func(params map[string]string, err error))
	// Cancel cancels the query the client's server is running, if any.
	Cancel(c *Client)
	// Passthrough hands over what a client's successful login left to log
	// in to PostgreSQL as its user without a plain password (SCRAM keys,
	// md5 hash). The dispatcher calls it before Prepare.
	Passthrough(p auth.Passthrough)
}

// Pool is one pool (database + user) as the dispatchers see it.
type Pool struct {
	Name           string // database/user
	Database, User string // as clients name them
	Mode           circuits.Mode
	Requests       *RequestQueue
	Backend        Backend

	// connections counts the connections a Router's Route gave the pool
	// that are still open: the router adds one (Join) before it returns
	// the pool, the dispatcher gives it back (Leave) when the connection
	// closes, logged in or not. A pool a reload detached can be forgotten
	// once none are left.
	connections atomic.Int64
}

// Join counts one more connection routed to the pool (the Router calls it).
func (p *Pool) Join() { p.connections.Add(1) }

// Leave gives back the place Join took, once the connection is closed.
func (p *Pool) Leave() { p.connections.Add(-1) }

// Connections is the number of open connections routed to the pool.
func (p *Pool) Connections() int64 { return p.connections.Load() }

// Router finds the pool for a client's database and user, and the
// password of a user the config does not know.
type Router interface {
	// Route returns the pool. A *wire.Error refuses the client with
	// that error (e.g. FATAL 28000); any other error means no such
	// database.
	Route(database, user string) (*Pool, error)
	// LookupUser finds user's password with auth_query, for a client of
	// database, and calls done from any goroutine (or at once, e.g. from a
	// cache): a KindNone secret when there is no such user or no auth_user
	// for database, an error when the lookup itself failed.
	LookupUser(database, user string, done func(auth.Secret, error))
}

type clientState uint8

const (
	stateIdle   clientState = iota // no request pending, no server
	stateQueued                    // waiting in its pool's request queue
	stateServed                    // a shared server owns it
)

// Client is one client connection's meeting point: its circuit, the request
// bytes a server has not taken yet, and where the replies go. Every idle
// client holds one, so what only some need is made when they need it.
type Client struct {
	ID        uint64
	Pool      *Pool
	Responses *ResponseQueue
	// Conn is the dispatcher's own handle for the connection.
	Conn any
	// connected is when the client logged in (Nanotime).
	connected int64

	mu      sync.Mutex
	circuit circuits.Circuit
	inbox   []byte
	server  any // the shared server serving it (stateServed)

	// queued counts reply bytes handed to the dispatcher and not yet
	// written, pending the replies themselves (a reply may carry no
	// bytes); outbound is the connection's unsent buffer as last seen by
	// the dispatcher. Together they are the backpressure signal.
	queued   atomic.Int64
	outbound atomic.Int64
	pending  atomic.Int32
	// state, closed and inputHeld are guarded by mu; here they fill
	// pending's padding. inputHeld: Submit told the dispatcher to stop
	// reading the client (InboxHighWater); Take pushes a Resume reply.
	state     clientState
	closed    bool
	inputHeld bool
	// rare holds what few clients need, made at first use (clientRare).
	rare atomic.Pointer[clientRare]

	cancelTarget atomic.Pointer[CancelTarget]

	stats clientStats
}

// clientRare is the part of a Client only some clients need, kept apart
// so that every idle client is smaller.
type clientRare struct {
	// wake tells a serving goroutine that the inbox has bytes or the
	// client is gone; Begin makes it, under the client's mu, for a server
	// that is not a hosted Server (those are poked on their loop).
	wake    chan struct{}
	drained atomic.Pointer[chan struct{}] // made by Drained
}

// rareFields returns c.rare, making it if need be.
func (c *Client) rareFields() *clientRare {
	if r := c.rare.Load(); r != nil {
		return r
	}
	r := &clientRare{}
	if c.rare.CompareAndSwap(nil, r) {
		return r
	}
	return c.rare.Load()
}

// wake is the serving goroutine's channel, nil if none; call with mu held.
func (c *Client) wake() chan struct{} {
	if r := c.rare.Load(); r != nil {
		return r.wake
	}
	return nil
}

// CancelTarget is the backend a client's query runs on, for CancelRequest.
type CancelTarget struct {
	Network, Address string
	PID              uint32
	Key              []byte
}

// NewClient makes the handle for a logged-in client; the client takes the
// circuit over.
func NewClient(id uint64, pool *Pool, responses *ResponseQueue, conn any, c *circuits.Circuit) *Client {
	return &Client{ID: id, Pool: pool, Responses: responses, Conn: conn, circuit: *c, connected: Nanotime()}
}

// Connected is when the client logged in.
func (c *Client) Connected() time.Time { return NanotimeToTime(c.connected) }

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// InboxHighWater is how many request bytes may wait in a client's inbox,
// not yet taken by a server (the client waits in its pool's queue, or its
// server's backend is not reading), before the dispatcher stops reading
// the client: one that sends faster than PostgreSQL takes its bytes then
// costs bounded memory, and TCP holds it back.
const InboxHighWater = 1 << 20

// Submit hands complete client messages (raw bytes, and their type bytes)
// to the client's server, queueing the client in its pool when no server
// holds it. ok is false when the client is already closed. hold asks the
// dispatcher to stop reading the client: its inbox reached InboxHighWater.
// A Resume reply comes once a server took the inbox.
func (c *Client) Submit(data []byte, types []byte) (ok, hold bool) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false, false
	}
	for _, t := range types {
		c.circuit.FromClient(t)
	}
	c.inbox = append(c.inbox, data...)
	c.stats.submitted(len(types), len(data))
	if len(c.inbox) >= InboxHighWater {
		c.inputHeld, hold = true, true
	}
	switch c.state {
	case stateIdle:
		c.state = stateQueued
		c.mu.Unlock()
		c.Pool.Requests.enqueue(c, c.Responses)
		return true, hold
	case stateServed:
		srv, wake := c.server, c.wake()
		c.mu.Unlock()
		c.wakeServer(srv, wake)
		return true, hold
	}
	c.mu.Unlock()
	return true, hold
}

// wakeServer tells the server serving the client (a hosted Server, or a
// goroutine waiting on wake, read under the lock) that there is something
// to do.
func (c *Client) wakeServer(srv any, wake chan struct{}) {
	if s, ok := srv.(Server); ok {
		poke(s, c.Responses)
		return
	}
	signal(wake)
}

// Close marks the client gone. A server serving it is woken to clean up;
// a queued entry is skipped when a server dequeues it. Submit and Close
// are called on the client's dispatcher loop.
func (c *Client) Close() {
	c.mu.Lock()
	c.closed = true
	served := c.state == stateServed
	srv, wake := c.server, c.wake()
	c.mu.Unlock()
	if served {
		c.wakeServer(srv, wake)
	}
	c.signalDrained()
}

// Closed reports whether the client is gone.
func (c *Client) Closed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// Begin is called by a goroutine that dequeued the client (the admin
// console's workers, which wait on Wake): it takes ownership, unless the
// client left while waiting (false).
func (c *Client) Begin(server any) bool { return c.begin(server, true) }

// BeginHosted is Begin for a shared server hosted on a loop, which is
// poked, not woken. (Asking Begin's argument whether it is a Server cost
// a type assertion per transaction.)
func (c *Client) BeginHosted(server Server) bool { return c.begin(server, false) }

func (c *Client) begin(server any, woken bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		c.state = stateIdle
		return false
	}
	c.state = stateServed
	c.server = server
	if woken && c.wake() == nil {
		c.rareFields().wake = make(chan struct{}, 1)
	}
	return true
}

// Take swaps the inbox out for spare (emptied) and returns what was in it.
// mine is false when server no longer owns the client; gone when the
// client closed.
func (c *Client) Take(server any, spare []byte) (data []byte, mine, gone bool) {
	c.mu.Lock()
	if c.state != stateServed || c.server != server {
		c.mu.Unlock()
		return spare, false, c.closed
	}
	if c.closed {
		c.mu.Unlock()
		return spare, true, true
	}
	data, c.inbox = c.inbox, spare[:0]
	resume := c.inputHeld
	c.inputHeld = false
	c.mu.Unlock()
	if resume {
		c.Responses.Push(Reply{Client: c, Resume: true})
	}
	return data, true, false
}

// Wake is the channel a serving goroutine waits on for new bytes or a
// close (nil before a Begin by a server that is not a hosted Server).
func (c *Client) Wake() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.wake()
}

// Ready records the server's ReadyForQuery and lets the server go when the
// pool mode allows it and nothing else waits; it reports whether it did.
func (c *Client) Ready(server any, status byte) (released bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.circuit.Ready(status)
	return c.releaseIfDone(server)
}

// Settle is Ready without a ReadyForQuery: the server asks again after
// something that may have unpinned the circuit (Circuit.SetPins).
func (c *Client) Settle(server any) (released bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.releaseIfDone(server)
}

// releaseIfDone lets server go if the client needs it no more (with c.mu
// held).
func (c *Client) releaseIfDone(server any) bool {
	if c.server == server && c.circuit.Releasable() && len(c.inbox) == 0 && !c.closed {
		c.goIdle()
		return true
	}
	return false
}

// Release gives the client up after its server is gone or done with it.
func (c *Client) Release(server any) {
	c.mu.Lock()
	if c.server == server {
		c.goIdle()
	}
	c.mu.Unlock()
}

// idleInbox is the most inbox capacity a client keeps between requests:
// its next small request needs no allocation, and a big request's buffer
// (Take hands clients the servers' spares) is not held while it sits idle.
const idleInbox = 1024

// goIdle lets the server go (with c.mu held).
func (c *Client) goIdle() {
	c.state = stateIdle
	c.server = nil
	if len(c.inbox) == 0 && cap(c.inbox) > idleInbox {
		c.inbox = nil
	}
}

// Idle reports whether the client's session is between transactions with
// nothing in flight.
func (c *Client) Idle() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state != stateQueued && c.circuit.Idle()
}

// Circuit runs fn with the client's circuit under the client's lock.
func (c *Client) Circuit(fn func(*circuits.Circuit)) {
	c.mu.Lock()
	fn(&c.circuit)
	c.mu.Unlock()
}

// SetCancelTarget records (or clears, with nil) the backend serving the client.
func (c *Client) SetCancelTarget(t *CancelTarget) { c.cancelTarget.Store(t) }

// CancelTarget returns the backend serving the client, if any.
func (c *Client) CancelTarget() *CancelTarget { return c.cancelTarget.Load() }

// Backlog is the reply bytes not yet on the client's socket.
func (c *Client) Backlog() int64 { return c.queued.Load() + c.outbound.Load() }

// Drained is signalled when the dispatcher sees the backlog fall, or the
// client closes. Only a client whose reader is too slow needs it, so it is
// made at the first call: call it before asking for a fresh reading.
func (c *Client) Drained() <-chan struct{} {
	r := c.rareFields()
	if ch := r.drained.Load(); ch != nil {
		return *ch
	}
	ch := make(chan struct{}, 1)
	if !r.drained.CompareAndSwap(nil, &ch) {
		return *r.drained.Load()
	}
	if c.Closed() { // a Close before the CompareAndSwap found no channel
		signal(ch)
	}
	return ch
}

func (c *Client) signalDrained() {
	if r := c.rare.Load(); r != nil {
		if ch := r.drained.Load(); ch != nil {
			signal(*ch)
		}
	}
}

// SetOutbound is called by the dispatcher with the connection's unsent bytes.
func (c *Client) SetOutbound(n int) {
	c.outbound.Store(int64(n))
	c.signalDrained()
}

// Fail sends the client a final error and closes its connection.
func (c *Client) Fail(e *wire.Error) {
	c.Responses.Push(Reply{Client: c, Data: e.Encode(nil), Close: true})
}
