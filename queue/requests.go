package queue

import (
	"sync"
	"time"
)

type entry struct {
	client   *Client
	enqueued time.Time
}

// RequestQueue is a pool's FIFO of clients with a request waiting for a
// shared server. An idle server parks on it; a request handed to a parked
// server skips the list entirely.
type RequestQueue struct {
	mu    sync.Mutex
	items []entry
	head  int
	// waiters are the parked servers, the most recently parked last.
	waiters []Server
	// OnWait is called (outside the lock) when a request had to wait
	// because no server was idle: the pool may start one.
	OnWait func()
	// OnElsewhere is called (outside the lock) when a request from the
	// loop whose response queue is from went to a server parked on
	// another loop, none being parked on from: the pool may open a server
	// there, so that the loop's next requests need no wake-up of another.
	OnElsewhere func(from *ResponseQueue)
	// paused holds every request in the queue (PAUSE).
	paused bool
	// WaitTime, if set, observes every request's wait in seconds (a
	// Prometheus histogram); set it before the queue is used.
	WaitTime interface{ Update(seconds float64) }

	totalQueued int64
	totalWait   time.Duration
}

// Stats is the queue's accounting (Oracle's V$QUEUE).
type Stats struct {
	Waiting     int
	TotalQueued int64
	TotalWait   time.Duration
	OldestWait  time.Duration
}

// enqueue queues c, or hands it to a parked server; from is the response
// queue of the loop the caller runs on (nil: none).
func (q *RequestQueue) enqueue(c *Client, from *ResponseQueue) {
	q.mu.Lock()
	q.totalQueued++
	if !q.paused && q.handOff(c, from) {
		q.observe(0)
		return
	}
	q.push(entry{c, time.Now()})
	q.mu.Unlock()
	if q.OnWait != nil {
		q.OnWait()
	}
}

// handOff gives c straight to a parked server, if one waits: preferably
// one on the caller's loop, which serves it without a wake-up. Called with
// q.mu held; it releases the lock when it hands c over (true).
func (q *RequestQueue) handOff(c *Client, from *ResponseQueue) bool {
	n := len(q.waiters)
	if n == 0 {
		return false
	}
	i, own := n-1, false
	for j := n - 1; j >= 0 && from != nil; j-- {
		if q.waiters[j].Home() == from {
			i, own = j, true
			break
		}
	}
	w := q.waiters[i]
	q.waiters = append(q.waiters[:i], q.waiters[i+1:]...)
	q.mu.Unlock()
	serve(w, c, from)
	if from != nil && !own && q.OnElsewhere != nil {
		q.OnElsewhere(from)
	}
	return true
}

// Next returns the next waiting client, or parks s and returns nil: a
// client that comes later is handed to s.Serve.
func (q *RequestQueue) Next(s Server) *Client {
	q.mu.Lock()
	if !q.paused {
		if c := q.pop(); c != nil {
			q.mu.Unlock()
			return c
		}
	}
	q.waiters = append(q.waiters, s)
	q.mu.Unlock()
	return nil
}

// Unpark takes a parked s off the queue. It reports false when s was not
// parked: a client may be on its way to s.Serve.
func (q *RequestQueue) Unpark(s Server) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	for i, w := range q.waiters {
		if w == s {
			q.waiters = append(q.waiters[:i], q.waiters[i+1:]...)
			return true
		}
	}
	return false
}

// Take returns the next waiting client, parking until one comes or stop
// closes (nil). inbox is the caller's own channel (capacity 1), reused
// across calls.
func (q *RequestQueue) Take(inbox chan *Client, stop <-chan struct{}) *Client {
	q.mu.Lock()
	if !q.paused {
		if c := q.pop(); c != nil {
			q.mu.Unlock()
			return c
		}
	}
	select {
	case <-stop:
		q.mu.Unlock()
		return nil
	default:
	}
	q.waiters = append(q.waiters, chanServer(inbox))
	q.mu.Unlock()
	select {
	case c := <-inbox:
		return c
	case <-stop:
		if q.Unpark(chanServer(inbox)) {
			return nil
		}
		// A client was handed over while we were stopping: pass it to
		// another parked server, or put it back at the front.
		c := <-inbox
		q.Requeue(c)
		return nil
	}
}

// push appends e. When the slice is full and at least half of it is
// what pop already took, the waiting entries move to the front instead of
// the slice growing: a queue that never empties (a pool saturated for
// hours) would otherwise grow by every request ever queued.
func (q *RequestQueue) push(e entry) {
	if len(q.items) == cap(q.items) && q.head >= len(q.items)/2 && q.head > 0 {
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	q.items = append(q.items, e)
}

func (q *RequestQueue) pop() *Client {
	if q.head == len(q.items) {
		return nil
	}
	e := q.items[q.head]
	q.items[q.head] = entry{}
	q.head++
	if q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	}
	wait := time.Since(e.enqueued)
	q.totalWait += wait
	q.observe(wait)
	return e.client
}

func (q *RequestQueue) observe(wait time.Duration) {
	if q.WaitTime != nil {
		q.WaitTime.Update(wait.Seconds())
	}
}

// Requeue puts c back at the head of the queue: a server that was handed
// it cannot serve it after all.
func (q *RequestQueue) Requeue(c *Client) {
	q.mu.Lock()
	if !q.paused && q.handOff(c, nil) {
		return
	}
	e := entry{c, time.Now()}
	if q.head > 0 {
		q.head--
		q.items[q.head] = e
	} else {
		q.items = append([]entry{e}, q.items...)
	}
	q.mu.Unlock()
	if q.OnWait != nil {
		q.OnWait()
	}
}

// Pause holds every request in the queue: no server gets one until Resume.
func (q *RequestQueue) Pause() {
	q.mu.Lock()
	q.paused = true
	q.mu.Unlock()
}

// Resume lets requests through again: the waiting ones go to parked
// servers first, in order, and OnWait asks for servers for the rest.
func (q *RequestQueue) Resume() {
	q.mu.Lock()
	q.paused = false
	for len(q.waiters) > 0 {
		c := q.pop()
		if c == nil {
			break
		}
		q.handOff(c, nil) // a server waits: it takes c and releases the lock
		q.mu.Lock()
	}
	waiting := q.head < len(q.items)
	q.mu.Unlock()
	if waiting && q.OnWait != nil {
		q.OnWait()
	}
}

// Paused reports whether the queue holds its requests.
func (q *RequestQueue) Paused() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.paused
}

// Expire removes and returns the clients that have waited longer than max.
func (q *RequestQueue) Expire(max time.Duration) []*Client {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []*Client
	cut := time.Now().Add(-max)
	for q.head < len(q.items) && q.items[q.head].enqueued.Before(cut) {
		out = append(out, q.items[q.head].client)
		wait := time.Since(q.items[q.head].enqueued)
		q.totalWait += wait
		q.observe(wait)
		q.items[q.head] = entry{}
		q.head++
	}
	return out
}

// Drain removes and returns every waiting client.
func (q *RequestQueue) Drain() []*Client {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []*Client
	for c := q.pop(); c != nil; c = q.pop() {
		out = append(out, c)
	}
	return out
}

// Stats reports the queue's accounting.
func (q *RequestQueue) Stats() Stats {
	q.mu.Lock()
	defer q.mu.Unlock()
	s := Stats{Waiting: len(q.items) - q.head, TotalQueued: q.totalQueued, TotalWait: q.totalWait}
	if s.Waiting > 0 {
		s.OldestWait = time.Since(q.items[q.head].enqueued)
	}
	return s
}
