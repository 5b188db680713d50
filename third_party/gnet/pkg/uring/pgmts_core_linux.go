//go:build linux

package uring

import (
	"os"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	opPollAdd          = 6      // IORING_OP_POLL_ADD
	opSendmsg          = 9      // IORING_OP_SENDMSG
	opSend             = 26     // IORING_OP_SEND
	opRecv             = 27     // IORING_OP_RECV
	enterGetEvents     = 1 << 0 // IORING_ENTER_GETEVENTS
	featSingleMmap     = 1 << 0 // IORING_FEAT_SINGLE_MMAP
	offSQRing          = 0
	offSQEs            = 0x10000000
	registerSyncCancel = 24 // IORING_REGISTER_SYNC_CANCEL
	cancelAll          = 1 << 0
	cancelFD           = 1 << 1
)

// Setup flags for Open (IORING_SETUP_*).
const (
	// SetupCoopTaskrun: the kernel does not interrupt the thread to run
	// completion work.
	SetupCoopTaskrun = 1 << 8
	// SetupSingleIssuer: one thread only submits.
	SetupSingleIssuer = 1 << 12
	// SetupDeferTaskrun: completion work runs only inside Enter with a
	// wait, on the submitting thread (needs SetupSingleIssuer).
	SetupDeferTaskrun = 1 << 13
)

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

// Core is one io_uring's mapped submission and completion queues, with no
// policy: queue operations, Enter, take completions with Next. Ring (the
// batches) and gnet's wait through io_uring both build on it.
// It is not safe for concurrent use.
type Core struct {
	fd             int
	ringMem, sqMem []byte
	sqHead, sqTail *uint32
	sqMask         uint32
	sqes           []sqe
	cqHead, cqTail *uint32
	cqMask         uint32
	cqes           []cqe
	queued         uint32
}

// Open makes a ring of entries submission slots (a power of two) with the
// Setup flags given. It fails where io_uring is missing or not allowed
// (old kernels, kernel.io_uring_disabled, seccomp filters such as
// Docker's default), or does not know a flag.
func Open(entries, flags uint32) (*Core, error) {
	p := params{flags: flags}
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		return nil, os.NewSyscallError("io_uring_setup", errno)
	}
	c := &Core{fd: int(fd)}
	if err := c.mmap(&p); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

func (c *Core) mmap(p *params) (err error) {
	sqSize := int(p.sqOff.x6) + int(p.sqEntries)*4 // the array ends the SQ ring
	cqSize := int(p.cqOff.x5) + int(p.cqEntries)*int(unsafe.Sizeof(cqe{}))
	if p.features&featSingleMmap == 0 {
		return os.NewSyscallError("io_uring_setup", unix.ENOSYS) // before Linux 5.4
	}
	size := sqSize
	if cqSize > size {
		size = cqSize
	}
	if c.ringMem, err = unix.Mmap(c.fd, offSQRing, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		return os.NewSyscallError("mmap", err)
	}
	sqeSize := int(p.sqEntries) * int(unsafe.Sizeof(sqe{}))
	if c.sqMem, err = unix.Mmap(c.fd, offSQEs, sqeSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		return os.NewSyscallError("mmap", err)
	}
	at := func(off uint32) unsafe.Pointer { return unsafe.Pointer(&c.ringMem[off]) }
	c.sqHead, c.sqTail = (*uint32)(at(p.sqOff.head)), (*uint32)(at(p.sqOff.tail))
	c.sqMask = *(*uint32)(at(p.sqOff.ringMask))
	sqArray := unsafe.Slice((*uint32)(at(p.sqOff.x6)), p.sqEntries)
	for i := range sqArray {
		sqArray[i] = uint32(i) // slot i of the ring always names sqe i
	}
	c.sqes = unsafe.Slice((*sqe)(unsafe.Pointer(&c.sqMem[0])), p.sqEntries)
	c.cqHead, c.cqTail = (*uint32)(at(p.cqOff.head)), (*uint32)(at(p.cqOff.tail))
	c.cqMask = *(*uint32)(at(p.cqOff.ringMask))
	c.cqes = unsafe.Slice((*cqe)(at(p.cqOff.x5)), p.cqEntries)
	return nil
}

// Cap is how many operations one Enter submits at most.
func (c *Core) Cap() int { return len(c.sqes) }

// Queued is how many operations wait for Enter.
func (c *Core) Queued() int { return int(c.queued) }

// Recv queues a receive into buf from the socket fd, with the recv(2)
// flags given; tag comes back with its result. buf must stay untouched
// until its completion is taken. The caller keeps Queued below Cap.
func (c *Core) Recv(fd int, buf []byte, flags uint32, tag uint64) {
	c.push(sqe{opcode: opRecv, fd: int32(fd), addr: uint64(uintptr(unsafe.Pointer(&buf[0]))),
		len: uint32(len(buf)), msgFlags: flags, userData: tag})
}

// Send queues a send of buf (not empty) on the socket fd, with the
// send(2) flags given; tag comes back with its result. It returns the
// operation's slot, for SetSendLen. buf must stay untouched until its
// completion is taken. The caller keeps Queued below Cap.
func (c *Core) Send(fd int, buf []byte, flags uint32, tag uint64) (slot uint32) {
	return c.push(sqe{opcode: opSend, fd: int32(fd), addr: uint64(uintptr(unsafe.Pointer(&buf[0]))),
		len: uint32(len(buf)), msgFlags: flags, userData: tag})
}

// SetSendLen sets how many bytes the send queued in slot sends, from the
// same start; it must not have been submitted yet.
func (c *Core) SetSendLen(slot uint32, n int) { c.sqes[slot].len = uint32(n) }

// PollAdd queues a one-shot poll of fd for the poll(2) events given; tag
// comes back with the events. The caller keeps Queued below Cap.
func (c *Core) PollAdd(fd int, events uint32, tag uint64) {
	c.push(sqe{opcode: opPollAdd, fd: int32(fd), msgFlags: events, userData: tag})
}

// sendmsg queues a sendmsg(2) of the message header m.
func (c *Core) sendmsg(fd int, m *unix.Msghdr, flags uint32, tag uint64) {
	c.push(sqe{opcode: opSendmsg, fd: int32(fd), addr: uint64(uintptr(unsafe.Pointer(m))),
		len: 1, msgFlags: flags, userData: tag})
}

// push queues e in the next free slot of the submission ring and returns
// the slot.
func (c *Core) push(e sqe) uint32 {
	slot := (atomic.LoadUint32(c.sqTail) + c.queued) & c.sqMask
	c.sqes[slot] = e
	c.queued++
	return slot
}

// publish hands the queued operations to the kernel's side of the ring
// (the next io_uring_enter submits them); it returns the tail before
// them and their count.
func (c *Core) publish() (tail, n uint32) {
	tail, n = atomic.LoadUint32(c.sqTail), c.queued
	atomic.StoreUint32(c.sqTail, tail+n)
	c.queued = 0
	return tail, n
}

// enter is io_uring_enter. Raw: a non-blocking operation never sleeps,
// and going through the scheduler's system call path would wake a
// sleeping sysmon (see pkg/netpoll/pgmts_wait_linux.go); a caller that
// waits does so holding the poller's busy-wait slot, for the same
// reason.
func (c *Core) enter(toSubmit, minComplete, flags uint32) (uint32, unix.Errno) {
	n, _, errno := unix.RawSyscall6(unix.SYS_IO_URING_ENTER, uintptr(c.fd), uintptr(toSubmit),
		uintptr(minComplete), uintptr(flags), 0, 0)
	return uint32(n), errno
}

// Enter submits what is queued and waits until at least wait completions
// are posted (with SetupDeferTaskrun, the completion work runs in this
// call); it returns the system call's errno (EINTR when a signal cut the
// wait short).
func (c *Core) Enter(wait uint32) unix.Errno {
	_, n := c.publish()
	_, errno := c.enter(n, wait, enterGetEvents)
	return errno
}

// Next takes the next posted completion: its tag and result (bytes, poll
// events, or a negative errno). The slot is freed before it returns, so
// the caller may queue and Enter again before the next Next.
func (c *Core) Next() (tag uint64, res int32, ok bool) {
	head := atomic.LoadUint32(c.cqHead)
	if head == atomic.LoadUint32(c.cqTail) {
		return 0, 0, false
	}
	e := c.cqes[head&c.cqMask]
	atomic.StoreUint32(c.cqHead, head+1)
	return e.userData, e.res, true
}

// CancelFD cancels every operation on fd and waits until they are done
// (IORING_REGISTER_SYNC_CANCEL; Linux 6.0); their completions are
// posted as -ECANCELED, or as their result where they had finished.
// Operations still queued are not: Enter them first.
func (c *Core) CancelFD(fd int) {
	var reg struct { // struct io_uring_sync_cancel_reg
		addr          uint64
		fd            int32
		flags         uint32
		tvSec, tvNsec int64 // no timeout
		opcode        uint8
		pad           [7]uint8
		pad2          [3]uint64
	}
	reg.fd, reg.flags, reg.tvSec, reg.tvNsec = int32(fd), cancelFD|cancelAll, -1, -1
	_, _, _ = unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(c.fd), registerSyncCancel, uintptr(unsafe.Pointer(&reg)), 1, 0, 0)
}

// Close releases the ring; the kernel cancels what is still in flight.
func (c *Core) Close() error {
	if c.sqMem != nil {
		_ = unix.Munmap(c.sqMem)
	}
	if c.ringMem != nil {
		_ = unix.Munmap(c.ringMem)
	}
	return unix.Close(c.fd)
}
