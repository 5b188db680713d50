//go:build linux && !poll_opt

package gnet

// pgmts: a loop with few busy connections waits through io_uring for
// the bytes it expects, instead of epoll_wait then recvfrom.

import (
	"io"
	"os"
	"runtime"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/panjf2000/gnet/v2/pkg/netpoll"
)

const (
	rwOpPollAdd  = 6
	rwOpSend     = 26
	rwSendTag    = 1 << 62
	rwOpRecv     = 27
	rwSetup      = 1<<8 | 1<<12 | 1<<13 // COOP_TASKRUN | SINGLE_ISSUER | DEFER_TASKRUN
	rwMaxConns   = 4
	rwRegion     = 16 << 10
	rwPollTag    = ^uint64(0)
	rwEnterAfter = 64  // reads before a connection may wait through the ring
	rwActive     = 2   // the most connections read in a window for the ring
	rwWindow     = 256 // wake-ups per window
)

type rwParams struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFd uint32
	resv                                                                   [3]uint32
	sqOff                                                                  rwOffs
	cqOff                                                                  rwOffs
}
type rwOffs struct {
	head, tail, ringMask, ringEntries, x4, x5, x6, resv1 uint32
	userAddr                                             uint64
}
type rwSQE struct {
	opcode, flags uint8
	ioprio        uint16
	fd            int32
	off, addr     uint64
	len           uint32
	opFlags       uint32
	userData      uint64
	pad           [3]uint64
}
type rwCQE struct {
	userData uint64
	res      int32
	flags    uint32
}

type rconn struct {
	c      *conn
	region int // el.buffer[region*rwRegion:]
	gen    uint64
}

type ringWait struct {
	el                             *eventloop
	fd                             int // the ring, -1 while closed
	mem, sqesMem                   []byte
	leaving                        bool // shut at the next wait
	shutting                       bool // no receive is posted again
	sqHead, sqTail, cqHead, cqTail *uint32
	sqMask, cqMask                 uint32
	sqes                           []rwSQE
	cqes                           []rwCQE
	queued                         uint32
	conns                          map[int]*rconn
	regions                        [rwMaxConns]bool
	pollArmed                      bool
	gen                            uint64
	reads                          map[int]int
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
	inflight int     // pending sends whose completion has not been handled
	deferred []rwCQE // completions met while waiting for sends
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
	r := &ringWait{el: el, fd: -1, conns: map[int]*rconn{}, reads: map[int]int{}, sendBuf: make([]byte, 64<<10)}
	el.rw = r
	el.poller.SetRingWait(r.wait)
	el.poller.SetEpollWoke(r.woke)
}

// open makes the ring, on the loop goroutine's thread, which stays locked
// to it while the ring is open (SINGLE_ISSUER, DEFER_TASKRUN).
func (r *ringWait) open() bool {
	runtime.LockOSThread()
	p := rwParams{flags: rwSetup}
	fd, _, e := unix.Syscall(unix.SYS_IO_URING_SETUP, 64, uintptr(unsafe.Pointer(&p)), 0)
	if e != 0 {
		runtime.UnlockOSThread()
		return false
	}
	r.fd = int(fd)
	sqSize := int(p.sqOff.x6) + int(p.sqEntries)*4
	cqSize := int(p.cqOff.x5) + int(p.cqEntries)*16
	if cqSize > sqSize {
		sqSize = cqSize
	}
	var err error
	if r.mem, err = unix.Mmap(r.fd, 0, sqSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err == nil {
		r.sqesMem, err = unix.Mmap(r.fd, 0x10000000, int(p.sqEntries)*64, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	}
	if err != nil {
		r.closeRing()
		return false
	}
	mem := r.mem
	u32 := func(off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&mem[off])) }
	r.sqHead, r.sqTail, r.sqMask = u32(p.sqOff.head), u32(p.sqOff.tail), *u32(p.sqOff.ringMask)
	r.cqHead, r.cqTail, r.cqMask = u32(p.cqOff.head), u32(p.cqOff.tail), *u32(p.cqOff.ringMask)
	arr := unsafe.Slice((*uint32)(unsafe.Pointer(&mem[p.sqOff.x6])), p.sqEntries)
	for i := range arr {
		arr[i] = uint32(i)
	}
	r.sqes = unsafe.Slice((*rwSQE)(unsafe.Pointer(&r.sqesMem[0])), p.sqEntries)
	r.cqes = unsafe.Slice((*rwCQE)(unsafe.Pointer(&mem[p.cqOff.x5])), p.cqEntries)
	r.queued, r.pollArmed, r.leaving = 0, false, false
	return true
}

func (r *ringWait) closeRing() {
	if r.mem != nil {
		_ = unix.Munmap(r.mem)
	}
	if r.sqesMem != nil {
		_ = unix.Munmap(r.sqesMem)
	}
	_ = unix.Close(r.fd)
	r.fd, r.mem, r.sqesMem = -1, nil, nil
	runtime.UnlockOSThread()
}

// shut sends what is queued, delivers what has come, and closes the ring
// (which cancels the receives: their bytes stay in the sockets); every
// connection goes back to epoll.
func (r *ringWait) shut() {
	if r.fd < 0 {
		return
	}
	r.shutting = true
	defer func() { r.shutting = false }()
	for r.queued > 0 || r.inflight > 0 || len(r.deferred) > 0 {
		r.flushSends()
		if r.queued > 0 {
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
		_ = r.el.poller.ModEvents(rc.c.pollAttachment(), !rc.c.readPaused, !rc.c.outboundBuffer.IsEmpty())
	}
}

func (r *ringWait) push(e rwSQE) {
	r.sqes[(atomic.LoadUint32(r.sqTail)+r.queued)&r.sqMask] = e
	r.queued++
}

func (r *ringWait) recv(rc *rconn) {
	b := r.el.buffer[rc.region*rwRegion : (rc.region+1)*rwRegion]
	r.push(rwSQE{opcode: rwOpRecv, fd: int32(rc.c.fd), addr: uint64(uintptr(unsafe.Pointer(&b[0]))), len: uint32(len(b)), userData: uint64(rc.c.fd)<<32 | rc.gen&0xffffffff})
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
	if r.fd < 0 && !r.open() {
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

// forget stops c's ring wait (cancelling its receive); back reports
// whether epoll should poll it for reads again.
func (r *ringWait) forget(fd int, back bool) {
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
	if back {
		_ = r.el.poller.ModEvents(rc.c.pollAttachment(), !rc.c.readPaused, !rc.c.outboundBuffer.IsEmpty())
	}
}

// syncCancel cancels every request on fd and waits for it
// (IORING_REGISTER_SYNC_CANCEL, IORING_ASYNC_CANCEL_FD|ALL).
func (r *ringWait) syncCancel(fd int) {
	if r.queued > 0 { // submit what waits first, so it can be cancelled
		r.enter(0)
	}
	var reg struct {
		addr          uint64
		fd            int32
		flags         uint32
		tvSec, tvNsec int64
		opcode        uint8
		pad           [7]uint8
		pad2          [3]uint64
	}
	reg.fd, reg.flags, reg.tvSec, reg.tvNsec = int32(fd), 1<<1|1<<0, -1, -1
	_, _, _ = unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), 24, uintptr(unsafe.Pointer(&reg)), 1, 0, 0)
}

// queueSend queues a write to c, to be sent with the next wait, and
// reports whether it did. A connection with a send queued already has
// the bytes added to it when they can be; otherwise the sends go out
// first, so that c's bytes keep their order, and the caller writes as
// usual.
func (r *ringWait) queueSend(c *conn, bs ...[]byte) bool {
	if r == nil || r.fd < 0 {
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
			r.sqes[p.slot].len = uint32(p.end - p.start)
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
	slot := (atomic.LoadUint32(r.sqTail) + r.queued) & r.sqMask
	r.pending = append(r.pending, rwSend{c: c, start: start, end: r.sendUsed, slot: slot})
	r.inflight++
	r.push(rwSQE{opcode: rwOpSend, fd: int32(c.fd), addr: uint64(uintptr(unsafe.Pointer(&r.sendBuf[start]))), len: uint32(n),
		opFlags: unix.MSG_DONTWAIT | unix.MSG_NOSIGNAL, userData: rwSendTag | uint64(len(r.pending)-1)})
	return true
}

// flushSends submits what is queued and handles every send's result;
// other completions met meanwhile wait in deferred for the next reap.
func (r *ringWait) flushSends() {
	for r.inflight > 0 {
		if e := r.enter(1); e != 0 && e != unix.EINTR {
			return
		}
		for {
			head, tail := atomic.LoadUint32(r.cqHead), atomic.LoadUint32(r.cqTail)
			if head == tail {
				break
			}
			e := r.cqes[head&r.cqMask]
			atomic.StoreUint32(r.cqHead, head+1)
			if e.userData != rwPollTag && e.userData&rwSendTag != 0 {
				r.sent(int(e.userData&^rwSendTag), e.res)
			} else {
				r.deferred = append(r.deferred, e)
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
func (r *ringWait) busy() { r.leaving = r.fd >= 0 }

func (r *ringWait) enter(wait uint32) unix.Errno {
	for i := range r.pending {
		r.pending[i].submitted = true
	}
	n := r.queued
	atomic.StoreUint32(r.sqTail, atomic.LoadUint32(r.sqTail)+n)
	r.queued = 0
	_, _, e := unix.RawSyscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(n), uintptr(wait), 1, 0, 0)
	return e
}

// wait is the poller's wait while connections wait through the ring.
func (r *ringWait) wait(events []unix.EpollEvent) (int, bool, error) {
	if r.fd < 0 {
		return 0, false, nil
	}
	if r.leaving || len(r.conns) == 0 || !r.el.poller.TakeBusySlot() {
		r.shut()
		return 0, false, nil
	}
	defer r.el.poller.ReleaseBusySlot()
	if !r.pollArmed {
		r.push(rwSQE{opcode: rwOpPollAdd, fd: int32(r.el.poller.EpollFD()), opFlags: unix.POLLIN, userData: rwPollTag})
		r.pollArmed = true
	}
	if e := r.enter(uint32(r.inflight) + 1); e == unix.EINTR {
		// sysmon: idle for 10 ms. Give the connections back to epoll, so
		// the loop can park.
		r.reap()
		r.shut()
		return 0, false, nil
	}
	got, epoll := r.reap()
	r.woke(got)
	if epoll {
		n, err := r.el.poller.PollNow(events)
		return n, true, err
	}
	return 0, true, nil
}

// reap handles the completions; it reports whether the epoll set is
// readable.
func (r *ringWait) reap() (got int, epoll bool) {
	for {
		var e rwCQE
		if len(r.deferred) > 0 {
			e = r.deferred[0]
			r.deferred = r.deferred[1:]
		} else {
			head, tail := atomic.LoadUint32(r.cqHead), atomic.LoadUint32(r.cqTail)
			if head == tail {
				return got, epoll
			}
			e = r.cqes[head&r.cqMask]
			atomic.StoreUint32(r.cqHead, head+1) // handlers may enter the ring
		}
		if e.userData == rwPollTag {
			r.pollArmed = false
			epoll = true
			continue
		}
		if e.userData&rwSendTag != 0 {
			r.sent(int(e.userData&^rwSendTag), e.res)
			continue
		}
		rc := r.conns[int(e.userData>>32)]
		if rc == nil || rc.gen&0xffffffff != e.userData&0xffffffff {
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
	action := el.eventHandler.OnTraffic(c)
	if action == Close || action == Shutdown {
		_ = el.close(c, nil)
		return
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
