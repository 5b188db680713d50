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
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	opSendmsg      = 9      // IORING_OP_SENDMSG
	opRecv         = 27     // IORING_OP_RECV
	enterGetEvents = 1 << 0 // IORING_ENTER_GETEVENTS
	featSingleMmap = 1 << 0 // IORING_FEAT_SINGLE_MMAP
	offSQRing      = 0
	offCQRing      = 0x8000000
	offSQEs        = 0x10000000
)

// ErrNotRun is the error Submit wraps when the kernel refused the whole
// batch: none of the operations ran, and the ring holds none of them.
var ErrNotRun = errors.New("io_uring ran none of the operations")

// MaxIov is the most buffers one Sendmsg takes; the rest wait for the next
// send.
const MaxIov = 8

// params is struct io_uring_params.
type params struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFd uint32
	resv                                                                   [3]uint32
	sqOff                                                                  ringOffsets
	cqOff                                                                  ringOffsets
}

// ringOffsets is struct io_sqring_offsets (head, tail, ring_mask,
// ring_entries, flags, dropped, array) or io_cqring_offsets (head, tail,
// ring_mask, ring_entries, overflow, cqes, flags): the same layout.
type ringOffsets struct {
	head, tail, ringMask, ringEntries, x4, x5, x6, resv1 uint32
	userAddr                                             uint64
}

// sqe is struct io_uring_sqe (64 bytes).
type sqe struct {
	opcode      uint8
	flags       uint8
	ioprio      uint16
	fd          int32
	off         uint64
	addr        uint64
	len         uint32
	msgFlags    uint32
	userData    uint64
	bufIndex    uint16
	personality uint16
	spliceFdIn  int32
	addr3       uint64
	pad         uint64
}

// cqe is struct io_uring_cqe.
type cqe struct {
	userData uint64
	res      int32
	flags    uint32
}

// Ring is an io_uring for sockets: queue sends (Sendmsg) and receives
// (Recv), then Submit.
// It is not safe for concurrent use.
type Ring struct {
	fd             int
	ringMem, sqMem []byte
	sqHead, sqTail *uint32
	sqMask         uint32
	sqArray        []uint32
	sqes           []sqe
	cqHead, cqTail *uint32
	cqMask         uint32
	cqes           []cqe
	// One message header and MaxIov buffers per queued send, kept here
	// (not on a stack, which may move) while the kernel reads them.
	msgs    []unix.Msghdr
	iovs    []unix.Iovec
	queued  uint32
	results []cqe // the completions Submit reaped
}

// New opens a ring for up to entries operations per Submit (a power of
// two), once it has checked that this kernel runs them as Submit needs
// (see neverWaits).
// It fails where io_uring is missing or not allowed (old kernels,
// kernel.io_uring_disabled, seccomp filters such as Docker's default).
func New(entries uint32) (*Ring, error) {
	var p params
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		return nil, os.NewSyscallError("io_uring_setup", errno)
	}
	r := &Ring{fd: int(fd)}
	if err := r.mmap(&p); err != nil {
		_ = r.Close()
		return nil, err
	}
	r.msgs = make([]unix.Msghdr, p.sqEntries)
	r.iovs = make([]unix.Iovec, p.sqEntries*MaxIov)
	r.results = make([]cqe, 0, p.cqEntries)
	for i := range r.sqArray {
		r.sqArray[i] = uint32(i) // slot i of the ring always names sqe i
	}
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
	_, n := r.publish()
	// Submitted without waiting: what has not completed by the return
	// would have waited.
	_, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(n), 0, 0, 0, 0)
	if errno != 0 {
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

func (r *Ring) mmap(p *params) (err error) {
	sqSize := int(p.sqOff.x6) + int(p.sqEntries)*4 // the array ends the SQ ring
	cqSize := int(p.cqOff.x5) + int(p.cqEntries)*int(unsafe.Sizeof(cqe{}))
	if p.features&featSingleMmap == 0 {
		return os.NewSyscallError("io_uring_setup", unix.ENOSYS) // before Linux 5.4
	}
	size := sqSize
	if cqSize > size {
		size = cqSize
	}
	if r.ringMem, err = unix.Mmap(r.fd, offSQRing, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		return os.NewSyscallError("mmap", err)
	}
	sqeSize := int(p.sqEntries) * int(unsafe.Sizeof(sqe{}))
	if r.sqMem, err = unix.Mmap(r.fd, offSQEs, sqeSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		return os.NewSyscallError("mmap", err)
	}
	at := func(off uint32) unsafe.Pointer { return unsafe.Pointer(&r.ringMem[off]) }
	r.sqHead, r.sqTail = (*uint32)(at(p.sqOff.head)), (*uint32)(at(p.sqOff.tail))
	r.sqMask = *(*uint32)(at(p.sqOff.ringMask))
	r.sqArray = unsafe.Slice((*uint32)(at(p.sqOff.x6)), p.sqEntries)
	r.sqes = unsafe.Slice((*sqe)(unsafe.Pointer(&r.sqMem[0])), p.sqEntries)
	r.cqHead, r.cqTail = (*uint32)(at(p.cqOff.head)), (*uint32)(at(p.cqOff.tail))
	r.cqMask = *(*uint32)(at(p.cqOff.ringMask))
	r.cqes = unsafe.Slice((*cqe)(at(p.cqOff.x5)), p.cqEntries)
	return nil
}

// Cap is how many operations one Submit takes.
func (r *Ring) Cap() int { return len(r.sqes) }

// Queued is how many operations wait for Submit.
func (r *Ring) Queued() int { return int(r.queued) }

// Sendmsg queues a non-blocking send of bufs (the first MaxIov that are
// not empty) on the socket fd; tag comes back with its result. The
// buffers must stay untouched until Submit returns. The caller keeps
// Queued below Cap.
func (r *Ring) Sendmsg(fd int, bufs [][]byte, tag uint64) {
	i := r.queued
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
	r.push(sqe{opcode: opSendmsg, fd: int32(fd), addr: uint64(uintptr(unsafe.Pointer(m))),
		len: 1, msgFlags: unix.MSG_DONTWAIT | unix.MSG_NOSIGNAL, userData: tag})
}

// Recv queues a non-blocking receive into buf from the socket fd; tag
// comes back with its result. buf must stay untouched until Submit
// returns. The caller keeps Queued below Cap.
func (r *Ring) Recv(fd int, buf []byte, tag uint64) {
	r.push(sqe{opcode: opRecv, fd: int32(fd), addr: uint64(uintptr(unsafe.Pointer(&buf[0]))),
		len: uint32(len(buf)), msgFlags: unix.MSG_DONTWAIT, userData: tag})
}

// push queues e in the next free slot of the submission ring.
func (r *Ring) push(e sqe) {
	r.sqes[(atomic.LoadUint32(r.sqTail)+r.queued)&r.sqMask] = e
	r.queued++
}

// publish hands the queued operations to the kernel's side of the ring
// (the next io_uring_enter submits them); it returns the tail before
// them and their count.
func (r *Ring) publish() (tail, n uint32) {
	tail, n = atomic.LoadUint32(r.sqTail), r.queued
	atomic.StoreUint32(r.sqTail, tail+n)
	r.queued = 0
	return tail, n
}

// reap moves the completions the kernel has posted to r.results and
// returns how many there were.
func (r *Ring) reap() uint32 {
	head, tail := atomic.LoadUint32(r.cqHead), atomic.LoadUint32(r.cqTail)
	for i := head; i != tail; i++ {
		r.results = append(r.results, r.cqes[i&r.cqMask])
	}
	atomic.StoreUint32(r.cqHead, tail)
	return tail - head
}

// Submit runs what was queued, with one io_uring_enter (more only if a
// signal interrupts it), and calls done with each operation's tag and
// result: the bytes sent or received (0: the peer closed), or a negative
// errno (-EAGAIN when the socket had no room, or no data). It returns an
// error only if the ring itself failed: one that wraps ErrNotRun if
// nothing ran, else the operations' state is unknown. done must not call
// Submit.
func (r *Ring) Submit(done func(tag uint64, res int32)) error {
	if r.queued == 0 {
		return nil
	}
	tail, n := r.publish()
	toSubmit, waiting := n, n
	for waiting > 0 {
		// Raw: a non-blocking send never sleeps, and going through the
		// scheduler's system call path would wake a sleeping sysmon
		// (see pkg/netpoll/pgmts_wait_linux.go).
		submitted, _, errno := unix.RawSyscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(toSubmit),
			uintptr(waiting), enterGetEvents, 0, 0)
		if errno != 0 && errno != unix.EINTR {
			if toSubmit == n && atomic.LoadUint32(r.sqHead) == tail {
				// The kernel took none of them: take them back.
				atomic.StoreUint32(r.sqTail, tail)
				return fmt.Errorf("%w: %v", ErrNotRun, os.NewSyscallError("io_uring_enter", errno))
			}
			return os.NewSyscallError("io_uring_enter", errno)
		}
		if errno == 0 {
			toSubmit -= uint32(submitted)
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

// Close releases the ring.
func (r *Ring) Close() error {
	if r.sqMem != nil {
		_ = unix.Munmap(r.sqMem)
	}
	if r.ringMem != nil {
		_ = unix.Munmap(r.ringMem)
	}
	return unix.Close(r.fd)
}
