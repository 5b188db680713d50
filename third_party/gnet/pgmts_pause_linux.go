package gnet

import "github.com/panjf2000/gnet/v2/pkg/errors"

// PauseRead implements Conn.
func (c *conn) PauseRead() error {
	if c.loop.engine.opts.EdgeTriggeredIO || c.isDatagram {
		return errors.ErrUnsupportedOp
	}
	if c.readPaused {
		return nil
	}
	c.readPaused = true
	return c.pollRead()
}

// ResumeRead implements Conn.
func (c *conn) ResumeRead() error {
	if c.loop.engine.opts.EdgeTriggeredIO || c.isDatagram {
		return errors.ErrUnsupportedOp
	}
	if !c.readPaused {
		return nil
	}
	c.readPaused = false
	return c.pollRead()
}

// pollRead (level-triggered) polls c for reads, unless they are paused,
// and for writes while its outbound buffer holds data.
func (c *conn) pollRead() error {
	return c.loop.poller.ModEvents(c.pollAttachment(), !c.readPaused, !c.outboundBuffer.IsEmpty())
}

// pollWrite (level-triggered) polls c for writes, and for reads unless
// they are paused.
func (c *conn) pollWrite() error {
	return c.loop.poller.ModEvents(c.pollAttachment(), !c.readPaused, true)
}
