/*
 * Copyright (c) 2021 The Gnet Authors. All rights reserved.
 *
 * Licensed under the Apache License, Version 2.0 (the "License");
 * you may not use this file except in compliance with the License.
 * You may obtain a copy of the License at
 *
 *      http://www.apache.org/licenses/LICENSE-2.0
 *
 * Unless required by applicable law or agreed to in writing, software
 * distributed under the License is distributed on an "AS IS" BASIS,
 * WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
 * See the License for the specific language governing permissions and
 * limitations under the License.
 *
 */

package io

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// Read, Write and Writev are for gnet's non-blocking sockets (pgmts): such
// calls never block, so they go through rawSyscall6 and skip telling the Go
// scheduler (entersyscall/exitsyscall), about 0.2 µs a call. They are
// recv, send and sendmsg rather than read, write and writev: the socket
// calls skip the VFS layer, about 0.1 µs less each on loopback TCP, and
// MSG_NOSIGNAL spares a write to a closed peer its SIGPIPE (which the Go
// runtime ignored; the EPIPE is the same). A descriptor that is not a
// socket gets ENOTSOCK and is served by read, write and writev.

// Read calls recv() (recvfrom with no address) on Linux.
func Read(fd int, p []byte) (int, error) { return sockIO(unix.SYS_RECVFROM, 0, unix.SYS_READ, fd, p) }

// Write calls send() (sendto with no address) on Linux.
func Write(fd int, p []byte) (int, error) {
	return sockIO(unix.SYS_SENDTO, unix.MSG_NOSIGNAL, unix.SYS_WRITE, fd, p)
}

// Close calls close() on Linux, for a socket without SO_LINGER (whose
// close never blocks). Entering a system call the scheduler's way would
// also wake a deeply sleeping sysmon; see pkg/netpoll/pgmts_wait_linux.go.
func Close(fd int) error {
	if _, _, e := unix.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0); e != 0 {
		return e
	}
	return nil
}

// sockIO is recvfrom or sendto (trap, with flags and no address), or, on a
// descriptor that is not a socket, read or write (fallback).
func sockIO(trap, flags, fallback uintptr, fd int, p []byte) (int, error) {
	// The pointer is converted in each call, as unsafe.Pointer's rules ask.
	r, e := rawSyscall6(trap, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)), flags, 0, 0)
	if e == unix.ENOTSOCK {
		r, e = rawSyscall6(fallback, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)), 0, 0, 0)
	}
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

// Writev calls sendmsg() on Linux.
func Writev(fd int, iov [][]byte) (int, error) {
	if len(iov) == 0 {
		return 0, nil
	}
	var small [8]unix.Iovec
	vecs := small[:0]
	if len(iov) > len(small) {
		vecs = make([]unix.Iovec, 0, len(iov))
	}
	for _, b := range iov {
		v := unix.Iovec{Base: unsafe.SliceData(b)}
		v.SetLen(len(b))
		vecs = append(vecs, v)
	}
	msg := unix.Msghdr{Iov: &vecs[0]}
	msg.SetIovlen(len(vecs))
	n, e := rawSyscall6(unix.SYS_SENDMSG, uintptr(fd), uintptr(unsafe.Pointer(&msg)), unix.MSG_NOSIGNAL, 0, 0, 0)
	if e == unix.ENOTSOCK {
		n, e = rawSyscall6(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&vecs[0])), uintptr(len(vecs)), 0, 0, 0)
	}
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}

// Readv calls readv() on Linux.
func Readv(fd int, iov [][]byte) (int, error) {
	if len(iov) == 0 {
		return 0, nil
	}
	return unix.Readv(fd, iov)
}
