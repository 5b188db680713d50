package queue

import "time"

// Parked reports how many takers are parked on the queue.
func (q *RequestQueue) Parked() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.waiters)
}

// Backdate sets the enqueue time of the waiting entries, oldest first, to
// now minus the given ages.
func (q *RequestQueue) Backdate(ages ...time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := time.Now()
	for i, a := range ages {
		q.items[q.head+i].enqueued = now.Add(-a)
	}
}

// InboxCap is the capacity of the client's inbox.
func (c *Client) InboxCap() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return cap(c.inbox)
}

// ItemsCap is the capacity of the queue's slice of entries.
func (q *RequestQueue) ItemsCap() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return cap(q.items)
}
