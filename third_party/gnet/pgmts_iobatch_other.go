//go:build darwin || dragonfly || freebsd || netbsd || openbsd || (linux && poll_opt)

package gnet

// pgmts: writes are batched by the default Linux loops only
// (pgmts_iobatch_linux.go).

type ioBatch struct{}

func (el *eventloop) openBatch()                   {}
func (el *eventloop) closeBatch()                  {}
func (c *conn) queueWrite([]byte) bool             { return false }
func (c *conn) queueWritev(_ [][]byte, _ int) bool { return false }

func (el *eventloop) batchedRead(*conn) (int, bool, bool) { return 0, false, false }
