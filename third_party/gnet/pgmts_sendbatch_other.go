//go:build darwin || dragonfly || freebsd || netbsd || openbsd || (linux && poll_opt)

package gnet

// pgmts: writes are batched by the default Linux loops only
// (pgmts_sendbatch_linux.go).

type sendBatch struct{}

func (el *eventloop) openSends()                   {}
func (el *eventloop) closeSends()                  {}
func (c *conn) queueWrite([]byte) bool             { return false }
func (c *conn) queueWritev(_ [][]byte, _ int) bool { return false }
