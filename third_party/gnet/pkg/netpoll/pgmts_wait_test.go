//go:build linux && !poll_opt

package netpoll

import (
	"errors"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	errorx "github.com/panjf2000/gnet/v2/pkg/errors"
	"github.com/panjf2000/gnet/v2/pkg/queue"
)

// pgmts: a loop wakes for every event whether it is in a busy wait or
// parked on the runtime's poller, including events that come while it
// moves from one to the other, and for tasks triggered from other
// goroutines.
func TestWaitWakesBusyAndParked(t *testing.T) {
	for _, procs := range []int{runtime.GOMAXPROCS(0), 1} {
		t.Run(map[bool]string{true: "no busy slot", false: "busy slot"}[procs == 1], func(t *testing.T) {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
			testWaitWakes(t)
		})
	}
}

func testWaitWakes(t *testing.T) {
	p, err := OpenPoller()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	if err := p.AddRead(&PollAttachment{FD: fds[0]}, false); err != nil {
		t.Fatal(err)
	}

	got := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 16)
		done <- p.Polling(func(fd int, _ IOEvent, _ IOFlags) error {
			if _, err := unix.Read(fd, buf); err != nil {
				return err
			}
			got <- struct{}{}
			return nil
		})
	}()

	// Pauses around parkAfter (a wait through the scheduler times out and
	// parks) and past sysmon's 10 ms (it interrupts a busy wait, which
	// parks): events land in a wait, right as it ends, and on a parked loop.
	pauses := []time.Duration{0, time.Millisecond, parkAfter - time.Millisecond, parkAfter,
		parkAfter + time.Millisecond, 3 * parkAfter, 25 * time.Millisecond}
	for i := 0; i < 120; i++ {
		time.Sleep(pauses[i%len(pauses)])
		if _, err := unix.Write(fds[1], []byte("x")); err != nil {
			t.Fatal(err)
		}
		select {
		case <-got:
		case err := <-done:
			t.Fatalf("Polling returned: %v", err)
		case <-time.After(5 * time.Second):
			t.Fatalf("event %d (after a %v pause) did not wake the loop", i, pauses[i%len(pauses)])
		}
	}

	// Idle, the loop goroutine ends up waiting on the runtime's poller: a
	// busy wait once sysmon interrupts it, 10 to 20 ms in (given time here
	// for a slow, raced run).
	var stacks string
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(parkAfter) {
		if stacks = allStacks(); strings.Contains(stacks, "[IO wait]:\n") && strings.Contains(stacks, "(*waiter).park") {
			break
		}
	}
	if !strings.Contains(stacks, "[IO wait]:\n") || !strings.Contains(stacks, "(*waiter).park") {
		t.Fatalf("an idle loop is not parked on the runtime's poller:\n%s", stacks)
	}

	// A task from another goroutine wakes a parked loop too.
	var ran atomic.Bool
	if err := p.Trigger(queue.HighPriority, func(any) error { ran.Store(true); return errorx.ErrEngineShutdown }, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, errorx.ErrEngineShutdown) || !ran.Load() {
			t.Fatalf("Polling: %v, task ran: %v", err, ran.Load())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a triggered task did not wake the parked loop")
	}
	if n := busyWaiters.Load(); n != 0 {
		t.Fatalf("%d busy waiters left", n)
	}
}

func allStacks() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}

// pgmts: busy waits keep a timeout only when no preemption signal would end
// them.
func TestAsyncPreemptOff(t *testing.T) {
	for godebug, want := range map[string]bool{
		"":                                    false,
		"asyncpreemptoff=1":                   true,
		"gctrace=1,asyncpreemptoff=1":         true,
		"asyncpreemptoff=1,asyncpreemptoff=0": false,
		"asyncpreemptoff=0":                   false,
		"xasyncpreemptoff=1":                  false,
	} {
		if got := asyncPreemptOff(godebug); got != want {
			t.Errorf("asyncPreemptOff(%q) = %v, want %v", godebug, got, want)
		}
	}
}

// pgmts: the loop's own epoll_wait and epoll_ctl (rawSyscall6) return
// counts and errors as unix's do.
func TestRawEpollCalls(t *testing.T) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(epfd)
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(efd)
	events := make([]unix.EpollEvent, 4)
	if n, err := epollWaitRaw(epfd, events, 0); n != 0 || err != nil {
		t.Fatalf("wait on an empty set: %d, %v", n, err)
	}
	if err := epollCtlRaw(epfd, unix.EPOLL_CTL_DEL, efd, nil); err != unix.ENOENT {
		t.Fatalf("removing a descriptor not in the set: %v, want ENOENT", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(efd)}
	if err := epollCtlRaw(epfd, unix.EPOLL_CTL_ADD, efd, &ev); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Write(efd, []byte{1, 0, 0, 0, 0, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	if n, err := epollWaitRaw(epfd, events, -1); n != 1 || err != nil || events[0].Fd != int32(efd) {
		t.Fatalf("wait: %d, %v, fd %d (want 1 event of fd %d)", n, err, events[0].Fd, efd)
	}
	if n, err := epollWaitRaw(-1, events, 0); n != -1 || err != unix.EBADF {
		t.Fatalf("wait on a bad descriptor: %d, %v", n, err)
	}
}
