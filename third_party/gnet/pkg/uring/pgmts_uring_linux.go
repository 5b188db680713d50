//go:build linux

// Package uring sends and receives on several sockets with one system
// call (pgmts).
//
// On the VMs pgmts is benchmarked on, a system call costs over a
// microsecond before it does any work, and a 100-byte send or receive on
// a loopback TCP socket about 2.8 µs in all. An event loop that sends on k
// sockets in one wake-up makes k such calls; queued on an io_uring and
// submitted with one io_uring_enter, they cost 2.3 µs each for k = 2, 1.7
// for k = 4 and 1.4 for k = 8 (receives alike), and 3.5 for k = 1, so a
// single one stays a plain system call. Only non-blocking operations are
// queued (MSG_DONTWAIT): io_uring then runs each during the io_uring_enter
// and never waits for data or socket space (REQ_F_NOWAIT), so the call
// returns with every completion, and no buffer is used after it.
package uring

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// ErrNotRun is the error Submit wraps when the kernel refused the whole
// batch: none of the operations ran, and the ring holds none of them.
var ErrNotRun = errors.New("io_uring ran none of the operations")

// MaxIov is the most buffers one Sendmsg takes; the rest wait for the next
// send.
const MaxIov = 8

// Ring is an io_uring for sockets: queue sends (Sendmsg) and receives
// (Recv), then Submit.
// It is not safe for concurrent use.
type Ring struct {
	ring *Core
	// One message header and MaxIov buffers per queued send, kept here
	// (not on a stack, which may move) while the kernel reads them.
	msgs    []unix.Msghdr
	iovs    []unix.Iovec
	results []cqe // the completions Submit reaped
}

// New opens a ring for up to entries operations per Submit (a power of
// two), once it has checked that this kernel runs them as Submit needs
// (see neverWaits).
// It fails where io_uring is missing or not allowed (old kernels,
// kernel.io_uring_disabled, seccomp filters such as Docker's default).
func New(entries uint32) (*Ring, error) {
	c, err := Open(entries, 0)
	if err != nil {
		return nil, err
	}
	r := &Ring{ring: c}
	r.msgs = make([]unix.Msghdr, len(c.sqes))
	r.iovs = make([]unix.Iovec, len(c.sqes)*MaxIov)
	r.results = make([]cqe, 0, len(c.cqes))
	if err := r.neverWaits(); err != nil {
		_ = r.Close()
		return nil, err
	}
	return r, nil
}

// neverWaits checks that a receive with no data and a send with no room
// end at once with -EAGAIN, the behaviour Submit relies on (a kernel
// that does not know IORING_OP_RECV, before 5.6, or that would wait for
// the socket, fails it): both are submitted without waiting, and both
// must have completed when the call returns. A socket pair serves, its
// sending side filled first.
func (r *Ring) neverWaits() error {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("socketpair", err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	_ = unix.SetsockoptInt(fds[0], unix.SOL_SOCKET, unix.SO_SNDBUF, 4096)
	chunk := make([]byte, 4096)
	for {
		if _, err := unix.Write(fds[0], chunk); err != nil {
			break // full (EAGAIN)
		}
	}
	r.Recv(fds[0], chunk, 0) // nothing was sent to fds[0]
	r.Sendmsg(fds[0], [][]byte{chunk}, 1)
	_, n := r.ring.publish()
	// Submitted without waiting: what has not completed by the return
	// would have waited.
	if _, errno := r.ring.enter(n, 0, 0); errno != 0 {
		return os.NewSyscallError("io_uring_enter", errno)
	}
	done := r.reap()
	var res [2]int32
	for _, c := range r.results {
		res[c.userData&1] = c.res
	}
	r.results = r.results[:0]
	if done != 2 || res[0] != -int32(unix.EAGAIN) || res[1] != -int32(unix.EAGAIN) {
		return fmt.Errorf("io_uring: a non-blocking receive and send on an idle socket pair gave %d completions (%d, %d), "+
			"not two of -EAGAIN: this kernel's io_uring does not serve here", done, res[0], res[1])
	}
	return nil
}

// Sendmsg queues a non-blocking send of bufs (the first MaxIov that are
// not empty) on the socket fd; tag comes back with its result. The
// buffers must stay untouched until Submit returns. The caller keeps
// Queued below Cap.
func (r *Ring) Sendmsg(fd int, bufs [][]byte, tag uint64) {
	i := r.ring.queued
	iov := r.iovs[i*MaxIov : i*MaxIov : (i+1)*MaxIov]
	for _, b := range bufs {
		if len(b) > 0 && len(iov) < MaxIov {
			iov = append(iov, unix.Iovec{Base: &b[0], Len: uint64(len(b))})
		}
	}
	m := &r.msgs[i]
	*m = unix.Msghdr{}
	if len(iov) > 0 {
		m.Iov = &iov[0]
	}
	m.Iovlen = uint64(len(iov))
	r.ring.sendmsg(fd, m, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL, tag)
}

// Recv queues a non-blocking receive into buf from the socket fd; tag
// comes back with its result. buf must stay untouched until Submit
// returns. The caller keeps Queued below Cap.
func (r *Ring) Recv(fd int, buf []byte, tag uint64) {
	r.ring.Recv(fd, buf, unix.MSG_DONTWAIT, tag)
}

// reap moves the completions the kernel has posted to r.results and
// returns how many there were.
func (r *Ring) reap() uint32 {
	before := len(r.results)
	for tag, res, ok := r.ring.Next(); ok; tag, res, ok = r.ring.Next() {
		r.results = append(r.results, cqe{userData: tag, res: res})
	}
	return uint32(len(r.results) - before)
}

// Submit runs what was queued, with one io_uring_enter (more only if a
// signal interrupts it), and calls done with each operation's tag and
// result: the bytes sent or received (0: the peer closed), or a negative
// errno (-EAGAIN when the socket had no room, or no data). It returns an
// error only if the ring itself failed: one that wraps ErrNotRun if
// nothing ran, else the operations' state is unknown. done must not call
// Submit.
func (r *Ring) Submit(done func(tag uint64, res int32)) error {
	if r.ring.queued == 0 {
		return nil
	}
	tail, n := r.ring.publish()
	toSubmit, waiting := n, n
	for waiting > 0 {
		submitted, errno := r.ring.enter(toSubmit, waiting, enterGetEvents)
		if errno != 0 && errno != unix.EINTR {
			if toSubmit == n && atomic.LoadUint32(r.ring.sqHead) == tail {
				// The kernel took none of them: take them back.
				atomic.StoreUint32(r.ring.sqTail, tail)
				return fmt.Errorf("%w: %v", ErrNotRun, os.NewSyscallError("io_uring_enter", errno))
			}
			return os.NewSyscallError("io_uring_enter", errno)
		}
		if errno == 0 {
			toSubmit -= submitted
		}
		waiting -= r.reap()
	}
	// Drop the references to the sent buffers (a receive's slot holds
	// none: only sends fill a message header and its buffers).
	for i := range r.msgs[:n] {
		if m := &r.msgs[i]; m.Iov != nil {
			iov := r.iovs[i*MaxIov : i*MaxIov+int(m.Iovlen)]
			for j := range iov {
				iov[j] = unix.Iovec{}
			}
			*m = unix.Msghdr{}
		}
	}
	// done runs last, once the ring is ready for new sends; it must not
	// call Submit.
	for _, c := range r.results {
		done(c.userData, c.res)
	}
	r.results = r.results[:0]
	return nil
}

// Cap is how many operations one Submit takes.
func (r *Ring) Cap() int { return r.ring.Cap() }

// Queued is how many operations wait for Submit.
func (r *Ring) Queued() int { return r.ring.Queued() }

// Close releases the ring.
func (r *Ring) Close() error { return r.ring.Close() }
