//go:build darwin || dragonfly || freebsd || netbsd || openbsd

package gnet

import "github.com/panjf2000/gnet/v2/pkg/errors"

// PauseRead implements Conn; kqueue loops do not support it.
func (c *conn) PauseRead() error { return errors.ErrUnsupportedOp }

// ResumeRead implements Conn; kqueue loops do not support it.
func (c *conn) ResumeRead() error { return errors.ErrUnsupportedOp }

func (c *conn) pollRead() error { return c.loop.poller.ModRead(c.pollAttachment(), false) }
func (c *conn) pollWrite() error {
	return c.loop.poller.ModReadWrite(c.pollAttachment(), c.loop.engine.opts.EdgeTriggeredIO)
}
