//go:build linux && !amd64

package io

import "golang.org/x/sys/unix"

// rawSyscall6 is written in assembly on amd64 (pgmts; see
// pgmts_rawsyscall_linux_amd64.go); elsewhere it is unix.RawSyscall6.
func rawSyscall6(trap, a1, a2, a3, a4, a5, a6 uintptr) (uintptr, unix.Errno) {
	r, _, e := unix.RawSyscall6(trap, a1, a2, a3, a4, a5, a6)
	return r, e
}
