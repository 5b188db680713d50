package queue_test

import (
	"encoding/binary"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgmts/pgmts/circuits"
	"github.com/pgmts/pgmts/queue"
)

// Concurrent pushes into an undrained queue wake the consumer once; after a
// Drain the next push wakes it again.
func TestResponseQueueWakeOncePerBatch(t *testing.T) {
	var wakes atomic.Int32
	q := queue.NewResponseQueue(func() { wakes.Add(1) })
	for round := 1; round <= 3; round++ {
		var wg sync.WaitGroup
		for i := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := range 50 {
					q.Push(queue.Reply{Data: []byte{byte(i), byte(j)}})
				}
			}()
		}
		wg.Wait()
		if got := wakes.Load(); got != int32(round) {
			t.Fatalf("round %d: %d wakes, want %d", round, got, round)
		}
		if items := q.Drain(); len(items) != 16*50 {
			t.Fatalf("round %d: drained %d", round, len(items))
		}
	}
	// Draining an empty queue arms it again too.
	if items := q.Drain(); len(items) != 0 {
		t.Fatalf("empty drain returned %d", len(items))
	}
	q.Push(queue.Reply{})
	if wakes.Load() != 4 {
		t.Fatalf("wakes = %d, want 4", wakes.Load())
	}
}

// Many producers and a consumer that drains only when woken: nothing is
// lost, each producer's replies come out in push order, and wake-ups never
// outnumber drains (+1 for the wake in flight at the end).
func TestResponseQueueConcurrent(t *testing.T) {
	const producers, perProducer = 16, 2000
	wakeCh := make(chan struct{}, producers*perProducer)
	var wakes atomic.Int64
	q := queue.NewResponseQueue(func() {
		wakes.Add(1)
		wakeCh <- struct{}{}
	})
	p := newPool(circuits.Transaction)
	clients := make([]*queue.Client, producers)
	for i := range clients {
		clients[i] = newClient(uint64(i), p, q)
	}

	next := make([]uint32, producers)
	var got, drains, nonEmpty int
	consumerDone := make(chan struct{})
	go func() {
		defer close(consumerDone)
		for got < producers*perProducer {
			select {
			case <-wakeCh:
			case <-time.After(5 * time.Second):
				t.Errorf("consumer starved: %d of %d replies, %d wakes", got, producers*perProducer, wakes.Load())
				return
			}
			items := q.Drain()
			drains++
			if len(items) > 0 {
				nonEmpty++
			}
			for i := range items {
				r := &items[i]
				prod := int(r.Data[0])
				seq := binary.BigEndian.Uint32(r.Data[1:])
				if r.Client != clients[prod] {
					t.Errorf("reply of producer %d has client %d", prod, r.Client.ID)
				}
				if seq != next[prod] {
					t.Errorf("producer %d: got seq %d, want %d", prod, seq, next[prod])
				}
				next[prod] = seq + 1
				got++
				r.Done()
				if r.Client != nil || r.Data != nil {
					t.Errorf("Done did not clear the reply")
				}
			}
		}
	}()

	var wg sync.WaitGroup
	for i := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range perProducer {
				d := make([]byte, 5)
				d[0] = byte(i)
				binary.BigEndian.PutUint32(d[1:], uint32(j))
				q.Push(queue.Reply{Client: clients[i], Data: d})
			}
		}()
	}
	wg.Wait()
	<-consumerDone
	if t.Failed() {
		return
	}
	// Producers are done, so every wake has been sent; a wake whose
	// replies an earlier drain already took finds the queue empty.
	for len(wakeCh) > 0 {
		<-wakeCh
		drains++
		if items := q.Drain(); len(items) != 0 {
			t.Fatalf("late drain found %d replies", len(items))
		}
	}
	w := wakes.Load()
	if int64(drains) != w {
		t.Fatalf("%d drains for %d wakes", drains, w)
	}
	if int64(nonEmpty) > w || w < 1 {
		t.Fatalf("%d non-empty drains, %d wakes", nonEmpty, w)
	}
	if w > producers*perProducer {
		t.Fatalf("%d wakes for %d pushes", w, producers*perProducer)
	}
	if items := q.Drain(); len(items) != 0 {
		t.Fatalf("%d replies left behind", len(items))
	}
	for i, c := range clients {
		if c.Backlog() != 0 {
			t.Fatalf("client %d backlog %d", i, c.Backlog())
		}
	}
	t.Logf("%d replies, %d wakes, %d non-empty drains", producers*perProducer, w, nonEmpty)
}

func TestResponseQueueDrainOrderAndReuse(t *testing.T) {
	q := queue.NewResponseQueue(func() {})
	for i := range 5 {
		q.Push(queue.Reply{Data: []byte{byte(i)}, Close: i == 4, Poll: i == 2})
	}
	a := q.Drain()
	if len(a) != 5 {
		t.Fatalf("drained %d", len(a))
	}
	for i, r := range a {
		if r.Data[0] != byte(i) || r.Close != (i == 4) || r.Poll != (i == 2) {
			t.Fatalf("item %d = %+v", i, r)
		}
	}
	q.Push(queue.Reply{Data: []byte{9}})
	b := q.Drain()
	if len(b) != 1 || b[0].Data[0] != 9 {
		t.Fatalf("second drain %+v", b)
	}
	// a is still intact until the next Drain.
	if a[3].Data[0] != 3 {
		t.Fatalf("first batch overwritten before the next Drain: %+v", a)
	}
}

func TestBacklog(t *testing.T) {
	q := queue.NewResponseQueue(func() {})
	c := newClient(1, newPool(circuits.Transaction), q)
	if c.Backlog() != 0 {
		t.Fatal("new client has a backlog")
	}
	q.Push(queue.Reply{Client: c, Data: make([]byte, 100)})
	q.Push(queue.Reply{Client: c, Data: make([]byte, 23)})
	q.Push(queue.Reply{Data: make([]byte, 1000)}) // no client
	if c.Backlog() != 123 {
		t.Fatalf("Backlog = %d, want 123", c.Backlog())
	}
	select {
	case <-c.Drained():
		t.Fatal("Drained signalled before SetOutbound")
	default:
	}
	c.SetOutbound(7)
	if c.Backlog() != 130 {
		t.Fatalf("Backlog = %d, want 130", c.Backlog())
	}
	select {
	case <-c.Drained():
	default:
		t.Fatal("SetOutbound did not signal Drained")
	}
	items := q.Drain()
	items[0].Done()
	if c.Backlog() != 30 {
		t.Fatalf("Backlog after one Done = %d, want 30", c.Backlog())
	}
	items[1].Done()
	items[2].Done()
	c.SetOutbound(0)
	if c.Backlog() != 0 {
		t.Fatalf("Backlog = %d, want 0", c.Backlog())
	}
}

func TestGetPutBuffer(t *testing.T) {
	b := queue.GetBuffer()
	if len(*b) != 0 || cap(*b) < 64<<10 {
		t.Fatalf("GetBuffer len %d cap %d", len(*b), cap(*b))
	}
	// sync.Pool may drop items (it does at random under -race), so look
	// for reuse over several rounds.
	reused := 0
	for range 200 {
		b := queue.GetBuffer()
		*b = append(*b, "hello"...)
		first := &(*b)[0]
		queue.PutBuffer(*b)
		b2 := queue.GetBuffer()
		if len(*b2) != 0 {
			t.Fatalf("reused buffer has length %d", len(*b2))
		}
		if cap(*b2) > 0 && &(*b2)[:1][0] == first {
			reused++
		}
		queue.PutBuffer(*b2)
	}
	if reused == 0 {
		t.Fatal("PutBuffer never let GetBuffer reuse a buffer")
	}

	// An oversized chunk is not kept.
	big := make([]byte, 0, 5*64<<10)
	bigFirst := &big[:1][0]
	queue.PutBuffer(big)
	for range 50 {
		b := queue.GetBuffer()
		if &(*b)[:1][0] == bigFirst {
			t.Fatal("oversized buffer was pooled")
		}
		defer queue.PutBuffer(*b)
	}
}

// TestSendChunkOffLoop: a producer on no loop (or another one) queues
// the pooled chunk for the dispatcher.
func TestSendChunkOffLoop(t *testing.T) {
	var wakes int
	q := queue.NewResponseQueue(func() { wakes++ })
	c := newClient(1, newPool(circuits.Transaction), q)
	b := queue.GetBuffer()
	*b = append(*b, "DataRow..."...)
	q.SendChunk(c, b, nil)
	if c.Backlog() != 10 || wakes != 1 {
		t.Fatalf("Backlog %d wakes %d", c.Backlog(), wakes)
	}
	items := q.Drain()
	if len(items) != 1 || string(items[0].Data) != "DataRow..." || items[0].Client != c {
		t.Fatalf("drained %+v", items)
	}
	items[0].Done()
	if c.Backlog() != 0 || items[0].Data != nil {
		t.Fatalf("after Done: backlog %d, reply %+v", c.Backlog(), items[0])
	}
}

func BenchmarkResponseQueuePushDrain(b *testing.B) {
	q := queue.NewResponseQueue(func() {})
	c := newClient(1, newPool(circuits.Transaction), q)
	data := make([]byte, 128)
	b.ReportAllocs()
	for b.Loop() {
		q.Push(queue.Reply{Client: c, Data: data})
		items := q.Drain()
		for i := range items {
			items[i].Done()
		}
	}
}

func BenchmarkResponseQueuePushDrainBatch16(b *testing.B) {
	q := queue.NewResponseQueue(func() {})
	c := newClient(1, newPool(circuits.Transaction), q)
	data := make([]byte, 128)
	b.ReportAllocs()
	for b.Loop() {
		for range 16 {
			q.Push(queue.Reply{Client: c, Data: data})
		}
		items := q.Drain()
		for i := range items {
			items[i].Done()
		}
	}
}

// BenchmarkResponseQueueManyProducers: shared servers on every core push
// into one dispatcher's queue while its loop drains on each wake-up.
func BenchmarkResponseQueueManyProducers(b *testing.B) {
	woken := make(chan struct{}, 1)
	q := queue.NewResponseQueue(func() {
		select {
		case woken <- struct{}{}:
		default:
		}
	})
	stop := make(chan struct{})
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		for {
			select {
			case <-woken:
			case <-stop:
				return
			}
			items := q.Drain()
			for i := range items {
				items[i].Done()
			}
		}
	}()
	var ids atomic.Uint64
	data := make([]byte, 128)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		c := newClient(ids.Add(1), newPool(circuits.Transaction), q)
		for pb.Next() {
			q.Push(queue.Reply{Client: c, Data: data})
		}
	})
	close(stop)
	<-drained
}

// sameLoop is a queue.Loop for tests where everything runs on the caller.
type sameLoop struct{}

func (sameLoop) Run(fn func()) error               { fn(); return nil }
func (sameLoop) Host(net.Conn, queue.Hosted) error { return nil }
func (sameLoop) Now() int64                        { return queue.Nanotime() }
func (sameLoop) Responses() *queue.ResponseQueue   { return nil }
func (sameLoop) ID() int                           { return 0 }

// onSameLoop makes a response queue attached to a sameLoop, whose
// deliver records what it writes in written (and then calls also, if
// set); wakes counts the queue's wake-ups.
func onSameLoop(wakes *int, written *[]string, also func(*queue.Reply)) (*queue.ResponseQueue, *queue.Client) {
	q := queue.NewResponseQueue(func() { *wakes++ })
	c := newClient(1, newPool(circuits.Transaction), q)
	q.Attach(sameLoop{}, func(r *queue.Reply) {
		*written = append(*written, string(r.Data))
		if also != nil {
			also(r)
		}
	})
	return q, c
}

// TestSendOnOwnLoop: a reply sent from the queue's own loop is written at
// once and allocates nothing; one sent from inside that write (a client
// closed while being written to) is queued, after it.
func TestSendOnOwnLoop(t *testing.T) {
	var wakes int
	var written []string
	var q *queue.ResponseQueue
	var c *queue.Client
	loop := sameLoop{}
	q, c = onSameLoop(&wakes, &written, func(r *queue.Reply) {
		if string(r.Data) == "first" {
			q.Send(queue.Reply{Client: c, Data: []byte("nested")}, q)
		}
	})
	q.Send(queue.Reply{Client: c, Data: []byte("first")}, q)
	if len(written) != 1 || written[0] != "first" || wakes != 1 {
		t.Fatalf("written %q, wakes %d", written, wakes)
	}
	items := q.Drain()
	if len(items) != 1 || string(items[0].Data) != "nested" {
		t.Fatalf("queued %+v", items)
	}
	items[0].Done()

	data := []byte("DataRow")
	q.Attach(loop, func(*queue.Reply) {})
	if n := testing.AllocsPerRun(100, func() { q.Send(queue.Reply{Client: c, Data: data}, q) }); n != 0 {
		t.Errorf("Send on its own loop: %.0f allocations, want 0", n)
	}
}

// TestSendChunkOnOwnLoop: a chunk written at once becomes the loop's
// spare, which Chunk hands out next, empty; a second spare goes back to
// the pool; a chunk that has to be queued is not kept.
func TestSendChunkOnOwnLoop(t *testing.T) {
	var wakes int
	var written []string
	q, c := onSameLoop(&wakes, &written, nil)

	first := q.Chunk()
	*first = append(*first, "one"...)
	q.SendChunk(c, first, q)
	if len(written) != 1 || written[0] != "one" || c.Backlog() != 0 {
		t.Fatalf("written %q, backlog %d", written, c.Backlog())
	}
	if again := q.Chunk(); again != first || len(*again) != 0 {
		t.Fatalf("Chunk after a chunk written at once = %p (len %d), want the spare %p, empty", again, len(*again), first)
	}
	if other := q.Chunk(); other == first {
		t.Fatal("Chunk handed out the spare twice")
	}

	second := queue.GetBuffer()
	*second = append(*second, "two"...)
	q.SendChunk(c, first, q)
	q.SendChunk(c, second, q) // the spare is taken: second goes to the pool
	if got := q.Chunk(); got != first {
		t.Fatalf("spare = %p, want the first chunk %p", got, first)
	}

	q.Hold()
	held := q.Chunk()
	*held = append(*held, "three"...)
	q.SendChunk(c, held, q)
	if got := q.Chunk(); got == held {
		t.Fatal("a queued chunk became the spare")
	}
	if !q.Release() {
		t.Fatal("Release did not report the held reply")
	}
	items := q.Drain()
	if len(items) != 1 || string(items[0].Data) != "three" {
		t.Fatalf("queued %+v", items)
	}
	items[0].Done()
}

// TestHoldRelease: between Hold and Release, replies sent on the loop are
// queued, in order and without a wake-up, and Release reports them.
func TestHoldRelease(t *testing.T) {
	var wakes int
	var written []string
	q, c := onSameLoop(&wakes, &written, nil)

	if q.Release() {
		t.Fatal("Release without a Hold reported held replies")
	}
	q.Hold()
	q.Send(queue.Reply{Client: c, Data: []byte("one")}, q)
	q.Send(queue.Reply{Client: c, Data: []byte("two")}, q)
	if len(written) != 0 || wakes != 0 || c.Backlog() != 6 {
		t.Fatalf("while held: written %q, wakes %d, backlog %d", written, wakes, c.Backlog())
	}
	if !q.Release() {
		t.Fatal("Release did not report the held replies")
	}
	items := q.Drain()
	if len(items) != 2 || string(items[0].Data) != "one" || string(items[1].Data) != "two" {
		t.Fatalf("queued %+v", items)
	}
	for i := range items {
		items[i].Done()
	}
	q.Send(queue.Reply{Client: c, Data: []byte("three")}, q)
	if len(written) != 1 || written[0] != "three" || q.Release() {
		t.Fatalf("after Release: written %q", written)
	}
}
