//go:build linux && !poll_opt

package netpoll

import (
	"errors"
	"fmt"
	"reflect"
	"testing"

	"golang.org/x/sys/unix"

	errorx "github.com/panjf2000/gnet/v2/pkg/errors"
	"github.com/panjf2000/gnet/v2/pkg/queue"
)

// pgmts: Polling tells the batch hooks how many events an epoll_wait
// returned, before their callbacks, and ends the batch before the queued
// tasks run.
func TestBatchHooks(t *testing.T) {
	p, err := OpenPoller()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var seen []string
	for i := 0; i < 2; i++ {
		var fds [2]int
		if err := unix.Pipe2(fds[:], unix.O_NONBLOCK); err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fds[0])
		defer unix.Close(fds[1])
		if _, err := unix.Write(fds[1], []byte("x")); err != nil {
			t.Fatal(err)
		}
		if err := p.AddRead(&PollAttachment{FD: fds[0]}, false); err != nil {
			t.Fatal(err)
		}
	}
	var clocks int64
	p.SetBatchHooks(func() int64 { clocks++; return 1000 * clocks },
		func(n int, now int64) { seen = append(seen, fmt.Sprint("batch ", n, " at ", now)) },
		func() { seen = append(seen, "end") })
	stop := func(any) error { seen = append(seen, "task"); return errorx.ErrEngineShutdown }
	if err := p.Trigger(queue.HighPriority, stop, nil); err != nil {
		t.Fatal(err)
	}
	err = p.Polling(func(int, IOEvent, IOFlags) error { seen = append(seen, "event"); return nil })
	if !errors.Is(err, errorx.ErrEngineShutdown) {
		t.Fatalf("Polling: %v", err)
	}
	// The clock is read once before the first wait and once after it.
	want := []string{"batch 3 at 2000", "event", "event", "end", "task"}
	if !reflect.DeepEqual(seen, want) {
		t.Fatalf("calls %q, want %q", seen, want)
	}
}
