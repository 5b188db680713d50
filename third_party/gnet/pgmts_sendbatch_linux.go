//go:build linux && !poll_opt

package gnet

import (
	"os"

	"golang.org/x/sys/unix"

	gio "github.com/panjf2000/gnet/v2/pkg/io"
	"github.com/panjf2000/gnet/v2/pkg/uring"
)

// pgmts: a loop's writes of one wake-up, sent together. While a loop
// handles a wake-up with more than one event, a small write to a
// connection with nothing pending goes to the connection's outbound
// buffer and the connection to a list; before the loop waits again, the
// list is sent with one io_uring_enter (pkg/uring), or a plain write when
// it holds one connection. What a socket could not take stays in the
// outbound buffer, which is then polled for writes as after a short write
// (eventloop.write sends the rest). A wake-up with one event writes at
// once, as upstream: there is nothing to send with.

// batchedWriteMax is the largest write that waits for the batch: a larger
// one costs more in copying than the system call it saves.
const batchedWriteMax = 16 << 10

// sendBatch is a loop's batch of writes.
type sendBatch struct {
	ring  *uring.Ring
	on    bool    // this wake-up's writes wait for the batch
	conns []*conn // connections with writes waiting, in order
	done  func(tag uint64, res int32)
}

// openSends starts batching the loop's writes, if asked for and io_uring
// can be used here.
func (el *eventloop) openSends() {
	if !el.engine.opts.SendBatching || el.engine.opts.EdgeTriggeredIO {
		return
	}
	ring, err := uring.New(256)
	if err != nil {
		el.getLogger().Warnf("event-loop(%d) cannot batch its writes (io_uring is not available: %v); each is sent on its own", el.idx, err)
		return
	}
	b := &sendBatch{ring: ring}
	b.done = func(tag uint64, res int32) { el.sent(b.conns[tag], int(res)) }
	el.sends = b
	el.poller.SetSendHooks(b.start, el.flushSends)
}

// closeSends stops batching (the loop is done polling; closing its
// connections sends what they hold).
func (el *eventloop) closeSends() {
	if b := el.sends; b != nil {
		el.sends = nil
		el.poller.SetSendHooks(nil, nil)
		_ = b.ring.Close()
	}
}

func (b *sendBatch) start(events int) { b.on = events > 1 }

// queueWrite puts data in c's outbound buffer for the batch, if this
// wake-up batches writes and c has nothing pending.
func (c *conn) queueWrite(data []byte) bool {
	b := c.loop.sends
	if b == nil || !b.on || len(data) > batchedWriteMax {
		return false
	}
	_, _ = c.outboundBuffer.Write(data)
	b.conns = append(b.conns, c)
	return true
}

// queueWritev is queueWrite for several buffers.
func (c *conn) queueWritev(bs [][]byte, n int) bool {
	b := c.loop.sends
	if b == nil || !b.on || n > batchedWriteMax {
		return false
	}
	_, _ = c.outboundBuffer.Writev(bs)
	b.conns = append(b.conns, c)
	return true
}

// flushSends sends the batch's writes (Polling calls it before each wait).
func (el *eventloop) flushSends() {
	b := el.sends
	b.on = false // writes made from here on go out at once
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
		if err := b.ring.Submit(b.done); err != nil {
			// The ring failed: nothing is known of these sends, so
			// their connections are closed, and later writes go out at
			// once.
			el.getLogger().Errorf("event-loop(%d) stops batching writes: %v", el.idx, err)
			for _, c := range b.conns[first:last] {
				_ = el.close(c, err)
			}
			el.closeSends()
			for _, c := range b.conns[last:] {
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
