package queue_test

import (
	"testing"
	"unsafe"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgmts/pgmts/circuits"
	"github.com/pgmts/pgmts/queue"
	"github.com/pgmts/pgmts/wire"
)

func woken(c *queue.Client) bool {
	select {
	case <-c.Wake():
		return true
	default:
		return false
	}
}

// serve dequeues c for server srv.
func serve(t *testing.T, p *queue.Pool, c *queue.Client, srv any) {
	t.Helper()
	stop := make(chan struct{})
	defer close(stop)
	if got := p.Requests.Take(make(chan *queue.Client, 1), stop); got != c {
		t.Fatalf("dequeued %v, want client %d", got, c.ID)
	}
	if !c.Begin(srv) {
		t.Fatal("Begin refused")
	}
}

func mustTake(t *testing.T, c *queue.Client, srv any, want string) {
	t.Helper()
	data, mine, gone := c.Take(srv, nil)
	if !mine || gone || string(data) != want {
		t.Fatalf("Take = (%q, mine=%v, gone=%v), want %q", data, mine, gone, want)
	}
}

func TestClientSubmitQueuesOnce(t *testing.T) {
	p := newPool(circuits.Transaction)
	c := newClient(1, p, nil)
	if !c.Idle() {
		t.Fatal("new client not idle")
	}
	for _, s := range []string{"a", "b", "c"} {
		if ok, _ := c.Submit([]byte(s), []byte{'Q'}); !ok {
			t.Fatal("Submit refused")
		}
	}
	if st := p.Requests.Stats(); st.Waiting != 1 || st.TotalQueued != 1 {
		t.Fatalf("Stats = %+v, want one entry", st)
	}
	if c.Idle() {
		t.Fatal("queued client reports Idle")
	}
	srv := "server-1"
	serve(t, p, c, srv)
	if woken(c) {
		t.Fatal("Wake signalled before any bytes arrived while served")
	}
	mustTake(t, c, srv, "abc")
	mustTake(t, c, srv, "")

	// Served: Submit signals Wake and does not queue.
	c.Submit([]byte("d"), nil)
	c.Submit([]byte("e"), nil)
	if !woken(c) {
		t.Fatal("Submit while served did not signal Wake")
	}
	if woken(c) {
		t.Fatal("Wake holds more than one signal")
	}
	if st := p.Requests.Stats(); st.Waiting != 0 || st.TotalQueued != 1 {
		t.Fatalf("Stats = %+v", st)
	}
	mustTake(t, c, srv, "de")

	// Another server does not own it.
	data, mine, gone := c.Take("server-2", []byte("spare"))
	if mine || gone || string(data) != "spare" {
		t.Fatalf("Take by stranger = (%q, %v, %v)", data, mine, gone)
	}
}

func TestClientTakeReusesSpare(t *testing.T) {
	p := newPool(circuits.Transaction)
	c := newClient(1, p, nil)
	c.Submit([]byte("first"), nil)
	serve(t, p, c, 1)
	spare := make([]byte, 3, 64)
	data, _, _ := c.Take(1, spare)
	if string(data) != "first" {
		t.Fatalf("data = %q", data)
	}
	c.Submit([]byte("second"), nil)
	data2, _, _ := c.Take(1, data)
	if string(data2) != "second" || &data2[0] != &spare[:1][0] {
		t.Fatalf("inbox did not reuse the spare buffer (got %q)", data2)
	}
}

func TestClientReadyRelease(t *testing.T) {
	p := newPool(circuits.Transaction)
	c := newClient(1, p, nil)
	srv := "s"
	c.Submit([]byte("Q1"), []byte{'Q'})
	serve(t, p, c, srv)
	mustTake(t, c, srv, "Q1")

	// Bytes waiting in the inbox keep the server even when the circuit
	// is releasable.
	c.Submit([]byte("x"), nil)
	if r := c.Ready(srv, 'I'); r {
		t.Fatal("Ready with inbox bytes released the server")
	}
	mustTake(t, c, srv, "x")

	// Another server's ReadyForQuery does not release it.
	if r := c.Ready("other", 'I'); r {
		t.Fatal("Ready by a stranger released the server")
	}
	if r := c.Ready(srv, 'I'); !r {
		t.Fatal("Ready idle did not release")
	}
	if !c.Idle() {
		t.Fatal("released client not Idle")
	}
	if _, mine, _ := c.Take(srv, nil); mine {
		t.Fatal("released server still owns the client")
	}
	// Next Submit queues it again.
	c.Submit([]byte("Q2"), []byte{'Q'})
	if st := p.Requests.Stats(); st.Waiting != 1 || st.TotalQueued != 2 {
		t.Fatalf("Stats = %+v", st)
	}
	serve(t, p, c, srv)
	mustTake(t, c, srv, "Q2")
	if r := c.Ready(srv, 'T'); r {
		t.Fatal("released inside a transaction")
	}
	if c.Idle() {
		t.Fatal("Idle inside a transaction")
	}
	c.Submit([]byte("Q3"), []byte{'Q'})
	mustTake(t, c, srv, "Q3")
	if r := c.Ready(srv, 'I'); !r {
		t.Fatal("not released after COMMIT")
	}
}

func TestClientReadyPipelined(t *testing.T) {
	p := newPool(circuits.Transaction)
	c := newClient(1, p, nil)
	c.Submit([]byte("PBES"), []byte("PBES"))
	c.Submit([]byte("BES"), []byte("BES"))
	serve(t, p, c, 1)
	mustTake(t, c, 1, "PBESBES")
	if r := c.Ready(1, 'I'); r {
		t.Fatal("released after the first of two Syncs")
	}
	if r := c.Ready(1, 'I'); !r {
		t.Fatal("not released after the second Sync")
	}
}

func TestClientReadySessionAndStatement(t *testing.T) {
	p := newPool(circuits.Session)
	c := newClient(1, p, nil)
	c.Submit([]byte("Q"), []byte{'Q'})
	serve(t, p, c, 1)
	mustTake(t, c, 1, "Q")
	if r := c.Ready(1, 'I'); r {
		t.Fatal("session mode Ready released")
	}

	ps := newPool(circuits.Statement)
	cs := newClient(2, ps, nil)
	cs.Submit([]byte("BEGIN"), []byte{'Q'})
	serve(t, ps, cs, 1)
	mustTake(t, cs, 1, "BEGIN")
	if r := cs.Ready(1, 'T'); r {
		t.Fatal("statement mode BEGIN Ready released")
	}
}

func TestClientReadyClosed(t *testing.T) {
	p := newPool(circuits.Transaction)
	c := newClient(1, p, nil)
	c.Submit([]byte("Q"), []byte{'Q'})
	serve(t, p, c, 1)
	mustTake(t, c, 1, "Q")
	woken(c)
	c.Close()
	if !c.Closed() {
		t.Fatal("Closed() false after Close")
	}
	if !woken(c) {
		t.Fatal("Close while served did not signal Wake")
	}
	if r := c.Ready(1, 'I'); r {
		t.Fatal("Ready on closed client released")
	}
	data, mine, gone := c.Take(1, []byte("sp"))
	if !mine || !gone || string(data) != "sp" {
		t.Fatalf("Take after Close = (%q, %v, %v)", data, mine, gone)
	}
	if ok, _ := c.Submit([]byte("late"), []byte{'Q'}); ok {
		t.Fatal("Submit accepted after Close")
	}
	c.Release(2) // not the owner: no effect
	if _, mine, _ := c.Take(1, nil); !mine {
		t.Fatal("Release by stranger dropped the owner")
	}
	c.Release(1)
	if _, mine, gone := c.Take(1, nil); mine || !gone {
		t.Fatalf("Take after Release = (mine=%v, gone=%v)", mine, gone)
	}
}

func TestClientCloseWhileQueued(t *testing.T) {
	p := newPool(circuits.Transaction)
	c := newClient(1, p, nil)
	c.Submit([]byte("Q"), []byte{'Q'})
	c.Close()
	if woken(c) {
		t.Fatal("Close while queued signalled Wake")
	}
	select {
	case <-c.Drained():
	default:
		t.Fatal("Close did not signal Drained")
	}
	stop := make(chan struct{})
	defer close(stop)
	if got := p.Requests.Take(make(chan *queue.Client, 1), stop); got != c {
		t.Fatal("closed client not in queue")
	}
	if c.Begin(1) {
		t.Fatal("Begin accepted a closed client")
	}
	if _, mine, gone := c.Take(1, nil); mine || !gone {
		t.Fatalf("Take = (mine=%v, gone=%v)", mine, gone)
	}
}

func TestClientCloseIdle(t *testing.T) {
	p := newPool(circuits.Transaction)
	c := newClient(1, p, nil)
	c.Close()
	if woken(c) {
		t.Fatal("Close while idle signalled Wake")
	}
	if ok, _ := c.Submit([]byte("Q"), []byte{'Q'}); ok {
		t.Fatal("Submit accepted after Close")
	}
	if st := p.Requests.Stats(); st.TotalQueued != 0 {
		t.Fatalf("closed client queued: %+v", st)
	}
}

func TestClientCircuitAndCancelTarget(t *testing.T) {
	p := newPool(circuits.Transaction)
	c := queue.NewClient(1, p, queue.NewResponseQueue(func() {}), "conn", circuits.New(p.Mode, map[string]string{"TimeZone": "UTC"}))
	if c.Conn != "conn" || c.Pool != p {
		t.Fatal("NewClient fields")
	}
	c.Submit([]byte("PB"), []byte("PB"))
	var idle bool
	var tz string
	c.Circuit(func(cc *circuits.Circuit) { idle = cc.Idle(); tz = cc.Settings()["timezone"] })
	if idle || tz != "UTC" {
		t.Fatalf("circuit idle=%v tz=%q", idle, tz)
	}
	if c.CancelTarget() != nil {
		t.Fatal("new client has a cancel target")
	}
	ct := &queue.CancelTarget{Network: "tcp", Address: "h:5432", PID: 9, Key: []byte{1}}
	c.SetCancelTarget(ct)
	if c.CancelTarget() != ct {
		t.Fatal("CancelTarget not stored")
	}
	c.SetCancelTarget(nil)
	if c.CancelTarget() != nil {
		t.Fatal("CancelTarget not cleared")
	}
}

func TestClientFail(t *testing.T) {
	var wakes int
	rq := queue.NewResponseQueue(func() { wakes++ })
	p := newPool(circuits.Transaction)
	c := newClient(1, p, rq)
	c.Fail(wire.Fatal("08006", "gone"))
	items := rq.Drain()
	if len(items) != 1 || !items[0].Close || items[0].Client != c || wakes != 1 {
		t.Fatalf("Fail pushed %+v (wakes %d)", items, wakes)
	}
	var er pgproto3.ErrorResponse
	d := items[0].Data
	if d[0] != 'E' || er.Decode(d[5:]) != nil || er.Code != "08006" || er.Severity != "FATAL" || er.Message != "gone" {
		t.Fatalf("Fail data %q", d)
	}
	if c.Backlog() != int64(len(d)) {
		t.Fatalf("Backlog = %d, want %d", c.Backlog(), len(d))
	}
	items[0].Done()
	if c.Backlog() != 0 {
		t.Fatalf("Backlog after Done = %d", c.Backlog())
	}
}

// Every idle client holds a Client: it stays one allocation (the
// circuit is copied in) of at most 192 bytes, with no channels until a
// server that needs one asks.
func TestClientFootprint(t *testing.T) {
	var c queue.Client
	if size := unsafe.Sizeof(c); size > 192 {
		t.Fatalf("queue.Client is %d bytes, want at most 192", size)
	}
	p := newPool(circuits.Transaction)
	rq := queue.NewResponseQueue(func() {})
	ci := circuits.New(p.Mode, nil)
	allocs := testing.AllocsPerRun(100, func() { queue.NewClient(1, p, rq, nil, ci) })
	if allocs > 1 {
		t.Fatalf("NewClient makes %v allocations, want 1", allocs)
	}
}

// A client going idle keeps a small inbox for its next request, but not
// the big buffer of a large one.
func TestIdleClientDropsBigInbox(t *testing.T) {
	for _, size := range []int{100, 64 << 10} {
		p := newPool(circuits.Transaction)
		c := newClient(1, p, nil)
		msg := make([]byte, size)
		msg[0] = 'Q'
		c.Submit(msg, []byte{'Q'})
		serve(t, p, c, "srv")
		data, _, _ := c.Take("srv", make([]byte, 0, size))
		if len(data) != size {
			t.Fatalf("took %d bytes, want %d", len(data), size)
		}
		if !c.Ready("srv", circuits.TxIdle) {
			t.Fatal("not released")
		}
		if got := c.InboxCap(); size <= 1024 && got < size || size > 1024 && got != 0 {
			t.Fatalf("after a %d-byte request the idle client's inbox holds %d bytes", size, got)
		}
	}
}

// TestClientInboxHighWater: Submit asks the dispatcher to stop reading
// the client once its inbox holds InboxHighWater bytes, and the Take that
// empties the inbox pushes one Resume reply.
func TestClientInboxHighWater(t *testing.T) {
	p := newPool(circuits.Transaction)
	woke := 0
	rq := queue.NewResponseQueue(func() { woke++ })
	c := newClient(1, p, rq)
	chunk := make([]byte, queue.InboxHighWater/4)
	for i := range 3 {
		if ok, hold := c.Submit(chunk, nil); !ok || hold {
			t.Fatalf("Submit %d (inbox %d bytes) = ok %v, hold %v; want no hold yet", i, (i+1)*len(chunk), ok, hold)
		}
	}
	if ok, hold := c.Submit(chunk, nil); !ok || !hold {
		t.Fatalf("Submit at InboxHighWater = ok %v, hold %v; want hold", ok, hold)
	}
	if got := rq.Drain(); len(got) != 0 {
		t.Fatalf("replies before any Take: %+v", got)
	}
	srv := "server-1"
	serve(t, p, c, srv)
	if data, mine, gone := c.Take(srv, nil); !mine || gone || len(data) != queue.InboxHighWater {
		t.Fatalf("Take = %d bytes, mine=%v, gone=%v; want the whole inbox", len(data), mine, gone)
	}
	got := rq.Drain()
	if len(got) != 1 || !got[0].Resume || got[0].Client != c || woke != 1 {
		t.Fatalf("after the Take: replies %+v, %d wake-ups; want one Resume for the client", got, woke)
	}
	got[0].Done()
	mustTake(t, c, srv, "")
	if got := rq.Drain(); len(got) != 0 {
		t.Fatalf("a second Take pushed %+v", got)
	}
}
