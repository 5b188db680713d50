//go:build linux && !poll_opt

package netpoll

// pgmts: how an event loop waits for events; see third_party/gnet/PGMTS.md.
//
// A loop that blocks in epoll_wait through the Go scheduler's system call
// path keeps its P in the syscall state. Once that wait passes 10 ms,
// sysmon takes the P; with every P idle, sysmon sleeps deeply; and the next
// system call the loop enters or leaves wakes sysmon, which then polls every
// 20 µs for a millisecond and more. At 20 transactions a second that was
// about a thousand sysmon wake-ups a second, five times PgBouncer's CPU per
// transaction. So a loop waits in two ways:
//
//   - busy: while events keep coming, a raw epoll_wait (no scheduler
//     bookkeeping, the P kept) with no timeout;
//   - parked: once idle, the loop's epoll set joins a gate epoll set
//     registered with the Go runtime's poller, and the loop goroutine parks
//     there like any goroutine waiting on a socket. Its P is free, sysmon
//     may sleep, and the runtime's poller wakes the loop without a system
//     call of the loop's own. The set leaves the gate when the loop wakes,
//     so busy waits never wake the runtime's poller.
//
// What ends an idle busy wait is sysmon: a goroutine that has held its P
// for 10 ms without being rescheduled gets a preemption signal, which
// interrupts epoll_wait (EINTR), and the loop then parks. A loop that is
// not idle yields to the scheduler every 5 ms (Polling), so sysmon leaves
// it alone. A timeout on the busy wait would serve too, but it is not
// free: with a 5 ms one, every wait that slept armed and cancelled a
// kernel timer, about 1.2 µs more CPU per transaction at one client on
// the VMs pgmts is benchmarked on (2 ms: 4-5 µs). With asynchronous
// preemption off (GODEBUG=asyncpreemptoff=1) no signal comes, so busy
// waits keep a parkAfter timeout: otherwise an idle loop would keep its
// P, and a stop-the-world would wait for the loop's next event.

import (
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// parkAfter is how long a loop that found no busy slot waits through the
// scheduler before it parks.
const parkAfter = 5 * time.Millisecond

// busyTimeout is a busy wait's timeout in milliseconds: none (-1), or
// parkAfter with asynchronous preemption off.
var busyTimeout = func() int {
	if asyncPreemptOff(os.Getenv("GODEBUG")) {
		return int(parkAfter / time.Millisecond)
	}
	return -1
}()

// asyncPreemptOff reports whether a GODEBUG value turns asynchronous
// preemption off (the last asyncpreemptoff setting counts, as in the
// runtime).
func asyncPreemptOff(godebug string) bool {
	off := false
	for _, kv := range strings.Split(godebug, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok && k == "asyncpreemptoff" {
			off = v == "1"
		}
	}
	return off
}

// busyWaiters counts the loops in a busy wait. Each holds a P, so they are
// kept below GOMAXPROCS: the rest of the process always has a P. A loop
// that finds no room waits through the scheduler instead.
var busyWaiters atomic.Int32

// gate is the epoll set a parked loop's set joins.
type gate struct {
	fd   int
	file *os.File // registered with the runtime's poller; owns fd
	conn syscall.RawConn
}

func openGate() (*gate, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	// os.NewFile registers a non-blocking descriptor with the runtime's
	// poller. (epoll_wait itself ignores O_NONBLOCK.)
	if err = unix.SetNonblock(fd, true); err != nil {
		_ = unix.Close(fd)
		return nil, os.NewSyscallError("fcntl", err)
	}
	file := os.NewFile(uintptr(fd), "gnet-gate")
	conn, err := file.SyscallConn()
	if err != nil {
		_ = file.Close()
		return nil, err
	}
	return &gate{fd: fd, file: file, conn: conn}, nil
}

// waiter is a poller's waiting state, used only by its loop goroutine.
type waiter struct {
	gate    *gate
	maxBusy int32 // GOMAXPROCS-1, read again after each park
	// The parked poll and its results: a method value made once, since a
	// closure per park would be an allocation per park.
	poll      func(uintptr) bool
	events    []unix.EpollEvent
	n         int
	err       error
	fd        int
	gateEvent unix.EpollEvent
}

func (w *waiter) init(epfd int, g *gate) {
	w.fd, w.gate = epfd, g
	w.gateEvent = unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(epfd)}
	w.maxBusy = int32(runtime.GOMAXPROCS(0) - 1)
	w.poll = w.pollNow
}

func (w *waiter) pollNow(uintptr) bool {
	w.n, w.err = epollWaitRaw(w.fd, w.events, 0)
	return w.n != 0 || w.err != nil
}

// wait returns the next events; parked reports that the loop goroutine
// was parked (and so rescheduled) on the way.
func (w *waiter) wait(events []unix.EpollEvent) (n int, parked bool, err error) {
	if busyWaiters.Add(1) <= w.maxBusy {
		n, err = epollWaitRaw(w.fd, events, busyTimeout)
		busyWaiters.Add(-1)
		if err != unix.EINTR && (n != 0 || err != nil) {
			return n, false, err
		}
		// Interrupted: almost always sysmon preempting a loop idle for
		// 10 ms (any other signal costs a park and a wake-up at most); or
		// timed out.
	} else {
		busyWaiters.Add(-1)
		n, err = unix.EpollWait(w.fd, events, int(parkAfter/time.Millisecond))
		if n != 0 || err != nil {
			return n, false, err
		}
	}
	n, err = w.park(events)
	return n, true, err
}

// park waits on the runtime's poller until the loop's set has events. The
// set is polled once it is in the gate, so an event that came between the
// last wait and joining is not missed; any later one wakes the gate.
func (w *waiter) park(events []unix.EpollEvent) (int, error) {
	if err := epollCtlRaw(w.gate.fd, unix.EPOLL_CTL_ADD, w.fd, &w.gateEvent); err != nil {
		return unix.EpollWait(w.fd, events, -1)
	}
	w.events = events
	rerr := w.gate.conn.Read(w.poll)
	_ = epollCtlRaw(w.gate.fd, unix.EPOLL_CTL_DEL, w.fd, nil)
	w.events = nil
	w.maxBusy = int32(runtime.GOMAXPROCS(0) - 1)
	if rerr != nil {
		// The runtime could not wait on the gate: wait as gnet does.
		return unix.EpollWait(w.fd, events, -1)
	}
	return w.n, w.err
}

// epollWaitRaw is epoll_wait without the scheduler's system call
// bookkeeping (see the top of this file). epoll_pwait with no signal mask
// is epoll_wait on every architecture.
func epollWaitRaw(epfd int, events []unix.EpollEvent, msec int) (int, error) {
	r, e := rawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd),
		uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), uintptr(msec), 0, 0)
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

// epollCtlRaw is epoll_ctl, which never blocks, without the scheduler's
// bookkeeping: entering a system call the scheduler's way wakes a
// deeply sleeping sysmon.
func epollCtlRaw(epfd, op, fd int, event *unix.EpollEvent) error {
	_, e := rawSyscall6(unix.SYS_EPOLL_CTL, uintptr(epfd), uintptr(op), uintptr(fd),
		uintptr(unsafe.Pointer(event)), 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// BusyWaitsEndBySignal (pgmts) reports whether an idle busy wait ends by
// sysmon's preemption signal (asynchronous preemption on), not a timeout.
func BusyWaitsEndBySignal() bool { return busyTimeout < 0 }

// TakeBusySlot (pgmts) takes one of the busy-wait slots for a wait of the
// loop's own that keeps its P; false when none is free.
func (p *Poller) TakeBusySlot() bool {
	if busyWaiters.Add(1) <= p.waiter.maxBusy {
		return true
	}
	busyWaiters.Add(-1)
	return false
}

// ReleaseBusySlot (pgmts) gives back a slot TakeBusySlot took.
func (p *Poller) ReleaseBusySlot() { busyWaiters.Add(-1) }
