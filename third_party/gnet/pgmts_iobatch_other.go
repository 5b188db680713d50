//go:build darwin || dragonfly || freebsd || netbsd || openbsd || (linux && poll_opt)

package gnet

import gio "github.com/panjf2000/gnet/v2/pkg/io"

// pgmts: reads and writes are batched by the default Linux loops only
// (pgmts_iobatch_linux.go).

type ioBatch struct{}

//lint:ignore U1000 reactor_default.go calls it; poll_opt builds leave that file out
func (el *eventloop) openBatch() {}

//lint:ignore U1000 reactor_default.go calls it; poll_opt builds leave that file out
func (el *eventloop) closeBatch() {}

func (c *conn) queueWrite([]byte) bool             { return false }
func (c *conn) queueWritev(_ [][]byte, _ int) bool { return false }

// pending is false: eventloop.read always reads with recv here.
func (b *ioBatch) pending() bool { return false }

func (el *eventloop) recvBatched(c *conn) (int, bool, error) {
	n, err := gio.Read(c.fd, el.buffer)
	return n, false, err
}
