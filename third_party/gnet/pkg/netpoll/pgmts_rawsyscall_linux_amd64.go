//go:build linux && amd64 && !poll_opt

package netpoll

import "golang.org/x/sys/unix"

// rawSyscall6 is pkg/io's rawSyscall6 (pgmts; the reasons are there): a
// system call the Go scheduler is not told about, in assembly linked among
// this package's functions, so that epoll_wait and epoll_ctl return to a
// page their caller shares instead of through syscall.RawSyscall6's three.
func rawSyscall6(trap, a1, a2, a3, a4, a5, a6 uintptr) (r1 uintptr, errno unix.Errno)
