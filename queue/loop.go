package queue

import (
	"errors"
	"net"

	"github.com/panjf2000/gnet/v2"
)

// Shared servers are hosted on the dispatchers' event loops: a backend
// socket is one more connection of a loop, so a request from a client of
// the same loop is written to PostgreSQL, and its reply to the client,
// without a goroutine hand-off or a wake-up (see docs/ARCHITECTURE.md).
// These are the interfaces the two sides meet through.

// Loop is one dispatcher's event loop as the shared servers see it.
type Loop interface {
	// Run runs fn on the loop, from any goroutine. It fails only when
	// the loop is stopping (and closes its connections itself).
	Run(fn func()) error
	// Host registers an established backend connection on the loop and
	// returns once h.HostedOpen has run there. The loop takes a duplicate
	// of the socket and closes conn.
	Host(conn net.Conn, h Hosted) error
	// Now is the loop's clock (a Nanotime reading), called on the loop:
	// within a wake-up, the time it began, one reading for all its events.
	Now() int64
	// Responses is the loop's own response queue: its servers take
	// their reply chunks from it (ResponseQueue.Chunk), and it names the
	// loop wherever two loops are compared (Server.Home, Send's from): a
	// pointer comparison, where comparing two Loop interfaces calls
	// runtime.ifaceeq, which reads the type's descriptor each time.
	Responses() *ResponseQueue
	// ID is the number of the loop's dispatcher (SHOW SHARED_SERVERS).
	ID() int
}

// ErrLoopStopped is returned by Host when the dispatcher is stopping.
var ErrLoopStopped = errors.New("the dispatcher is stopping")

// Hosted is a backend connection's handler; the loop calls it on itself.
type Hosted interface {
	HostedOpen(c gnet.Conn)
	HostedTraffic(c gnet.Conn) gnet.Action
	// HostedDrained: everything written to c that the socket could not
	// take at once has now been sent.
	HostedDrained(c gnet.Conn)
	HostedClose(c gnet.Conn, err error)
}

// Loops chooses where a new shared server is hosted.
type Loops interface {
	// NextLoop returns the loop for a new server, or nil when the
	// dispatchers are stopping.
	NextLoop() Loop
	// LoopOf returns the loop whose response queue is home, if it takes
	// new servers (nil otherwise: a retired dispatcher, say).
	LoopOf(home *ResponseQueue) Loop
}

// Server is a shared server as the request queue and its clients see it.
type Server interface {
	// Loop is the loop the server runs on, and Home its response queue
	// (Loop().Responses(); nil with no loop).
	Loop() Loop
	Home() *ResponseQueue
	// Serve hands the server a client taken from the queue (on its loop).
	Serve(c *Client)
	// Poke tells the server that the client it serves has new bytes or
	// is gone (on its loop).
	Poke()
}

// serve hands c to s: at once when the caller runs on s's loop (from, that
// loop's response queue), else on that loop. The closure is only made in
// the second case.
func serve(s Server, c *Client, from *ResponseQueue) {
	if h := s.Home(); h == nil || h == from {
		s.Serve(c)
	} else if s.Loop().Run(func() { s.Serve(c) }) != nil {
		c.Pool.Requests.Requeue(c) // the loop is stopping; another server may serve c
	}
}

// poke is serve's counterpart for Poke.
func poke(s Server, from *ResponseQueue) {
	if h := s.Home(); h == nil || h == from {
		s.Poke()
	} else {
		_ = s.Loop().Run(s.Poke) // a stopping loop closes s itself
	}
}

// chanServer is a goroutine that parks on the queue with Take (the admin
// console's workers).
type chanServer chan *Client

func (chanServer) Loop() Loop           { return nil }
func (chanServer) Home() *ResponseQueue { return nil }
func (s chanServer) Serve(c *Client)    { s <- c } // capacity 1, empty while parked
func (chanServer) Poke()                {}
