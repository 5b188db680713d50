//go:build linux && !poll_opt

package gnet

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"

	gio "github.com/panjf2000/gnet/v2/pkg/io"
	"github.com/panjf2000/gnet/v2/pkg/uring"
)

// pgmts: a loop's socket reads and writes of one wake-up, made together
// through an io_uring (pkg/uring): on the VMs pgmts is benchmarked on a
// system call costs over a microsecond before it does any work, and at
// 50 clients a loop reads two sockets and writes two per transaction.
//
//   - Reads: when a wake-up finds two readable connections or more, the
//     loop receives on all of them with one io_uring_enter, into slots
//     of a 64 KiB buffer, before it runs their callbacks; eventloop.read
//     then takes a connection's bytes from its slot instead of reading
//     (and reads on if they filled the slot).
//   - Writes: while a loop handles a wake-up with more than one event, a
//     small write to a connection with nothing pending goes to the
//     connection's outbound buffer and the connection to a list; before
//     the loop waits again, the list is sent with one io_uring_enter, or
//     a plain send when it holds one connection. What a socket could not
//     take stays in the outbound buffer, which is then polled for writes
//     as after a short write (eventloop.write sends the rest).
//
// A wake-up with one event reads and writes as upstream: a lone operation
// through the ring costs more than a plain system call.

// batchedWriteMax is the largest write that waits for the batch: a larger
// one costs more in copying than the system call it saves.
const batchedWriteMax = 16 << 10

// Reads: at most maxBatchedReads per wake-up, each into a slot of
// readBatchBuffer/n bytes.
const (
	readBatchBuffer = 64 << 10
	maxBatchedReads = 32
)

// ioBatch is a loop's batch of reads and writes.
type ioBatch struct {
	el   *eventloop
	ring *uring.Ring

	// Writes.
	on    bool    // this wake-up's writes wait for the batch
	conns []*conn // connections with writes waiting, in order
	sent  func(tag uint64, res int32)

	// Reads made before the wake-up's callbacks, in event order.
	buf    []byte  // readBatchBuffer bytes, in slots of slot bytes
	slot   int     // size of a read's slot
	read   []*conn // the connections read; nil once taken
	got    []int32 // what each read returned: bytes or -errno
	next   int     // the first read not taken yet
	gotten func(tag uint64, res int32)
}

// openBatch starts batching the loop's reads and writes, if asked for and
// io_uring can be used here.
func (el *eventloop) openBatch() {
	if !el.engine.opts.IOBatching || el.engine.opts.EdgeTriggeredIO {
		return
	}
	ring, err := uring.New(256)
	if err != nil {
		el.getLogger().Warnf("event-loop(%d) cannot batch its socket reads and writes (io_uring is not available: %v); "+
			"each is a system call of its own", el.idx, err)
		return
	}
	b := &ioBatch{el: el, ring: ring, buf: make([]byte, readBatchBuffer)}
	b.sent = func(tag uint64, res int32) { el.sent(b.conns[tag], int(res)) }
	b.gotten = func(tag uint64, res int32) { b.got[tag] = res }
	el.batch = b
	el.poller.SetIOBatchHooks(b.start, el.flushWrites)
}

// closeBatch stops batching: once the loop is done polling (closing its
// connections then sends what they hold), or after the ring failed.
func (el *eventloop) closeBatch() {
	if b := el.batch; b != nil {
		el.batch = nil
		el.poller.SetIOBatchHooks(nil, nil)
		_ = b.ring.Close()
	}
}

// start begins a wake-up with more than one event (Polling calls it with
// the events, before any callback): its writes wait for the batch, and
// its readable connections are read now if there are two or more.
func (b *ioBatch) start(events []unix.EpollEvent) {
	b.on = true
	el := b.el
	for i := range events {
		if events[i].Events&unix.EPOLLIN == 0 {
			continue
		}
		if c := el.connections.getConn(int(events[i].Fd)); c != nil && c.opened {
			b.read = append(b.read, c)
			if len(b.read) == maxBatchedReads {
				break // the rest read in their callbacks
			}
		}
	}
	if len(b.read) < 2 {
		b.read = b.read[:0]
		return
	}
	b.slot = len(b.buf) / len(b.read)
	for i, c := range b.read {
		b.got = append(b.got, 0)
		b.ring.Recv(c.fd, b.buf[i*b.slot:(i+1)*b.slot], uint64(i))
	}
	if err := b.ring.Submit(b.gotten); err != nil {
		read := b.read
		el.ringFailed(err)
		if !errors.Is(err, uring.ErrNotRun) {
			// What was read is unknown: these connections are closed.
			for _, c := range read {
				_ = el.close(c, err)
			}
		} // else nothing was read: the callbacks read as usual
	}
}

// take hands over c's read made by start, if there is one: it copies the
// bytes to into and returns their count (or -errno); full reports that
// they filled the slot (more may be waiting).
func (b *ioBatch) take(c *conn, into []byte) (n int, full, ok bool) {
	for j := b.next; j < len(b.read); j++ {
		if b.read[j] != c {
			continue
		}
		b.next = j + 1
		b.read[j] = nil
		n = int(b.got[j])
		if n == -int(unix.ENOTSOCK) {
			return 0, false, false // not a socket: eventloop.read reads it
		}
		if n > 0 {
			copy(into, b.buf[j*b.slot:j*b.slot+n])
		}
		return n, n == b.slot, true
	}
	return 0, false, false
}

// queueWrite puts data in c's outbound buffer for the batch, if this
// wake-up batches writes and c has nothing pending.
func (c *conn) queueWrite(data []byte) bool {
	if !c.joinBatch(len(data)) {
		return false
	}
	_, _ = c.outboundBuffer.Write(data)
	return true
}

// queueWritev is queueWrite for several buffers, n bytes in all.
func (c *conn) queueWritev(bs [][]byte, n int) bool {
	if !c.joinBatch(n) {
		return false
	}
	_, _ = c.outboundBuffer.Writev(bs)
	return true
}

// joinBatch lists c for the batch's sends if a write of n bytes to it
// waits for them.
func (c *conn) joinBatch(n int) bool {
	b := c.loop.batch
	if b == nil || !b.on || n > batchedWriteMax {
		return false
	}
	b.conns = append(b.conns, c)
	return true
}

// flushWrites sends the batch's writes and ends the wake-up's reads
// (Polling calls it before the wait that follows a call of start).
func (el *eventloop) flushWrites() {
	b := el.batch
	b.on = false // writes made from here on go out at once
	if len(b.read) > 0 {
		for i := b.next; i < len(b.read); i++ {
			b.read[i] = nil // bytes of connections closed before their turn
		}
		b.read, b.got, b.next = b.read[:0], b.got[:0], 0
	}
	if len(b.conns) == 0 {
		return
	}
	if len(b.conns) == 1 {
		if c := b.conns[0]; c.opened && !c.outboundBuffer.IsEmpty() {
			el.sendNow(c)
		}
		b.conns[0] = nil
		b.conns = b.conns[:0]
		return
	}
	// A connection closed since its write was queued has sent its buffer
	// on the way (eventloop.close); its slot stays, with no send.
	for first := 0; first < len(b.conns); {
		last := first + b.ring.Cap()
		if last > len(b.conns) {
			last = len(b.conns)
		}
		for i := first; i < last; i++ {
			if c := b.conns[i]; c.opened && !c.outboundBuffer.IsEmpty() {
				iov, _ := c.outboundBuffer.Peek(-1)
				b.ring.Sendmsg(c.fd, iov, uint64(i))
			}
		}
		if err := b.ring.Submit(b.sent); err != nil {
			el.ringFailed(err)
			rest := b.conns[first:]
			if !errors.Is(err, uring.ErrNotRun) {
				// What these sends did is unknown: their connections
				// are closed.
				for _, c := range b.conns[first:last] {
					_ = el.close(c, err)
				}
				rest = b.conns[last:]
			}
			for _, c := range rest {
				if c.opened && !c.outboundBuffer.IsEmpty() {
					el.sendNow(c)
				}
			}
			return
		}
		first = last
	}
	for i := range b.conns { // no references to closed connections
		b.conns[i] = nil
	}
	b.conns = b.conns[:0]
}

// ringFailed turns batching off after the ring failed: later reads and
// writes are plain system calls.
func (el *eventloop) ringFailed(err error) {
	el.getLogger().Errorf("event-loop(%d) stops batching its socket reads and writes: %v", el.idx, err)
	el.closeBatch()
}

// sendNow writes c's outbound buffer with a plain system call.
func (el *eventloop) sendNow(c *conn) {
	iov, _ := c.outboundBuffer.Peek(-1)
	if len(iov) > iovMax {
		iov = iov[:iovMax]
	}
	var n int
	var err error
	if len(iov) == 1 || len(iov[1]) == 0 {
		n, err = gio.Write(c.fd, iov[0])
	} else {
		n, err = gio.Writev(c.fd, iov)
	}
	if errno, ok := err.(unix.Errno); ok {
		n = -int(errno)
	}
	el.sent(c, n)
}

// sent takes what a batched send of c's outbound buffer did: res bytes
// sent, or -errno.
func (el *eventloop) sent(c *conn, res int) {
	if res == -int(unix.ENOTSOCK) { // not a socket: write, not sendmsg
		el.sendNow(c)
		return
	}
	if res < 0 && res != -int(unix.EAGAIN) {
		_ = el.close(c, os.NewSyscallError("write", unix.Errno(-res)))
		return
	}
	if res > 0 {
		_, _ = c.outboundBuffer.Discard(res)
	}
	if !c.outboundBuffer.IsEmpty() {
		// The socket is full: the loop sends the rest once it can.
		if err := c.pollWrite(); err != nil {
			_ = el.close(c, err)
		}
	}
}

// pending reports whether the wake-up read sockets that eventloop.read has
// not taken the bytes of yet (recvBatched then reads instead of recv).
func (b *ioBatch) pending() bool { return b != nil && b.next < len(b.read) }

// recvBatched reads c's socket into the loop's read buffer for
// eventloop.read: the bytes read for it at the start of the wake-up, if
// there are some (full: they filled their slot, so more may be waiting),
// else with recv.
func (el *eventloop) recvBatched(c *conn) (n int, full bool, err error) {
	if n, full, ok := el.batch.take(c, el.buffer); ok {
		if n < 0 {
			return 0, false, unix.Errno(-n)
		}
		return n, full, nil
	}
	n, err = gio.Read(c.fd, el.buffer)
	return n, false, err
}
