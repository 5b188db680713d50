package dispatcher

import (
	"cmp"
	"crypto/tls"
	"net"
	"slices"
	"sync/atomic"
	"time"

	"github.com/pgmts/pgmts/queue"
)

// dispatcherStats are one dispatcher's counters. Every one is written on
// the dispatcher's loop only, so a plain load and store (no locked
// instruction) updates it; snapshots read them from anywhere.
type dispatcherStats struct {
	started                     time.Time
	addrs                       []string
	accepted, closed            atomic.Int64
	messages, received, written atomic.Int64
	busy                        atomic.Int64 // nanoseconds in callbacks
	// The loop's wake-ups are timed one in busySample (busyBatch); these
	// are the sample's state, loop-owned.
	batchPos, batchTimed uint8
	rng                  uint32
}

func (s *dispatcherStats) accept() { queue.AddOwned(&s.accepted, 1) }

// open counts the connections the dispatcher has now (from any goroutine).
func (s *dispatcherStats) open() int64 { return s.accepted.Load() - s.closed.Load() }
func (s *dispatcherStats) close()      { queue.AddOwned(&s.closed, 1) }

// framed counts a batch of client messages submitted as a request.
func (s *dispatcherStats) framed(messages, bytes int) {
	queue.AddOwned(&s.messages, int64(messages))
	queue.AddOwned(&s.received, int64(bytes))
}

func (s *dispatcherStats) wrote(bytes int) { queue.AddOwned(&s.written, int64(bytes)) }

// busySince adds the time from start (a queue.Nanotime reading) to the
// loop's busy time.
func (s *dispatcherStats) busySince(start int64) { queue.AddOwned(&s.busy, queue.Nanotime()-start) }

// busySample: of every busySample wake-ups of the loop, one is timed and
// counts for all of them. Timing one takes a clock reading after its
// writes, the first thing after a system call touching the runtime's clock
// code, the vDSO and their data: on a machine whose TLB is emptied at every
// system call (page-table isolation without PCID, as in many VMs) that is
// about 0.5 µs per transaction at one pgbench client. Which wake-up of
// each run of busySample is drawn at random, so wake-ups that alternate
// (a request, then its reply) are sampled alike; the first wake-up is
// always timed, so a loop that did anything shows busy time.
const busySample = 8

// busyBatch ends a wake-up that began at start (a queue.Nanotime reading):
// it adds busySample times its length to the busy time if it is the one
// drawn from its run.
func (s *dispatcherStats) busyBatch(start int64) {
	if s.timeThisBatch() {
		queue.AddOwned(&s.busy, busySample*(queue.Nanotime()-start))
	}
}

// timeThisBatch reports whether the wake-up ending now is its run's sample.
func (s *dispatcherStats) timeThisBatch() bool {
	timed := s.batchPos == s.batchTimed
	if s.batchPos++; s.batchPos == busySample {
		s.batchPos = 0
		// xorshift32: enough to place one wake-up in eight.
		if s.rng == 0 {
			s.rng = 2463534242
		}
		s.rng ^= s.rng << 13
		s.rng ^= s.rng >> 17
		s.rng ^= s.rng << 5
		s.batchTimed = uint8(s.rng % busySample)
	}
	return timed
}

// DispatcherSnapshot is one dispatcher (Oracle's V$DISPATCHER row).
type DispatcherSnapshot struct {
	ID        int
	Addresses []string
	Accepting bool
	// Accepted counts connections ever taken; Open, those still there.
	Accepted, Open int64
	// Messages and Received are client messages and bytes framed into
	// requests; Sent is reply bytes written to clients.
	Messages, Received, Sent int64
	Busy, Idle               time.Duration
	Responses                queue.ResponseStats
}

// ClientInfo is a logged-in client as its dispatcher knows it.
type ClientInfo struct {
	Client     *queue.Client
	Dispatcher int
	Addr       net.Addr
	TLSVersion string // "" for plaintext
}

// Snapshot is every dispatcher and logged-in client.
type Snapshot struct {
	Dispatchers []DispatcherSnapshot
	Clients     []ClientInfo // by client ID
	// Logins counts connections still in startup or authentication.
	Logins int
	// Suspended: a SUSPEND is in force.
	Suspended bool
}

// Snapshot reads the dispatchers' counters and lists the clients.
func (g *Group) Snapshot() Snapshot {
	out := g.counters()
	// Fields of a registered clientConn read here were set before
	// register, under g.mu, and do not change afterwards.
	g.mu.Lock()
	g.clientsByPID.each(func(cc *clientConn) {
		ci := ClientInfo{Client: cc.client, Dispatcher: cc.d.id, Addr: cc.c.RemoteAddr()}
		if state := cc.tlsState(); state != nil {
			ci.TLSVersion = tls.VersionName(state.Version)
		}
		out.Clients = append(out.Clients, ci)
	})
	g.mu.Unlock()
	slices.SortFunc(out.Clients, func(a, b ClientInfo) int { return cmp.Compare(a.Client.ID, b.Client.ID) })
	out.Logins = max(g.ClientCount()-len(out.Clients), 0)
	return out
}

// Counters is Snapshot without the list of clients (whose addresses and
// sorting cost an allocation or two a client): the dispatchers' counters
// and the logged-in clients themselves, for the metrics endpoint.
func (g *Group) Counters() (Snapshot, []*queue.Client) {
	out := g.counters()
	clients := g.loggedIn()
	out.Logins = max(g.ClientCount()-len(clients), 0)
	return out, clients
}

// counters reads the dispatchers' counters.
func (g *Group) counters() Snapshot {
	out := Snapshot{Suspended: g.Suspended()}
	g.dmu.Lock()
	dispatchers := slices.Clone(g.dispatchers)
	g.dmu.Unlock()
	for _, d := range dispatchers {
		s := &d.stats
		age := time.Since(s.started)
		busy := time.Duration(s.busy.Load())
		accepted := s.accepted.Load()
		out.Dispatchers = append(out.Dispatchers, DispatcherSnapshot{
			ID: d.id, Addresses: s.addrs, Accepting: !g.shuttingDown.Load() && !g.refusing.Load() && !d.retiring.Load(),
			Accepted: accepted, Open: s.open(),
			Messages: s.messages.Load(), Received: s.received.Load(), Sent: s.written.Load(),
			Busy: busy, Idle: max(age-busy, 0), Responses: d.responses.Stats(),
		})
	}
	return out
}
