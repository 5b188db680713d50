package gnet

import "github.com/panjf2000/gnet/v2/pkg/errors"

// PauseRead implements Conn.
func (c *conn) PauseRead() error { return c.setReadPaused(true) }

// ResumeRead implements Conn.
func (c *conn) ResumeRead() error { return c.setReadPaused(false) }

func (c *conn) setReadPaused(paused bool) error {
	if c.loop.engine.opts.EdgeTriggeredIO || c.isDatagram {
		return errors.ErrUnsupportedOp
	}
	if c.readPaused == paused {
		return nil
	}
	c.readPaused = paused
	if paused {
		c.loop.rw.forget(c.fd) // pgmts: nobody reads it now, the ring neither
	}
	return c.pollRead()
}

// epollReads (pgmts) reports whether epoll should poll c for reads:
// not while they are paused, nor while the loop's ring reads it.
func (c *conn) epollReads() bool { return !c.readPaused && !c.loop.rw.holds(c.fd) }

// pollRead (level-triggered) polls c for reads, unless they are paused,
// and for writes while its outbound buffer holds data.
func (c *conn) pollRead() error {
	return c.loop.poller.ModEvents(c.pollAttachment(), c.epollReads(), !c.outboundBuffer.IsEmpty())
}

// pollWrite polls c for writes, and for reads unless they are paused (an
// edge-triggered loop, which cannot pause, polls for both as upstream).
func (c *conn) pollWrite() error {
	if c.loop.engine.opts.EdgeTriggeredIO {
		return c.loop.poller.ModReadWrite(c.pollAttachment(), true)
	}
	return c.loop.poller.ModEvents(c.pollAttachment(), c.epollReads(), true)
}
