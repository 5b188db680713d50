//go:build linux && amd64

package io

import "golang.org/x/sys/unix"

// rawSyscall6 is syscall.RawSyscall6 (a system call the Go scheduler is not
// told about) written in this package (pgmts). syscall.RawSyscall6 returns
// through three functions on three other pages of the binary (an ABI
// wrapper, RawSyscall6 itself, the runtime's Syscall6); on a machine whose
// TLB is emptied at every system call (page-table isolation without PCID,
// as on many VMs) each costs a page walk after every call. This one is
// linked among the package's own functions, next to its callers, which is
// why pkg/netpoll has the same function: one shared package would be
// linked elsewhere. (Measured with perf at one pgbench client: about 1 µs
// less user time per transaction, of some 10.) The uintptr arguments that
// carry pointers are converted in the call expression, so the objects stay
// put (unsafe.Pointer's rule for calls to assembly functions).
func rawSyscall6(trap, a1, a2, a3, a4, a5, a6 uintptr) (r1 uintptr, errno unix.Errno)
