// Copyright (c) 2019 The Gnet Authors. All rights reserved.
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

//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package gnet

import (
	"io"
	"net"
	"os"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/panjf2000/gnet/v2/pkg/bs"
	"github.com/panjf2000/gnet/v2/pkg/buffer/elastic"
	errorx "github.com/panjf2000/gnet/v2/pkg/errors"
	gio "github.com/panjf2000/gnet/v2/pkg/io"
	bsPool "github.com/panjf2000/gnet/v2/pkg/pool/byteslice"
	"github.com/panjf2000/gnet/v2/pkg/queue"
	"github.com/panjf2000/gnet/v2/pkg/socket"
)

type conn struct {
	//lint:ignore U1000 empty in this build: the gnet file descriptor in gc_opt builds (pgmts)
	connIndex
	//lint:ignore U1000 empty in this build: the poller attachment in poll_opt builds (pgmts)
	connPoll
	fd             int                 // file descriptor
	ctx            any                 // user-defined context
	safeCtx        atomic.Pointer[any] // safe user-defined context
	loop           *eventloop          // connected event-loop
	local          *net.Addr           // local addr: the listener's, or in side (pgmts)
	side           *connSide           // what few connections use, made at first use (pgmts)
	outboundBuffer elastic.Buffer      // buffer for data that is eligible to be sent to the remote
	inboundBuffer  elastic.RingBuffer  // buffer for leftover data from the remote
	bufStart       int32               // the latest bytes not yet consumed are loop.buffer[bufStart:bufEnd] (pgmts: see latest)
	bufEnd         int32
	peerIP         [16]byte // accepted TCP peer's IP, see setPeer (pgmts)
	isDatagram     bool     // UDP protocol
	protoTCP       bool     // protocol name was "tcp" (pgmts: a bool, not the string)
	opened         bool     // connection opened event fired
	isEOF          bool     // whether the connection has reached EOF
	peerPort       uint16   // accepted TCP peer's port
	peerLen        uint8    // peerIP's length (4 or 16), 0 if there is no peer there
	//lint:ignore U1000 the BSD pollers' PauseRead keeps no state (pgmts_pause_bsd.go)
	readPaused bool // PauseRead: not polled for reads (pgmts)
}

// setPeer keeps an accepted TCP peer's address in the conn, for RemoteAddr
// to make a net.TCPAddr of when asked (pgmts: it was a 64-byte object kept
// per connection). It reports false for other addresses (and IPv6 ones
// with a zone), which go to remoteAddr as before.
func (c *conn) setPeer(sa unix.Sockaddr) bool {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		copy(c.peerIP[:], sa.Addr[:])
		c.peerLen = 4
		c.peerPort = uint16(sa.Port)
	case *unix.SockaddrInet6:
		if sa.ZoneId != 0 {
			return false
		}
		c.peerIP = sa.Addr
		c.peerLen = 16
		c.peerPort = uint16(sa.Port)
	default:
		return false
	}
	return true
}

// connSide holds what an idle accepted TCP connection never uses, made at
// first use (pgmts: with conn's outbound buffer's list made at first use
// too, conn is 128 bytes instead of 192): addresses other than a listener's
// and an accepted TCP peer's, an unconnected UDP socket's peer, and the
// cache Next and Peek return when the bytes asked for are split.
type connSide struct {
	localAddr  net.Addr       // local addr when it is not a listener's
	remoteAddr net.Addr       // remote addr when it is not peerIP's
	remote     *unix.Sockaddr // peer of an unconnected UDP socket
	cache      []byte         // temporary cache for the inbound data
}

// sideFields returns c.side, made if need be.
func (c *conn) sideFields() *connSide {
	if c.side == nil {
		c.side = &connSide{}
	}
	return c.side
}

// setAddrs keeps the addresses a new connection was made with.
func (c *conn) setAddrs(localAddr, remoteAddr net.Addr) {
	if localAddr == nil && remoteAddr == nil {
		return
	}
	s := c.sideFields()
	s.localAddr, s.remoteAddr = localAddr, remoteAddr
	if localAddr != nil {
		c.local = &s.localAddr
	}
}

// udpPeer is the peer of an unconnected UDP socket, nil for other
// connections.
func (c *conn) udpPeer() *unix.Sockaddr {
	if c.side == nil {
		return nil
	}
	return c.side.remote
}

func newStreamConn(proto string, fd int, el *eventloop, localAddr, remoteAddr net.Addr) (c *conn) {
	c = &conn{
		fd:       fd,
		protoTCP: proto == "tcp",
		loop:     el,
	}
	c.setAddrs(localAddr, remoteAddr)
	initStreamPoll(c)
	c.outboundBuffer.Reset(el.engine.opts.WriteBufferCap)
	return
}

// newAcceptedConn is newStreamConn for a connection ln accepted from peer
// sa: its local address is the listener's, not a copy, and a TCP peer's
// address is kept in place (setPeer) (pgmts).
func newAcceptedConn(proto string, fd int, el *eventloop, ln *listener, sa unix.Sockaddr) *conn {
	c := newStreamConn(proto, fd, el, nil, nil)
	c.local = &ln.addr
	if !c.setPeer(sa) {
		c.sideFields().remoteAddr = socket.SockaddrToTCPOrUnixAddr(sa)
	}
	return c
}

func newUDPConn(fd int, el *eventloop, localAddr net.Addr, sa unix.Sockaddr, connected bool) (c *conn) {
	c = &conn{
		fd:         fd,
		loop:       el,
		isDatagram: true,
	}
	c.setAddrs(localAddr, socket.SockaddrToUDPAddr(sa))
	initUDPPoll(c, el)
	if !connected && sa != nil {
		c.sideFields().remote = &sa
	}
	return
}

func (c *conn) release() {
	c.opened = false
	c.isEOF = false
	c.ctx = nil
	c.safeCtx.Store(nil)
	c.setLatest(0)
	if s := c.side; s != nil {
		if addr, ok := s.localAddr.(*net.TCPAddr); ok && len(c.loop.listeners) == 0 && len(addr.Zone) > 0 {
			bsPool.Put(bs.StringToBytes(addr.Zone))
		}
		if addr, ok := s.remoteAddr.(*net.TCPAddr); ok && len(addr.Zone) > 0 {
			bsPool.Put(bs.StringToBytes(addr.Zone))
		}
		if addr, ok := s.localAddr.(*net.UDPAddr); ok && len(c.loop.listeners) == 0 && len(addr.Zone) > 0 {
			bsPool.Put(bs.StringToBytes(addr.Zone))
		}
		if addr, ok := s.remoteAddr.(*net.UDPAddr); ok && len(addr.Zone) > 0 {
			bsPool.Put(bs.StringToBytes(addr.Zone))
		}
		s.localAddr = nil
		s.remoteAddr = nil
	}
	c.local = nil
	c.peerLen = 0
	if !c.isDatagram {
		c.inboundBuffer.Done()
		c.outboundBuffer.Release()
	}
}

func (c *conn) open(buf []byte) error {
	if c.isDatagram && c.udpPeer() == nil {
		return unix.Send(c.fd, buf, 0)
	}

	for {
		n, err := gio.Write(c.fd, buf)
		if err != nil {
			if err == unix.EAGAIN {
				_, _ = c.outboundBuffer.Write(buf)
				break
			}
			return err
		}
		buf = buf[n:]
		if len(buf) == 0 {
			break
		}
	}

	return nil
}

func (c *conn) write(data []byte) (n int, err error) {
	isET := c.loop.engine.opts.EdgeTriggeredIO
	n = len(data)
	if c.loop.rw.queueSend(c, data) { // pgmts: see pgmts_ringwait_linux.go
		return
	}
	// If there is pending data in outbound buffer,
	// the current data ought to be appended to the
	// outbound buffer for maintaining the sequence
	// of network packets.
	if !c.outboundBuffer.IsEmpty() {
		_, _ = c.outboundBuffer.Write(data)
		return
	}
	if c.queueWrite(data) { // pgmts: see pgmts_iobatch_linux.go (never in ET mode)
		return
	}

	defer func() {
		if err != nil {
			_ = c.loop.close(c, os.NewSyscallError("write", err))
		}
	}()

	var sent int
loop:
	if sent, err = gio.Write(c.fd, data); err != nil {
		// A temporary error occurs, append the data to outbound buffer,
		// writing it back to the remote in the next round for LT mode.
		if err == unix.EAGAIN {
			_, err = c.outboundBuffer.Write(data)
			if !isET {
				err = c.pollWrite()
			}
			return
		}
		return 0, err
	}
	data = data[sent:]
	if isET && len(data) > 0 {
		goto loop
	}
	// Failed to send all data back to the remote, buffer the leftover data for the next round.
	if len(data) > 0 {
		_, _ = c.outboundBuffer.Write(data)
		err = c.pollWrite()
	}

	return
}

func (c *conn) writev(bs [][]byte) (n int, err error) {
	isET := c.loop.engine.opts.EdgeTriggeredIO

	for _, b := range bs {
		n += len(b)
	}
	if c.loop.rw.queueSend(c, bs...) { // pgmts: see pgmts_ringwait_linux.go
		return
	}

	// If there is pending data in outbound buffer,
	// the current data ought to be appended to the
	// outbound buffer for maintaining the sequence
	// of network packets.
	if !c.outboundBuffer.IsEmpty() {
		_, _ = c.outboundBuffer.Writev(bs)
		return
	}
	if c.queueWritev(bs, n) { // pgmts: see pgmts_iobatch_linux.go (never in ET mode)
		return
	}

	defer func() {
		if err != nil {
			_ = c.loop.close(c, os.NewSyscallError("writev", err))
		}
	}()

	remaining := n
	var sent int
loop:
	if sent, err = gio.Writev(c.fd, bs); err != nil {
		// A temporary error occurs, append the data to outbound buffer,
		// writing it back to the remote in the next round for LT mode.
		if err == unix.EAGAIN {
			_, err = c.outboundBuffer.Writev(bs)
			if !isET {
				err = c.pollWrite()
			}
			return
		}
		return 0, err
	}
	pos := len(bs)
	if remaining -= sent; remaining > 0 {
		for i := range bs {
			bn := len(bs[i])
			if sent < bn {
				bs[i] = bs[i][sent:]
				pos = i
				break
			}
			sent -= bn
		}
	}
	bs = bs[pos:]
	if isET && remaining > 0 {
		goto loop
	}

	// Failed to send all data back to the remote, buffer the leftover data for the next round.
	if remaining > 0 {
		_, _ = c.outboundBuffer.Writev(bs)
		err = c.pollWrite()
	}

	return
}

type asyncWriteHook struct {
	callback AsyncCallback
	data     []byte
}

func (c *conn) asyncWrite(a any) (err error) {
	hook := a.(*asyncWriteHook)
	defer func() {
		if hook.callback != nil {
			_ = hook.callback(c, err)
		}
	}()

	if !c.opened {
		return net.ErrClosed
	}

	_, err = c.write(hook.data)
	return
}

type asyncWritevHook struct {
	callback AsyncCallback
	data     [][]byte
}

func (c *conn) asyncWritev(a any) (err error) {
	hook := a.(*asyncWritevHook)
	defer func() {
		if hook.callback != nil {
			_ = hook.callback(c, err)
		}
	}()

	if !c.opened {
		return net.ErrClosed
	}

	_, err = c.writev(hook.data)
	return
}

func (c *conn) sendTo(buf []byte, addr unix.Sockaddr) (n int, err error) {
	defer func() {
		if err != nil {
			n = 0
		}
	}()

	if addr != nil {
		return len(buf), unix.Sendto(c.fd, buf, 0, addr)
	}
	remote := c.udpPeer()
	if remote == nil { // connected UDP socket of client
		return len(buf), unix.Send(c.fd, buf, 0)
	}
	return len(buf), unix.Sendto(c.fd, buf, 0, *remote) // unconnected UDP socket of server
}

// latest returns the bytes of the latest read that the handler has not
// consumed. They live in the loop's read buffer; the conn keeps two offsets
// into it (pgmts: instead of a 24-byte slice, which put the conn in the
// 208-byte size class).
func (c *conn) latest() []byte { return c.loop.buffer[c.bufStart:c.bufEnd] }

// setLatest makes the first n bytes of the loop's read buffer the latest.
func (c *conn) setLatest(n int) { c.bufStart, c.bufEnd = 0, int32(n) }

// consume drops the first n of the latest bytes.
func (c *conn) consume(n int) { c.bufStart += int32(n) }

func (c *conn) latestLen() int { return int(c.bufEnd - c.bufStart) }

func (c *conn) resetBuffer() {
	c.setLatest(0)
	c.inboundBuffer.Reset()
	c.inboundBuffer.Done()
}

func (c *conn) Read(p []byte) (n int, err error) {
	if c.inboundBuffer.IsEmpty() {
		n = copy(p, c.latest())
		c.consume(n)
		if n == 0 && len(p) > 0 {
			err = io.ErrShortBuffer
		}
		return
	}
	n, _ = c.inboundBuffer.Read(p)
	if n == len(p) {
		return
	}
	m := copy(p[n:], c.latest())
	n += m
	c.consume(m)
	return
}

func (c *conn) Next(n int) (buf []byte, err error) {
	inBufferLen := c.inboundBuffer.Buffered()
	if totalLen := inBufferLen + c.latestLen(); n > totalLen {
		return nil, io.ErrShortBuffer
	} else if n <= 0 {
		n = totalLen
	}

	if c.inboundBuffer.IsEmpty() {
		buf = c.latest()[:n]
		c.consume(n)
		return
	}

	buf = bsPool.Get(n)
	_, err = c.Read(buf)
	return
}

func (c *conn) Peek(n int) (buf []byte, err error) {
	inBufferLen := c.inboundBuffer.Buffered()
	if totalLen := inBufferLen + c.latestLen(); n > totalLen {
		return nil, io.ErrShortBuffer
	} else if n <= 0 {
		n = totalLen
	}

	if c.inboundBuffer.IsEmpty() {
		return c.latest()[:n], err
	}

	head, tail := c.inboundBuffer.Peek(n)
	if len(head) == n {
		return head, err
	}
	buf = bsPool.Get(n)[:0]
	buf = append(buf, head...)
	buf = append(buf, tail...)
	if inBufferLen >= n {
		return
	}

	remaining := n - inBufferLen
	buf = append(buf, c.latest()[:remaining]...)
	c.sideFields().cache = buf
	return
}

func (c *conn) Discard(n int) (int, error) {
	if s := c.side; s != nil && len(s.cache) > 0 {
		bsPool.Put(s.cache)
		s.cache = nil
	}

	inBufferLen := c.inboundBuffer.Buffered()
	if totalLen := inBufferLen + c.latestLen(); n >= totalLen || n <= 0 {
		c.resetBuffer()
		return totalLen, nil
	}

	if c.inboundBuffer.IsEmpty() {
		c.consume(n)
		return n, nil
	}

	discarded, _ := c.inboundBuffer.Discard(n)
	if discarded < inBufferLen {
		return discarded, nil
	}

	remaining := n - inBufferLen
	c.consume(remaining)
	return n, nil
}

func (c *conn) Write(p []byte) (int, error) {
	if c.isDatagram {
		return c.sendTo(p, nil)
	}
	return c.write(p)
}

func (c *conn) SendTo(p []byte, addr net.Addr) (int, error) {
	if !c.isDatagram {
		return 0, errorx.ErrUnsupportedOp
	}

	sa := socket.NetAddrToSockaddr(addr)
	if sa == nil {
		return 0, errorx.ErrInvalidNetworkAddress
	}

	return c.sendTo(p, sa)
}

func (c *conn) Writev(bs [][]byte) (int, error) {
	if c.isDatagram {
		return 0, errorx.ErrUnsupportedOp
	}
	return c.writev(bs)
}

func (c *conn) ReadFrom(r io.Reader) (int64, error) {
	return c.outboundBuffer.ReadFrom(r)
}

func (c *conn) WriteTo(w io.Writer) (n int64, err error) {
	if !c.inboundBuffer.IsEmpty() {
		if n, err = c.inboundBuffer.WriteTo(w); err != nil {
			return
		}
	}
	var m int
	m, err = w.Write(c.latest())
	n += int64(m)
	c.consume(m)
	return
}

func (c *conn) Flush() error {
	return c.loop.write(c)
}

func (c *conn) InboundBuffered() int {
	return c.inboundBuffer.Buffered() + c.latestLen()
}

func (c *conn) OutboundBuffered() int {
	return c.outboundBuffer.Buffered()
}

func (c *conn) Context() any       { return c.ctx }
func (c *conn) SetContext(ctx any) { c.ctx = ctx }
func (c *conn) LocalAddr() net.Addr {
	if c.local == nil {
		return nil
	}
	return *c.local
}
func (c *conn) RemoteAddr() net.Addr {
	if c.peerLen != 0 {
		return socket.NewTCPAddr(c.peerIP[:c.peerLen], int(c.peerPort))
	}
	if c.side == nil {
		return nil
	}
	return c.side.remoteAddr
}

// Implementation of Socket interface

// func (c *conn) Gfd() gfd.GFD             { return c.gfd }

func (c *conn) Fd() int                        { return c.fd }
func (c *conn) Dup() (fd int, err error)       { return socket.Dup(c.fd) }
func (c *conn) SetReadBuffer(bytes int) error  { return socket.SetRecvBuffer(c.fd, bytes) }
func (c *conn) SetWriteBuffer(bytes int) error { return socket.SetSendBuffer(c.fd, bytes) }
func (c *conn) SetLinger(sec int) error        { return socket.SetLinger(c.fd, sec) }
func (c *conn) SetNoDelay(noDelay bool) error {
	return socket.SetNoDelay(c.fd, func(b bool) int {
		if b {
			return 1
		}
		return 0
	}(noDelay))
}

func (c *conn) SetKeepAlivePeriod(d time.Duration) error {
	if !c.protoTCP {
		return errorx.ErrUnsupportedOp
	}
	return socket.SetKeepAlivePeriod(c.fd, int(d.Seconds()))
}

func (c *conn) SetKeepAlive(enabled bool, idle, intvl time.Duration, cnt int) error {
	if !c.protoTCP {
		return errorx.ErrUnsupportedOp
	}
	return socket.SetKeepAlive(c.fd, enabled, int(idle.Seconds()), int(intvl.Seconds()), cnt)
}

func (c *conn) AsyncWrite(buf []byte, callback AsyncCallback) error {
	if c.isDatagram {
		_, err := c.sendTo(buf, nil)
		// TODO: it will not go asynchronously with UDP, so calling a callback is needless,
		//  we may remove this branch in the future, please don't rely on the callback
		// 	to do something important under UDP, if you're working with UDP, just call Conn.Write
		// 	to send back your data.
		if callback != nil {
			_ = callback(nil, nil)
		}
		return err
	}
	return c.loop.poller.Trigger(queue.HighPriority, c.asyncWrite, &asyncWriteHook{callback, buf})
}

func (c *conn) AsyncWritev(bs [][]byte, callback AsyncCallback) error {
	if c.isDatagram {
		return errorx.ErrUnsupportedOp
	}
	return c.loop.poller.Trigger(queue.HighPriority, c.asyncWritev, &asyncWritevHook{callback, bs})
}

func (c *conn) Wake(callback AsyncCallback) error {
	return c.loop.poller.Trigger(queue.LowPriority, func(_ any) (err error) {
		err = c.loop.wake(c)
		if callback != nil {
			_ = callback(c, err)
		}
		return
	}, nil)
}

func (c *conn) CloseWithCallback(callback AsyncCallback) error {
	return c.loop.poller.Trigger(queue.LowPriority, func(_ any) (err error) {
		err = c.loop.close(c, nil)
		if callback != nil {
			_ = callback(c, err)
		}
		return
	}, nil)
}

func (c *conn) Close() error {
	return c.loop.poller.Trigger(queue.LowPriority, func(_ any) (err error) {
		err = c.loop.close(c, nil)
		return
	}, nil)
}

func (c *conn) EventLoop() EventLoop {
	return c.loop
}

func (*conn) SetDeadline(_ time.Time) error {
	return errorx.ErrUnsupportedOp
}

func (*conn) SetReadDeadline(_ time.Time) error {
	return errorx.ErrUnsupportedOp
}

func (*conn) SetWriteDeadline(_ time.Time) error {
	return errorx.ErrUnsupportedOp
}

func (c *conn) SafeContext() (ctx any) {
	if p := c.safeCtx.Load(); p != nil {
		return *p
	}
	return nil
}

func (c *conn) SetSafeContext(ctx any) {
	c.safeCtx.Store(&ctx)
}
