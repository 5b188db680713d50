package queue

import "sync"

// Reply is one item for a dispatcher to act on for a client: bytes to
// write, and/or closing the connection after them.
type Reply struct {
	Client *Client
	Data   []byte
	// Close closes the client connection after Data is written.
	Close bool
	// Poll asks only for a fresh backlog reading (backpressure).
	Poll bool
	// Resume asks the dispatcher to read the client again: a server took
	// the inbox whose size had made it stop (Client.Submit's hold).
	Resume bool
	// pooled returns Data to the buffer pool once written.
	pooled bool
}

// ResponseQueue is one dispatcher's queue of replies: many producers (the
// shared servers), one consumer (the dispatcher's event loop). Producers
// wake the loop only when the queue goes from empty to non-empty, so a busy
// loop drains many replies per wake-up.
type ResponseQueue struct {
	// loop is the dispatcher's loop and deliver its way of writing one
	// reply at once, for a server running on that same loop.
	loop    Loop
	deliver func(*Reply)
	// now holds the reply Send writes at once, so that it is not
	// allocated per reply (a *Reply passed to a func value escapes);
	// delivering marks it in use. holding is set between Hold and
	// Release, held when a Send queued a reply meanwhile. All belong to
	// the loop.
	now           Reply
	delivering    bool
	holding, held bool
	// chunk is the last reply chunk written at once, kept for the next
	// reply of a server on the loop (Chunk, SendChunk).
	chunk *[]byte

	mu      sync.Mutex
	items   []Reply
	spare   []Reply
	pending bool
	wake    func()
	pushed  int64 // replies ever pushed (SHOW QUEUE)
}

// NewResponseQueue makes a queue that calls wake (from the producer's
// goroutine) when the consumer must drain it.
func NewResponseQueue(wake func()) *ResponseQueue {
	return &ResponseQueue{wake: wake}
}

// Attach names the loop that consumes the queue and how it writes one
// reply (on the loop); the dispatcher calls it before any client comes.
func (q *ResponseQueue) Attach(loop Loop, deliver func(*Reply)) {
	q.loop, q.deliver = loop, deliver
}

// Send is Push for a producer running on the loop whose response queue is
// from (nil: on none): on the queue's own loop, with nothing of the
// client's still queued (order), the reply is written at once instead;
// while the loop holds replies (Hold) it is queued without waking the
// loop, which drains the queue at Release.
func (q *ResponseQueue) Send(r Reply, from *ResponseQueue) { q.send(r, from) }

// send is Send; it reports whether the reply was written at once, in which
// case nothing refers to r.Data any more, pooled or not.
func (q *ResponseQueue) send(r Reply, from *ResponseQueue) bool {
	switch {
	case from != q:
		q.Push(r)
	case q.holding:
		q.held = true
		q.add(r) // the loop drains the queue at Release: no wake-up
	case r.Client.pending.Load() != 0 || q.delivering:
		// Behind the client's queued replies (order), or sent from inside
		// deliver (a client closed while being written to).
		q.Push(r)
	default:
		q.delivering, q.now = true, r
		q.deliver(&q.now)
		q.now.pooled = false // the caller has the chunk back (SendChunk)
		q.now.settle()
		q.delivering = false
		return true
	}
	return false
}

// Chunk returns an empty reply chunk for a server on the queue's loop
// (called there): the loop's spare one, else one from the pool. At one
// client the same chunk goes round, with no sync.Pool round trip (four
// per transaction, some 300 instructions).
func (q *ResponseQueue) Chunk() *[]byte {
	if p := q.chunk; p != nil {
		q.chunk = nil
		return p
	}
	return GetBuffer()
}

// SendChunk is Send for a chunk from Chunk or GetBuffer, which it takes
// over: a chunk written at once becomes the loop's spare, any other goes
// back to the pool once written.
func (q *ResponseQueue) SendChunk(c *Client, data *[]byte, from *ResponseQueue) {
	if !q.send(Reply{Client: c, Data: *data, pooled: true}, from) {
		bufHolders.Put(data)
		return
	}
	// Written at once, so on q's loop.
	if q.chunk == nil {
		*data = (*data)[:0]
		q.chunk = data
		return
	}
	buffers.Put(data)
}

// Hold makes Send, on the queue's loop, queue its replies until Release:
// the loop calls it when one wake-up brought it several events, so that
// the replies they finish are written together at the end. A client
// process reading many connections (pgbench's threads, an application's
// pool) is then woken once for them, not once per reply.
func (q *ResponseQueue) Hold() { q.holding = true }

// Release ends Hold; it reports whether replies were queued meanwhile, for
// the loop to drain now.
func (q *ResponseQueue) Release() bool {
	held := q.held
	q.holding, q.held = false, false
	return held
}

// Push adds a reply. Data must not be touched by the caller afterwards.
func (q *ResponseQueue) Push(r Reply) {
	if q.add(r) {
		q.wake()
	}
}

// add queues r and reports whether the consumer must be woken.
func (q *ResponseQueue) add(r Reply) (wake bool) {
	if r.Client != nil {
		r.Client.queued.Add(int64(len(r.Data)))
		r.Client.pending.Add(1)
	}
	q.mu.Lock()
	q.items = append(q.items, r)
	q.pushed++
	wake = !q.pending
	q.pending = true
	q.mu.Unlock()
	return wake
}

// Drain takes every queued reply; the consumer calls Done on each after
// writing it. The returned slice is valid until the next Drain.
func (q *ResponseQueue) Drain() []Reply {
	q.mu.Lock()
	items := q.items
	q.items = q.spare[:0]
	q.spare = items
	q.pending = false
	q.mu.Unlock()
	return items
}

// Done settles a reply after the dispatcher wrote (or dropped) it.
func (r *Reply) Done() {
	if r.Client != nil {
		r.Client.queued.Add(-int64(len(r.Data)))
		r.Client.pending.Add(-1)
	}
	r.settle()
}

// settle counts a written reply and frees its buffer.
func (r *Reply) settle() {
	if r.Client != nil {
		r.Client.stats.wrote(len(r.Data))
	}
	if r.pooled {
		PutBuffer(r.Data)
	}
	*r = Reply{}
}

// Reply chunks come from a pool so that a busy server allocates nothing per
// reply in the steady state.
const chunkSize = 64 << 10

var (
	buffers    = sync.Pool{New: func() any { b := make([]byte, 0, chunkSize); return &b }}
	bufHolders = sync.Pool{New: func() any { return new([]byte) }}
)

// GetBuffer returns an empty buffer for a reply chunk.
func GetBuffer() *[]byte {
	p := buffers.Get().(*[]byte)
	*p = (*p)[:0]
	return p
}

// PutBuffer returns a chunk's memory to the pool.
func PutBuffer(b []byte) {
	if cap(b) > 4*chunkSize {
		return // an unusually large chunk: let the GC have it
	}
	h := bufHolders.Get().(*[]byte)
	*h = b[:0]
	buffers.Put(h)
}
