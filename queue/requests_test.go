package queue_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/pgmts/pgmts/circuits"
	"github.com/pgmts/pgmts/queue"
)

func newPool(mode circuits.Mode) *queue.Pool {
	return &queue.Pool{Name: "db/user", Mode: mode, Requests: &queue.RequestQueue{}}
}

func newClient(id uint64, p *queue.Pool, rq *queue.ResponseQueue) *queue.Client {
	if rq == nil {
		rq = queue.NewResponseQueue(func() {})
	}
	return queue.NewClient(id, p, rq, nil, circuits.New(p.Mode, nil))
}

// waitParked waits until n takers are parked on q.
func waitParked(t testing.TB, q *queue.RequestQueue, n int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for q.Parked() != n {
		if time.Now().After(deadline) {
			t.Fatalf("parked = %d, want %d", q.Parked(), n)
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// take runs Take in a goroutine and returns its result channel.
func take(q *queue.RequestQueue, stop <-chan struct{}) <-chan *queue.Client {
	out := make(chan *queue.Client, 1)
	go func() { out <- q.Take(make(chan *queue.Client, 1), stop) }()
	return out
}

func recvClient(t testing.TB, ch <-chan *queue.Client) *queue.Client {
	t.Helper()
	select {
	case c := <-ch:
		return c
	case <-time.After(2 * time.Second):
		t.Fatal("Take did not return")
		return nil
	}
}

func TestRequestQueueFIFO(t *testing.T) {
	p := newPool(circuits.Transaction)
	var waits atomic.Int32
	p.Requests.OnWait = func() { waits.Add(1) }
	var clients []*queue.Client
	for i := range 50 {
		c := newClient(uint64(i), p, nil)
		clients = append(clients, c)
		if ok, _ := c.Submit([]byte{'Q', 0, 0, 0, 4}, []byte{'Q'}); !ok {
			t.Fatal("Submit refused")
		}
	}
	if got := waits.Load(); got != 50 {
		t.Fatalf("OnWait called %d times, want 50", got)
	}
	if st := p.Requests.Stats(); st.Waiting != 50 || st.TotalQueued != 50 {
		t.Fatalf("Stats = %+v", st)
	}
	stop := make(chan struct{})
	inbox := make(chan *queue.Client, 1)
	for i := range 30 {
		if got := p.Requests.Take(inbox, stop); got != clients[i] {
			t.Fatalf("Take #%d = client %v, want %d", i, got, i)
		}
	}
	rest := p.Requests.Drain()
	if len(rest) != 20 {
		t.Fatalf("Drain returned %d", len(rest))
	}
	for i, c := range rest {
		if c != clients[30+i] {
			t.Fatalf("Drain[%d] = %d, want %d", i, c.ID, 30+i)
		}
	}
	if st := p.Requests.Stats(); st.Waiting != 0 || st.TotalQueued != 50 || st.OldestWait != 0 {
		t.Fatalf("Stats after drain = %+v", st)
	}
	if d := p.Requests.Drain(); len(d) != 0 {
		t.Fatalf("second Drain = %d clients", len(d))
	}
}

func TestTakeParksAndIsHandedOver(t *testing.T) {
	p := newPool(circuits.Transaction)
	var waits atomic.Int32
	p.Requests.OnWait = func() { waits.Add(1) }
	stop := make(chan struct{})
	defer close(stop)

	got := take(p.Requests, stop)
	waitParked(t, p.Requests, 1)
	c := newClient(1, p, nil)
	c.Submit([]byte("x"), nil)
	if r := recvClient(t, got); r != c {
		t.Fatalf("handed %v, want client 1", r)
	}
	if w := waits.Load(); w != 0 {
		t.Fatalf("OnWait called %d times with a parked server", w)
	}
	if st := p.Requests.Stats(); st.Waiting != 0 || st.TotalQueued != 1 || p.Requests.Parked() != 0 {
		t.Fatalf("Stats = %+v parked %d", st, p.Requests.Parked())
	}

	// No server parked: the request waits and OnWait fires once.
	c2 := newClient(2, p, nil)
	c2.Submit([]byte("y"), nil)
	if w := waits.Load(); w != 1 {
		t.Fatalf("OnWait called %d times, want 1", w)
	}
	if r := p.Requests.Take(make(chan *queue.Client, 1), stop); r != c2 {
		t.Fatalf("Take = %v, want client 2", r)
	}

	// Several parked servers each get one client.
	const n = 8
	var outs []<-chan *queue.Client
	for range n {
		outs = append(outs, take(p.Requests, stop))
	}
	waitParked(t, p.Requests, n)
	seen := map[*queue.Client]bool{}
	var want []*queue.Client
	for i := range n {
		c := newClient(uint64(10+i), p, nil)
		want = append(want, c)
		c.Submit([]byte("z"), nil)
	}
	for _, o := range outs {
		seen[recvClient(t, o)] = true
	}
	for _, c := range want {
		if !seen[c] {
			t.Fatalf("client %d not handed to any server", c.ID)
		}
	}
	if w := waits.Load(); w != 1 {
		t.Fatalf("OnWait called %d times, want 1", w)
	}
}

func TestTakeStop(t *testing.T) {
	p := newPool(circuits.Transaction)
	stop := make(chan struct{})
	close(stop)
	if c := p.Requests.Take(make(chan *queue.Client, 1), stop); c != nil {
		t.Fatalf("Take with stop closed = %v", c)
	}
	if n := p.Requests.Parked(); n != 0 {
		t.Fatalf("stopped taker still parked (%d)", n)
	}

	// A parked taker returns nil when stop closes and leaves no waiter.
	stop2 := make(chan struct{})
	got := take(p.Requests, stop2)
	waitParked(t, p.Requests, 1)
	close(stop2)
	if c := recvClient(t, got); c != nil {
		t.Fatalf("Take = %v after stop", c)
	}
	if n := p.Requests.Parked(); n != 0 {
		t.Fatalf("stopped taker still parked (%d)", n)
	}
	// A later request queues (nobody parked) rather than vanishing.
	c := newClient(1, p, nil)
	c.Submit([]byte("x"), nil)
	if st := p.Requests.Stats(); st.Waiting != 1 {
		t.Fatalf("Waiting = %d", st.Waiting)
	}
}

// A hand-over that races with stop is either taken or put back in the
// queue, never lost.
func TestTakeStopRaceNotLost(t *testing.T) {
	var took, putBack int
	for i := range 1000 {
		p := newPool(circuits.Transaction)
		var waits atomic.Int32
		p.Requests.OnWait = func() { waits.Add(1) }
		stop := make(chan struct{})
		got := take(p.Requests, stop)
		if i%2 == 0 {
			waitParked(t, p.Requests, 1)
		}
		c := newClient(uint64(i), p, nil)
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); close(stop) }()
		go func() { defer wg.Done(); c.Submit([]byte("x"), nil) }()
		wg.Wait()
		r := recvClient(t, got)
		st := p.Requests.Stats()
		switch r {
		case c:
			took++
			if st.Waiting != 0 {
				t.Fatalf("iteration %d: taken and still waiting: %+v", i, st)
			}
		case nil:
			putBack++
			if st.Waiting != 1 || waits.Load() < 1 {
				t.Fatalf("iteration %d: client lost: %+v, OnWait %d", i, st, waits.Load())
			}
			if d := p.Requests.Drain(); len(d) != 1 || d[0] != c {
				t.Fatalf("iteration %d: Drain = %v", i, d)
			}
		default:
			t.Fatalf("iteration %d: Take returned a stranger", i)
		}
		if n := p.Requests.Parked(); n != 0 {
			t.Fatalf("iteration %d: %d takers left parked", i, n)
		}
	}
	t.Logf("taken %d, put back %d", took, putBack)
}

// When a stopping taker gives a handed-over client back, another parked
// taker must get it: a parked server must never sit idle next to a waiting
// request.
func TestTakeStopRaceOtherTakerParked(t *testing.T) {
	for i := range 3000 {
		p := newPool(circuits.Transaction)
		stopA := make(chan struct{})
		gotA := take(p.Requests, stopA)
		waitParked(t, p.Requests, 1)
		stopB := make(chan struct{})
		gotB := take(p.Requests, stopB) // parked last: enqueue hands to B first
		waitParked(t, p.Requests, 2)
		c := newClient(uint64(i), p, nil)
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); close(stopB) }()
		go func() { defer wg.Done(); c.Submit([]byte("x"), nil) }()
		wg.Wait()
		if r := recvClient(t, gotB); r == c {
			close(stopA)
			recvClient(t, gotA)
			continue
		}
		select {
		case r := <-gotA:
			if r != c {
				t.Fatalf("iteration %d: A got %v", i, r)
			}
			close(stopA)
		case <-time.After(200 * time.Millisecond):
			st := p.Requests.Stats()
			close(stopA)
			recvClient(t, gotA)
			t.Fatalf("iteration %d: client waits in the queue (%+v) while taker A is parked", i, st)
		}
	}
}

func TestExpire(t *testing.T) {
	p := newPool(circuits.Transaction)
	if got := p.Requests.Expire(time.Millisecond); len(got) != 0 {
		t.Fatalf("Expire on empty queue = %v", got)
	}
	var cs []*queue.Client
	for i := range 4 {
		c := newClient(uint64(i), p, nil)
		cs = append(cs, c)
		c.Submit([]byte("x"), nil)
	}
	p.Requests.Backdate(3*time.Hour, 2*time.Hour, time.Minute, 0)
	st := p.Requests.Stats()
	if st.OldestWait < 3*time.Hour || st.OldestWait > 3*time.Hour+time.Minute {
		t.Fatalf("OldestWait = %v", st.OldestWait)
	}
	got := p.Requests.Expire(90 * time.Minute)
	if len(got) != 2 || got[0] != cs[0] || got[1] != cs[1] {
		t.Fatalf("Expire(90m) = %v", ids(got))
	}
	st = p.Requests.Stats()
	if st.Waiting != 2 || st.TotalWait < 5*time.Hour || st.OldestWait < time.Minute || st.OldestWait > 2*time.Minute {
		t.Fatalf("Stats after expire = %+v", st)
	}
	if got := p.Requests.Expire(90 * time.Minute); len(got) != 0 {
		t.Fatalf("second Expire(90m) = %v", ids(got))
	}
	if got := p.Requests.Expire(30 * time.Second); len(got) != 1 || got[0] != cs[2] {
		t.Fatalf("Expire(30s) = %v", ids(got))
	}
	// The queue keeps working after Expire emptied its front.
	stop := make(chan struct{})
	defer close(stop)
	inbox := make(chan *queue.Client, 1)
	if c := p.Requests.Take(inbox, stop); c != cs[3] {
		t.Fatalf("Take = %v", c)
	}
	c5 := newClient(5, p, nil)
	c5.Submit([]byte("x"), nil)
	if c := p.Requests.Take(inbox, stop); c != c5 {
		t.Fatalf("Take after refill = %v", c)
	}
	if st := p.Requests.Stats(); st.Waiting != 0 || st.TotalQueued != 5 {
		t.Fatalf("Stats = %+v", st)
	}
}

func TestExpireAllThenQueue(t *testing.T) {
	p := newPool(circuits.Transaction)
	for i := range 3 {
		newClient(uint64(i), p, nil).Submit([]byte("x"), nil)
	}
	p.Requests.Backdate(time.Hour, time.Hour, time.Hour)
	if got := p.Requests.Expire(time.Minute); len(got) != 3 {
		t.Fatalf("Expire = %d clients", len(got))
	}
	if st := p.Requests.Stats(); st.Waiting != 0 {
		t.Fatalf("Waiting = %d", st.Waiting)
	}
	var cs []*queue.Client
	for i := range 3 {
		c := newClient(uint64(10+i), p, nil)
		cs = append(cs, c)
		c.Submit([]byte("x"), nil)
	}
	if got := p.Requests.Drain(); len(got) != 3 || got[0] != cs[0] || got[2] != cs[2] {
		t.Fatalf("Drain = %v", ids(got))
	}
}

func TestStats(t *testing.T) {
	p := newPool(circuits.Transaction)
	if st := p.Requests.Stats(); st != (queue.Stats{}) {
		t.Fatalf("zero Stats = %+v", st)
	}
	for i := range 3 {
		newClient(uint64(i), p, nil).Submit([]byte("x"), nil)
	}
	p.Requests.Backdate(time.Second, time.Second, time.Second)
	st := p.Requests.Stats()
	if st.Waiting != 3 || st.TotalQueued != 3 || st.TotalWait != 0 || st.OldestWait < time.Second {
		t.Fatalf("Stats = %+v", st)
	}
	stop := make(chan struct{})
	defer close(stop)
	p.Requests.Take(make(chan *queue.Client, 1), stop)
	st = p.Requests.Stats()
	if st.Waiting != 2 || st.TotalQueued != 3 || st.TotalWait < time.Second || st.TotalWait > 2*time.Second {
		t.Fatalf("Stats after one Take = %+v", st)
	}
	p.Requests.Drain()
	st = p.Requests.Stats()
	if st.Waiting != 0 || st.TotalWait < 3*time.Second || st.OldestWait != 0 {
		t.Fatalf("Stats after Drain = %+v", st)
	}
}

// Many submitters and takers: every request is taken exactly once.
func TestRequestQueueConcurrent(t *testing.T) {
	p := newPool(circuits.Transaction)
	const producers, perProducer, takers = 8, 200, 4
	stop := make(chan struct{})
	var taken sync.Map
	var count atomic.Int32
	done := make(chan struct{})
	var tw sync.WaitGroup
	for range takers {
		tw.Add(1)
		go func() {
			defer tw.Done()
			inbox := make(chan *queue.Client, 1)
			for {
				c := p.Requests.Take(inbox, stop)
				if c == nil {
					return
				}
				if _, dup := taken.LoadOrStore(c, true); dup {
					t.Errorf("client %d taken twice", c.ID)
				}
				if count.Add(1) == producers*perProducer {
					close(done)
				}
			}
		}()
	}
	var pw sync.WaitGroup
	for i := range producers {
		pw.Add(1)
		go func() {
			defer pw.Done()
			for j := range perProducer {
				newClient(uint64(i*perProducer+j), p, nil).Submit([]byte("x"), nil)
			}
		}()
	}
	pw.Wait()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("only %d of %d requests taken; stats %+v", count.Load(), producers*perProducer, p.Requests.Stats())
	}
	close(stop)
	tw.Wait()
	if st := p.Requests.Stats(); st.Waiting != 0 || st.TotalQueued != producers*perProducer {
		t.Fatalf("Stats = %+v", st)
	}
}

func ids(cs []*queue.Client) []uint64 {
	var out []uint64
	for _, c := range cs {
		out = append(out, c.ID)
	}
	return out
}

// benchServer is a shared server without a backend: it takes each
// request, answers it at once and calls served with its client.
func benchServer(p *queue.Pool, stop <-chan struct{}, served func(*queue.Client)) {
	srv := new(int)
	inbox := make(chan *queue.Client, 1)
	var spare []byte
	for {
		cl := p.Requests.Take(inbox, stop)
		if cl == nil {
			return
		}
		cl.Begin(srv)
		data, _, _ := cl.Take(srv, spare)
		spare = data[:0]
		if released := cl.Ready(srv, 'I'); !released {
			panic("not released")
		}
		served(cl)
	}
}

// benchQuery is a simple-protocol "select 1".
var benchQuery = []byte{'Q', 0, 0, 0, 13, 's', 'e', 'l', 'e', 'c', 't', ' ', '1', 0}

func BenchmarkRequestQueueHandOver(b *testing.B) {
	b.Run("plain", func(b *testing.B) { benchmarkHandOver(b, newPool(circuits.Transaction)) })
	b.Run("wait histogram", func(b *testing.B) {
		p := newPool(circuits.Transaction)
		p.Requests.WaitTime = metrics.NewSet().NewPrometheusHistogramExt("wait", metrics.ExponentialBuckets(5e-5, 2.5, 17))
		benchmarkHandOver(b, p)
	})
}

func benchmarkHandOver(b *testing.B, p *queue.Pool) {
	c := newClient(1, p, nil)
	stop := make(chan struct{})
	done := make(chan struct{})
	go benchServer(p, stop, func(*queue.Client) { done <- struct{}{} })
	types := []byte{'Q'}
	b.ReportAllocs()
	for b.Loop() {
		c.Submit(benchQuery, types)
		<-done
	}
	close(stop)
}

// TestPauseResume: a paused queue gives nothing to parked or new takers;
// Resume hands the waiting requests out in order and asks for servers for
// the rest.
func TestPauseResume(t *testing.T) {
	p := newPool(circuits.Transaction)
	var waits atomic.Int32
	p.Requests.OnWait = func() { waits.Add(1) }
	stop := make(chan struct{})
	defer close(stop)

	parked := take(p.Requests, stop)
	waitParked(t, p.Requests, 1)
	p.Requests.Pause()
	if !p.Requests.Paused() {
		t.Fatal("Paused() = false after Pause")
	}
	var clients []*queue.Client
	for i := range 3 {
		c := newClient(uint64(i), p, nil)
		clients = append(clients, c)
		c.Submit([]byte("q"), nil)
	}
	select {
	case c := <-parked:
		t.Fatalf("paused queue handed client %d to a parked server", c.ID)
	case <-time.After(50 * time.Millisecond):
	}
	quit := make(chan struct{})
	close(quit)
	if c := p.Requests.Take(make(chan *queue.Client, 1), quit); c != nil {
		t.Fatalf("paused queue gave client %d to a new taker", c.ID)
	}
	if st := p.Requests.Stats(); st.Waiting != 3 {
		t.Fatalf("waiting = %d, want 3", st.Waiting)
	}
	waits.Store(0)
	p.Requests.Resume()
	if c := recvClient(t, parked); c != clients[0] {
		t.Fatalf("Resume handed client %d first, want 0", c.ID)
	}
	if w := waits.Load(); w != 1 {
		t.Fatalf("OnWait called %d times after Resume, want 1 (two still wait)", w)
	}
	for _, want := range clients[1:] {
		if c := p.Requests.Take(make(chan *queue.Client, 1), stop); c != want {
			t.Fatalf("Take after Resume = %v, want client %d", c, want.ID)
		}
	}
}

func TestWaitZero(t *testing.T) {
	n := 3
	if left := queue.WaitZero(context.Background(), func() int { n--; return n }); left != 0 || n != 0 {
		t.Errorf("WaitZero counting down: %d left, count %d", left, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if left := queue.WaitZero(ctx, func() int { return 2 }); left != 2 {
		t.Errorf("WaitZero past its deadline: %d left, want 2", left)
	}
}

// waits records what a RequestQueue's WaitTime observes.
type waits struct {
	mu   sync.Mutex
	seen []float64
}

func (w *waits) Update(seconds float64) {
	w.mu.Lock()
	w.seen = append(w.seen, seconds)
	w.mu.Unlock()
}

// TestWaitTime: every request's wait is observed once: zero when a parked
// server takes it at once, its time in the queue when it waited, and when
// it expired.
func TestWaitTime(t *testing.T) {
	p := newPool(circuits.Transaction)
	w := &waits{}
	p.Requests.WaitTime = w
	stop := make(chan struct{})
	defer close(stop)

	parked := take(p.Requests, stop)
	waitParked(t, p.Requests, 1)
	newClient(1, p, nil).Submit([]byte("q"), nil)
	recvClient(t, parked)
	newClient(2, p, nil).Submit([]byte("q"), nil)
	newClient(3, p, nil).Submit([]byte("q"), nil)
	p.Requests.Backdate(2*time.Second, time.Hour)
	p.Requests.Take(make(chan *queue.Client, 1), stop)
	p.Requests.Expire(time.Minute)

	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.seen) != 3 || w.seen[0] != 0 || w.seen[1] < 2 || w.seen[1] > 3 || w.seen[2] < 3600 {
		t.Fatalf("observed waits %v, want [0, ~2, ~3600]", w.seen)
	}
}

// BenchmarkRequestQueueManyClients: clients on every core each submit a
// request and wait for it to be served, over four shared servers.
func BenchmarkRequestQueueManyClients(b *testing.B) {
	p := newPool(circuits.Transaction)
	stop := make(chan struct{})
	var served sync.Map // *queue.Client → chan struct{}
	var servers sync.WaitGroup
	for range 4 {
		servers.Go(func() {
			benchServer(p, stop, func(c *queue.Client) {
				done, _ := served.Load(c)
				done.(chan struct{}) <- struct{}{}
			})
		})
	}
	var ids atomic.Uint64
	types := []byte{'Q'}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		c := newClient(ids.Add(1), p, nil)
		done := make(chan struct{}, 1)
		served.Store(c, done)
		for pb.Next() {
			c.Submit(benchQuery, types)
			<-done
		}
	})
	close(stop)
	servers.Wait()
}

// A queue that never empties keeps a bounded slice, and its order.
func TestRequestQueueNeverEmpty(t *testing.T) {
	p := newPool(circuits.Transaction)
	const waiting, rounds = 50, 20_000
	var clients []*queue.Client
	submit := func() {
		c := newClient(uint64(len(clients)), p, nil)
		clients = append(clients, c)
		if ok, _ := c.Submit([]byte{'Q', 0, 0, 0, 4}, []byte{'Q'}); !ok {
			t.Fatal("Submit refused")
		}
	}
	for range waiting {
		submit()
	}
	stop := make(chan struct{})
	inbox := make(chan *queue.Client, 1)
	for i := range rounds {
		if got := p.Requests.Take(inbox, stop); got != clients[i] {
			t.Fatalf("round %d: took client %d, want %d", i, got.ID, i)
		}
		submit()
	}
	if c := p.Requests.ItemsCap(); c > 4*waiting {
		t.Fatalf("the queue's slice grew to %d entries for %d waiting", c, waiting)
	}
}

// hostedServer is a queue.Server on the loop whose response queue is
// home (run on the caller, as sameLoop does); it records what it serves.
type hostedServer struct {
	home   *queue.ResponseQueue
	served []*queue.Client
}

func (s *hostedServer) Loop() queue.Loop           { return sameLoop{} }
func (s *hostedServer) Home() *queue.ResponseQueue { return s.home }
func (s *hostedServer) Serve(c *queue.Client)      { s.served = append(s.served, c) }
func (s *hostedServer) Poke()                      {}

// TestHandOffPrefersOwnLoop: a request goes to a server parked on its
// client's loop, even one parked earlier than another; only a request
// that had to go to another loop calls OnElsewhere, with its loop.
func TestHandOffPrefersOwnLoop(t *testing.T) {
	p := newPool(circuits.Transaction)
	var elsewhere []*queue.ResponseQueue
	p.Requests.OnElsewhere = func(from *queue.ResponseQueue) { elsewhere = append(elsewhere, from) }
	loopA, loopB := queue.NewResponseQueue(func() {}), queue.NewResponseQueue(func() {})
	sA, sB := &hostedServer{home: loopA}, &hostedServer{home: loopB}

	p.Requests.Next(sB)
	p.Requests.Next(sA) // parked last
	onB := newClient(1, p, loopB)
	onB.Submit([]byte("x"), nil)
	if len(sB.served) != 1 || sB.served[0] != onB || len(sA.served) != 0 {
		t.Fatalf("served: A %d, B %d; want the client on B served by B", len(sA.served), len(sB.served))
	}
	if len(elsewhere) != 0 {
		t.Fatalf("OnElsewhere called %d times for a request served on its own loop", len(elsewhere))
	}

	// Only A is parked now: a client on B is served there, and the pool
	// hears that B has no server parked.
	onB2 := newClient(2, p, loopB)
	onB2.Submit([]byte("y"), nil)
	if len(sA.served) != 1 || sA.served[0] != onB2 {
		t.Fatalf("A served %d clients, want client 2", len(sA.served))
	}
	if len(elsewhere) != 1 || elsewhere[0] != loopB {
		t.Fatalf("OnElsewhere calls %v, want one with B's queue %p", elsewhere, loopB)
	}
}
