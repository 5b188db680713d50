//go:build darwin || dragonfly || freebsd || netbsd || openbsd || (linux && poll_opt)

package gnet

// ringWait is the wait through io_uring (pgmts_ringwait_linux.go), which
// only Linux's epoll build has.
type ringWait struct{}

func (el *eventloop) openRingWait()                 {}
func (el *eventloop) closeRingWait()                {}
func (r *ringWait) read(*conn)                      {}
func (r *ringWait) forget(int)                      {}
func (r *ringWait) holds(int) bool                  { return false }
func (r *ringWait) queueSend(*conn, ...[]byte) bool { return false }
