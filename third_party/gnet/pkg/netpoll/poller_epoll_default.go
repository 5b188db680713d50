// Copyright (c) 2019 Andy Pan
// Copyright (c) 2017 Joshua J Baker
//
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
//     http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing, software
// distributed under the License is distributed on an "AS IS" BASIS,
// WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
// See the License for the specific language governing permissions and
// limitations under the License.

//go:build linux && !poll_opt

package netpoll

import (
	"errors"
	"os"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	errorx "github.com/panjf2000/gnet/v2/pkg/errors"
	"github.com/panjf2000/gnet/v2/pkg/logging"
	"github.com/panjf2000/gnet/v2/pkg/queue"
)

// yieldEvery keeps a busy loop goroutine rescheduled well inside sysmon's
// 10 ms forced-preemption window (pgmts).
const yieldEvery = 5 * time.Millisecond

// goyield is runtime.goyield (pgmts): like runtime.Gosched, it lets the
// scheduler run (which is what sysmon looks for), but it puts the loop
// goroutine on its own P's run queue and wakes no idle thread, where
// Gosched's wakep woke one that often took the loop over: two futex calls
// and a thread switch every yield. The runtime keeps this linkname for
// outside users (go.dev/issue/67401).
//
//go:linkname goyield runtime.goyield
func goyield()

// Poller represents a poller which is in charge of monitoring file-descriptors.
type Poller struct {
	fd                          int    // epoll fd
	efd                         int    // eventfd
	efdBuf                      []byte // efd buffer to read an 8-byte integer
	wakeupCall                  int32
	asyncTaskQueue              queue.AsyncTaskQueue // queue with low priority
	urgentAsyncTaskQueue        queue.AsyncTaskQueue // queue with high priority
	highPriorityEventsThreshold int32                // threshold of high-priority events

	// pgmts: see SetBatchHooks.
	clock      func() int64
	onBatch    func(events int, now int64)
	onBatchEnd func()
	// pgmts: see SetIOBatchHooks.
	batchStart func(events []unix.EpollEvent)
	batchFlush func()

	waiter waiter // pgmts: see pgmts_wait_linux.go

	// ringWait (pgmts) waits instead of waiter when it reports used.
	ringWait func(events []unix.EpollEvent) (n int, used bool, err error)
	// epollWoke (pgmts) is told how many events each epoll wait brought.
	epollWoke func(n int)
}

// SetEpollWoke (pgmts) sets epollWoke.
func (p *Poller) SetEpollWoke(f func(n int)) { p.epollWoke = f }

// SetRingWait (pgmts) sets a wait that replaces the epoll wait while
// it reports used.
func (p *Poller) SetRingWait(w func(events []unix.EpollEvent) (int, bool, error)) { p.ringWait = w }

// EpollFD (pgmts) is the poller's epoll descriptor.
func (p *Poller) EpollFD() int { return p.fd }

// PollNow (pgmts) polls the epoll set without waiting.
func (p *Poller) PollNow(events []unix.EpollEvent) (int, error) { return epollWaitRaw(p.fd, events, 0) }

// SetIOBatchHooks (pgmts) has Polling call start with the events of each
// epoll_wait that returned more than one, before anything else handles
// them, and flush before the wait that follows: a wake-up's socket reads
// and writes may be made together (see gnet's pgmts_iobatch_linux.go). A
// wake-up with one event has nothing to batch and calls neither. Call it
// before Polling.
func (p *Poller) SetIOBatchHooks(start func(events []unix.EpollEvent), flush func()) {
	p.batchStart, p.batchFlush = start, flush
}

// SetBatchHooks (pgmts) has Polling read clock (monotonic nanoseconds)
// once per wake-up, for its own timing and for onBatch, which it calls
// with the number of events each epoll_wait returned and that reading,
// before handling them; and onBatchEnd after the last one's callback,
// before the queued tasks run. Call it before Polling.
func (p *Poller) SetBatchHooks(clock func() int64, onBatch func(events int, now int64), onBatchEnd func()) {
	p.clock, p.onBatch, p.onBatchEnd = clock, onBatch, onBatchEnd
}

// OpenPoller instantiates a poller.
func OpenPoller() (poller *Poller, err error) {
	poller = new(Poller)
	if poller.fd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		poller = nil
		err = os.NewSyscallError("epoll_create1", err)
		return
	}
	if poller.efd, err = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC); err != nil {
		_ = poller.Close()
		poller = nil
		err = os.NewSyscallError("eventfd", err)
		return
	}
	poller.efdBuf = make([]byte, 8)
	gate, err := openGate()
	if err != nil {
		_ = poller.Close()
		poller = nil
		return
	}
	poller.waiter.init(poller.fd, gate)
	if err = poller.AddRead(&PollAttachment{FD: poller.efd}, true); err != nil {
		_ = poller.Close()
		poller = nil
		return
	}
	poller.asyncTaskQueue = queue.NewLockFreeQueue()
	poller.urgentAsyncTaskQueue = queue.NewLockFreeQueue()
	poller.highPriorityEventsThreshold = MaxPollEventsCap
	return
}

// Close closes the poller.
func (p *Poller) Close() error {
	if p.waiter.gate != nil {
		_ = p.waiter.gate.file.Close()
	}
	_ = unix.Close(p.efd)
	return os.NewSyscallError("close", unix.Close(p.fd))
}

// Make the endianness of bytes compatible with more linux OSs under different processor-architectures,
// according to http://man7.org/linux/man-pages/man2/eventfd.2.html.
var (
	u uint64 = 1
	b        = (*(*[8]byte)(unsafe.Pointer(&u)))[:]
)

// Trigger enqueues task and wakes up the poller to process pending tasks.
// By default, any incoming task will enqueued into urgentAsyncTaskQueue
// before the threshold of high-priority events is reached. When it happens,
// any asks other than high-priority tasks will be shunted to asyncTaskQueue.
//
// Note that asyncTaskQueue is a queue of low-priority whose size may grow large and tasks in it may backlog.
func (p *Poller) Trigger(priority queue.EventPriority, fn queue.Func, param any) (err error) {
	task := queue.GetTask()
	task.Exec, task.Param = fn, param
	if priority > queue.HighPriority && p.urgentAsyncTaskQueue.Length() >= p.highPriorityEventsThreshold {
		p.asyncTaskQueue.Enqueue(task)
	} else {
		// There might be some low-priority tasks overflowing into urgentAsyncTaskQueue in a flash,
		// but that's tolerable because it ought to be a rare case.
		p.urgentAsyncTaskQueue.Enqueue(task)
	}
	if atomic.CompareAndSwapInt32(&p.wakeupCall, 0, 1) {
		for {
			_, err = unix.Write(p.efd, b)
			if err == unix.EAGAIN {
				_, _ = unix.Read(p.efd, p.efdBuf)
				continue
			}
			break
		}
	}
	return os.NewSyscallError("write", err)
}

// Polling blocks the current goroutine, monitoring the registered file descriptors and waiting for network I/O.
// When I/O occurs on any of the file descriptors, the provided callback function is invoked.
func (p *Poller) Polling(callback PollEventHandler) error {
	el := newEventList(InitPollEventsCap)
	var doChores bool

	clock := p.clock
	if clock == nil {
		start := time.Now()
		clock = func() int64 { return int64(time.Since(start)) } // monotonic only
	}
	yielded := clock()
	batched := false // pgmts: the last wake-up called batchStart
	for {
		if batched && p.batchFlush != nil {
			p.batchFlush() // pgmts: the last wake-up's batched writes
		}
		batched = false
		// pgmts: a wait that parks the loop goroutine once idle
		// (pgmts_wait_linux.go), and a yield to the Go scheduler every
		// yieldEvery instead of on every empty poll; see
		// third_party/gnet/PGMTS.md.
		var (
			n      int
			parked bool
			err    error
			used   bool
		)
		if p.ringWait != nil {
			if n, used, err = p.ringWait(el.events); err != nil && errors.Is(err, errorx.ErrEngineShutdown) {
				return err // a Shutdown from OnTraffic
			}
		}
		if !used {
			n, parked, err = p.waiter.wait(el.events)
			if p.epollWoke != nil {
				p.epollWoke(n)
			}
		}
		now := clock()
		if parked {
			yielded = now
		} else if time.Duration(now-yielded) >= yieldEvery {
			yielded = now
			goyield()
		}
		if n == 0 || (n < 0 && err == unix.EINTR) {
			continue
		} else if err != nil {
			logging.Errorf("error occurs in epoll: %v", os.NewSyscallError("epoll_wait", err))
			return err
		}

		if p.batchStart != nil && n > 1 {
			p.batchStart(el.events[:n])
			batched = true
		}
		if p.onBatch != nil {
			p.onBatch(n, now)
		}
		for i := 0; i < n; i++ {
			ev := &el.events[i]
			if fd := int(ev.Fd); fd == p.efd { // poller is awakened to run tasks in queues.
				doChores = true
			} else {
				err = callback(fd, ev.Events, 0)
				// pgmts: err != nil first, for two calls less per event.
				if err != nil && (errors.Is(err, errorx.ErrAcceptSocket) || errors.Is(err, errorx.ErrEngineShutdown)) {
					return err
				}
			}
		}

		if p.onBatchEnd != nil {
			p.onBatchEnd()
		}

		if doChores {
			doChores = false
			task := p.urgentAsyncTaskQueue.Dequeue()
			for ; task != nil; task = p.urgentAsyncTaskQueue.Dequeue() {
				err = task.Exec(task.Param)
				if errors.Is(err, errorx.ErrEngineShutdown) {
					return err
				}
				queue.PutTask(task)
			}
			for i := 0; i < MaxAsyncTasksAtOneTime; i++ {
				if task = p.asyncTaskQueue.Dequeue(); task == nil {
					break
				}
				err = task.Exec(task.Param)
				if errors.Is(err, errorx.ErrEngineShutdown) {
					return err
				}
				queue.PutTask(task)
			}
			atomic.StoreInt32(&p.wakeupCall, 0)
			if (!p.asyncTaskQueue.IsEmpty() || !p.urgentAsyncTaskQueue.IsEmpty()) && atomic.CompareAndSwapInt32(&p.wakeupCall, 0, 1) {
				for {
					_, err = unix.Write(p.efd, b)
					if err == unix.EAGAIN {
						_, _ = unix.Read(p.efd, p.efdBuf)
						continue
					}
					if err != nil {
						logging.Errorf("failed to notify next round of event-loop for leftover tasks, %v", os.NewSyscallError("write", err))
					}
					break
				}
			}
		}

		if n == el.size {
			el.expand()
		} else if n < el.size>>1 {
			el.shrink()
		}
	}
}

// AddReadWrite registers the given file descriptor with readable and writable events to the poller.
func (p *Poller) AddReadWrite(pa *PollAttachment, edgeTriggered bool) error {
	var ev uint32 = ReadWriteEvents
	if edgeTriggered {
		ev |= unix.EPOLLET | unix.EPOLLRDHUP
	}
	return os.NewSyscallError("epoll_ctl add",
		epollCtlRaw(p.fd, unix.EPOLL_CTL_ADD, pa.FD, &unix.EpollEvent{Fd: int32(pa.FD), Events: ev}))
}

// AddRead registers the given file descriptor with readable event to the poller.
func (p *Poller) AddRead(pa *PollAttachment, edgeTriggered bool) error {
	var ev uint32 = ReadEvents
	if edgeTriggered {
		ev |= unix.EPOLLET | unix.EPOLLRDHUP
	}
	return os.NewSyscallError("epoll_ctl add",
		epollCtlRaw(p.fd, unix.EPOLL_CTL_ADD, pa.FD, &unix.EpollEvent{Fd: int32(pa.FD), Events: ev}))
}

// AddWrite registers the given file descriptor with writable event to the poller.
func (p *Poller) AddWrite(pa *PollAttachment, edgeTriggered bool) error {
	var ev uint32 = WriteEvents
	if edgeTriggered {
		ev |= unix.EPOLLET | unix.EPOLLRDHUP
	}
	return os.NewSyscallError("epoll_ctl add",
		epollCtlRaw(p.fd, unix.EPOLL_CTL_ADD, pa.FD, &unix.EpollEvent{Fd: int32(pa.FD), Events: ev}))
}

// ModRead modifies the given file descriptor with readable event in the poller.
func (p *Poller) ModRead(pa *PollAttachment, edgeTriggered bool) error {
	var ev uint32 = ReadEvents
	if edgeTriggered {
		ev |= unix.EPOLLET | unix.EPOLLRDHUP
	}
	return os.NewSyscallError("epoll_ctl mod",
		epollCtlRaw(p.fd, unix.EPOLL_CTL_MOD, pa.FD, &unix.EpollEvent{Fd: int32(pa.FD), Events: ev}))
}

// ModReadWrite modifies the given file descriptor with readable and writable events in the poller.
func (p *Poller) ModReadWrite(pa *PollAttachment, edgeTriggered bool) error {
	var ev uint32 = ReadWriteEvents
	if edgeTriggered {
		ev |= unix.EPOLLET | unix.EPOLLRDHUP
	}
	return os.NewSyscallError("epoll_ctl mod",
		epollCtlRaw(p.fd, unix.EPOLL_CTL_MOD, pa.FD, &unix.EpollEvent{Fd: int32(pa.FD), Events: ev}))
}

// ModEvents sets what a level-triggered file descriptor is polled for
// (pgmts: a connection whose reads are paused is polled for writes only,
// or for nothing but errors and hang-ups).
func (p *Poller) ModEvents(pa *PollAttachment, read, write bool) error {
	var ev uint32
	if read {
		ev |= ReadEvents
	}
	if write {
		ev |= WriteEvents
	}
	return os.NewSyscallError("epoll_ctl mod",
		epollCtlRaw(p.fd, unix.EPOLL_CTL_MOD, pa.FD, &unix.EpollEvent{Fd: int32(pa.FD), Events: ev}))
}

// Delete removes the given file descriptor from the poller.
func (p *Poller) Delete(fd int) error {
	return os.NewSyscallError("epoll_ctl del", epollCtlRaw(p.fd, unix.EPOLL_CTL_DEL, fd, nil))
}
