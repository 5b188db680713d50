//go:build linux && !poll_opt

package gnet

// pgmts: a loop with few busy connections waits through io_uring for
// the bytes it expects, instead of epoll_wait then recvfrom.

import (
	"io"
	"os"
	"runtime"

	"golang.org/x/sys/unix"

	errorx "github.com/panjf2000/gnet/v2/pkg/errors"
	"github.com/panjf2000/gnet/v2/pkg/netpoll"
	"github.com/panjf2000/gnet/v2/pkg/uring"
)

const (
	rwSendTag    = 1 << 62
	rwMaxConns   = 4
	rwRegion     = 16 << 10
	rwPollTag    = ^uint64(0)
	rwEnterAfter = 64  // reads before a connection may wait through the ring
	rwActive     = 2   // the most connections read in a window for the ring
	rwWindow     = 256 // wake-ups per window
)

type rconn struct {
	c      *conn
	region int // el.buffer[region*rwRegion:]
	gen    uint64
}

type ringWait struct {
	el        *eventloop
	ring      *uring.Core // nil while closed
	leaving   bool        // shut at the next wait
	shutting  bool        // no receive is posted again
	conns     map[int]*rconn
	regions   [rwMaxConns]bool
	pollArmed bool
	gen       uint64
	reads     map[int]int
	// The connections read in the current window of rwWindow wake-ups (at
	// most rwActive kept; crowded once more were), and whether the last
	// window was quiet enough for the ring.
	active   [rwActive]int
	nActive  int
	crowded  bool
	wakes    int
	calm     bool
	sendBuf  []byte
	sendUsed int
	pending  []rwSend
	inflight int      // pending sends whose completion has not been handled
	deferred []rwDone // completions met while waiting for sends
	stop     bool     // OnTraffic asked for the engine's shutdown
}

// rwDone is a completion: the operation's tag and result.
type rwDone struct {
	tag uint64
	res int32
}

type rwSend struct {
	c          *conn
	start, end int    // its bytes, sendBuf[start:end]
	slot       uint32 // its SQE's index, while not submitted
	submitted  bool
}

func (el *eventloop) openRingWait() {
	if !el.engine.opts.IOBatching || el.engine.opts.EdgeTriggeredIO || len(el.buffer) < rwMaxConns*rwRegion || !netpoll.BusyWaitsEndBySignal() {
		return
	}
	r := &ringWait{el: el, conns: map[int]*rconn{}, reads: map[int]int{}}
	el.rw = r
	el.poller.SetRingWait(r.wait)
	el.poller.SetEpollWoke(r.woke)
}

// open makes the ring, on the loop goroutine's thread, which stays locked
// to it while the ring is open (SINGLE_ISSUER, DEFER_TASKRUN).
func (r *ringWait) open() bool {
	runtime.LockOSThread()
	ring, err := uring.Open(64, uring.SetupCoopTaskrun|uring.SetupSingleIssuer|uring.SetupDeferTaskrun)
	if err != nil {
		runtime.UnlockOSThread()
		return false
	}
	r.ring, r.pollArmed, r.leaving = ring, false, false
	if r.sendBuf == nil {
		r.sendBuf = make([]byte, 64<<10) // only for a loop that uses the ring
	}
	return true
}

func (r *ringWait) closeRing() {
	_ = r.ring.Close()
	r.ring = nil
	runtime.UnlockOSThread()
}

// shut sends what is queued, delivers what has come, and closes the ring
// (which cancels the receives: their bytes stay in the sockets); every
// connection goes back to epoll.
func (r *ringWait) shut() {
	if r.ring == nil {
		return
	}
	r.shutting = true
	defer func() { r.shutting = false }()
	for r.ring.Queued() > 0 || r.inflight > 0 || len(r.deferred) > 0 {
		r.flushSends()
		if r.ring.Queued() > 0 {
			r.enter(0)
		}
		r.reap()
	}
	conns := r.conns
	r.conns = map[int]*rconn{}
	r.regions = [rwMaxConns]bool{}
	r.pending, r.sendUsed, r.inflight, r.deferred = r.pending[:0], 0, 0, nil
	r.closeRing()
	for _, rc := range conns {
		_ = rc.c.pollRead()
	}
}

func (r *ringWait) recv(rc *rconn) {
	b := r.el.buffer[rc.region*rwRegion : (rc.region+1)*rwRegion]
	r.ring.Recv(rc.c.fd, b, 0, uint64(rc.c.fd)<<32|rc.gen&0xffffffff)
}

// read counts a connection's reads while the loop is calm; on its
// rwEnterAfter-th it starts waiting through the ring, if there is room.
func (r *ringWait) read(c *conn) {
	if r == nil || c.readPaused || !c.protoTCP {
		return
	}
	r.note(c.fd)
	// A busy loop stops here: no per-read count where the ring is not
	// used.
	if !r.calm || r.crowded || len(r.conns) >= rwMaxConns {
		return
	}
	n := r.reads[c.fd] + 1
	r.reads[c.fd] = n
	if n < rwEnterAfter || r.conns[c.fd] != nil {
		return
	}
	region := -1
	for i, used := range r.regions {
		if !used {
			region = i
			break
		}
	}
	if region < 0 {
		return
	}
	if r.ring == nil && !r.open() {
		return
	}
	if err := r.el.poller.ModEvents(c.pollAttachment(), false, !c.outboundBuffer.IsEmpty()); err != nil {
		return
	}
	r.gen++
	rc := &rconn{c: c, region: region, gen: r.gen}
	r.regions[region] = true
	r.conns[c.fd] = rc
	r.recv(rc)
}

// holds reports whether the ring reads fd (epoll must not).
func (r *ringWait) holds(fd int) bool { return r != nil && r.conns[fd] != nil }

// forget stops fd's ring wait (cancelling its receive), for a
// connection closing or whose reads are paused: either way epoll is not
// to poll it for reads.
func (r *ringWait) forget(fd int) {
	if r == nil {
		return
	}
	delete(r.reads, fd)
	rc := r.conns[fd]
	if rc == nil {
		return
	}
	delete(r.conns, fd)
	r.regions[rc.region] = false
	r.syncCancel(fd)
	if len(r.conns) == 0 {
		r.leaving = true
	}
}

// syncCancel cancels every request on fd and waits for it.
func (r *ringWait) syncCancel(fd int) {
	if r.ring.Queued() > 0 { // submit what waits first, so it can be cancelled
		r.enter(0)
	}
	r.ring.CancelFD(fd)
}

// queueSend queues a write to c, to be sent with the next wait, and
// reports whether it did. A connection with a send queued already has
// the bytes added to it when they can be; otherwise the sends go out
// first, so that c's bytes keep their order, and the caller writes as
// usual.
func (r *ringWait) queueSend(c *conn, bs ...[]byte) bool {
	if r == nil || r.ring == nil {
		return false
	}
	n := 0
	for _, b := range bs {
		n += len(b)
	}
	for i := range r.pending {
		p := &r.pending[i]
		if p.c != c {
			continue
		}
		if !p.submitted && p.end == r.sendUsed && n <= len(r.sendBuf)-r.sendUsed {
			for _, b := range bs {
				r.sendUsed += copy(r.sendBuf[r.sendUsed:], b)
			}
			p.end = r.sendUsed
			r.ring.SetSendLen(p.slot, p.end-p.start)
			return true
		}
		r.flushSends()
		return false
	}
	if len(r.conns) == 0 || n == 0 || n > len(r.sendBuf)-r.sendUsed || len(r.pending) >= 16 || !c.outboundBuffer.IsEmpty() || !c.opened {
		return false // bytes waiting in the outbound buffer go first
	}
	start := r.sendUsed
	for _, b := range bs {
		r.sendUsed += copy(r.sendBuf[r.sendUsed:], b)
	}
	slot := r.ring.Send(c.fd, r.sendBuf[start:r.sendUsed], unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL, rwSendTag|uint64(len(r.pending)))
	r.pending = append(r.pending, rwSend{c: c, start: start, end: r.sendUsed, slot: slot})
	r.inflight++
	return true
}

// flushSends submits what is queued and handles every send's result;
// other completions met meanwhile wait in deferred for the next reap.
func (r *ringWait) flushSends() {
	for r.inflight > 0 {
		if e := r.enter(1); e != 0 && e != unix.EINTR {
			return
		}
		for tag, res, ok := r.ring.Next(); ok; tag, res, ok = r.ring.Next() {
			if tag != rwPollTag && tag&rwSendTag != 0 {
				r.sent(int(tag&^rwSendTag), res)
			} else {
				r.deferred = append(r.deferred, rwDone{tag, res})
			}
		}
	}
}

// note records a read of fd in the current window; a read of more
// connections than rwActive has the loop leave the ring.
func (r *ringWait) note(fd int) {
	for _, a := range r.active[:r.nActive] {
		if a == fd {
			return
		}
	}
	if r.nActive < rwActive {
		r.active[r.nActive] = fd
		r.nActive++
		return
	}
	if !r.crowded {
		r.crowded = true
		r.calm = false
		r.busy()
	}
}

// woke counts wake-ups; each rwWindow of them starts a new window.
func (r *ringWait) woke(int) {
	r.wakes++
	if r.wakes < rwWindow {
		return
	}
	r.calm = !r.crowded
	r.wakes, r.nActive, r.crowded = 0, 0, false
}

// busy has the next wait give every connection back to epoll.
func (r *ringWait) busy() { r.leaving = r.ring != nil }

func (r *ringWait) enter(wait uint32) unix.Errno {
	for i := range r.pending {
		r.pending[i].submitted = true
	}
	return r.ring.Enter(wait)
}

// wait is the poller's wait while connections wait through the ring.
func (r *ringWait) wait(events []unix.EpollEvent) (int, bool, error) {
	if r.ring == nil {
		return 0, false, nil
	}
	if r.leaving || len(r.conns) == 0 || !r.el.poller.TakeBusySlot() {
		r.shut()
		return r.stopped(false)
	}
	defer r.el.poller.ReleaseBusySlot()
	if !r.pollArmed {
		r.ring.PollAdd(r.el.poller.EpollFD(), unix.POLLIN, rwPollTag)
		r.pollArmed = true
	}
	if e := r.enter(uint32(r.inflight) + 1); e == unix.EINTR {
		// sysmon: idle for 10 ms. Give the connections back to epoll, so
		// the loop can park.
		r.reap()
		r.shut()
		return r.stopped(false)
	}
	got, epoll := r.reap()
	r.woke(got)
	if r.stop {
		return r.stopped(true)
	}
	if epoll {
		n, err := r.el.poller.PollNow(events)
		return n, true, err
	}
	return 0, true, nil
}

// stopped is what wait returns without events: used, or
// ErrEngineShutdown, which ends the loop as on epoll, once OnTraffic has
// asked for it.
func (r *ringWait) stopped(used bool) (int, bool, error) {
	if r.stop {
		r.stop = false
		return 0, true, errorx.ErrEngineShutdown
	}
	return 0, used, nil
}

// reap handles the completions; it reports whether the epoll set is
// readable.
func (r *ringWait) reap() (got int, epoll bool) {
	for {
		var e rwDone
		if len(r.deferred) > 0 {
			e = r.deferred[0]
			r.deferred = r.deferred[1:]
		} else {
			tag, res, ok := r.ring.Next() // freed first: handlers may enter the ring
			if !ok {
				return got, epoll
			}
			e = rwDone{tag, res}
		}
		if e.tag == rwPollTag {
			r.pollArmed = false
			epoll = true
			continue
		}
		if e.tag&rwSendTag != 0 {
			r.sent(int(e.tag&^rwSendTag), e.res)
			continue
		}
		rc := r.conns[int(e.tag>>32)]
		if rc == nil || rc.gen&0xffffffff != e.tag&0xffffffff {
			continue // cancelled, or a connection gone
		}
		got++
		r.note(rc.c.fd)
		r.deliver(rc, e.res)
	}
}

func (r *ringWait) deliver(rc *rconn, res int32) {
	c, el := rc.c, r.el
	if res <= 0 {
		err := error(io.EOF)
		if res < 0 {
			err = os.NewSyscallError("read", unix.Errno(-res))
		}
		_ = el.close(c, err)
		return
	}
	c.bufStart, c.bufEnd = int32(rc.region*rwRegion), int32(rc.region*rwRegion)+res
	switch el.eventHandler.OnTraffic(c) {
	case Close:
		_ = el.close(c, nil)
		return
	case Shutdown:
		r.stop = true
	}
	_, _ = c.inboundBuffer.Write(c.latest())
	c.setLatest(0)
	if r.conns[c.fd] == rc && !r.shutting {
		r.recv(rc)
	}
}

// sent handles a queued send's result: what did not go out waits in the
// outbound buffer, as after a short write.
func (r *ringWait) sent(i int, res int32) {
	if i >= len(r.pending) || r.pending[i].c == nil {
		return
	}
	p := r.pending[i]
	r.pending[i].c = nil
	if r.inflight--; r.inflight == 0 {
		r.pending, r.sendUsed = r.pending[:0], 0
	}
	c := p.c
	if !c.opened || r.el.connections.getConn(c.fd) != c {
		return
	}
	if res < 0 {
		if res != -int32(unix.EAGAIN) {
			_ = r.el.close(c, os.NewSyscallError("write", unix.Errno(-res)))
			return
		}
		res = 0
	}
	if n := p.end - p.start; int(res) < n {
		_, _ = c.outboundBuffer.Write(r.sendBuf[p.start+int(res) : p.end])
		_ = c.pollWrite()
	}
}

// closeRingWait closes the ring once the loop is done polling, after the
// sends it holds went out.
func (el *eventloop) closeRingWait() {
	if r := el.rw; r != nil {
		r.shut()
	}
}
