//go:build linux

package gnet

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

// frameEcho echoes length-prefixed frames, reading each with a different
// one of Conn's read methods, so that every method meets frames split across
// the leftover inbound buffer and the latest read (pgmts keeps the latest
// read as two offsets into the loop's buffer, see conn.latest).
type frameEcho struct {
	BuiltinEventEngine
	eng    chan Engine
	frames int
}

func (h *frameEcho) OnBoot(eng Engine) Action {
	h.eng <- eng
	return None
}

func (h *frameEcho) OnTraffic(c Conn) Action {
	for c.InboundBuffered() >= 4 {
		head, err := c.Peek(4)
		if err != nil {
			panic(err)
		}
		size := 4 + int(binary.BigEndian.Uint32(head))
		if c.InboundBuffered() < size {
			return None
		}
		var frame []byte
		switch h.frames % 4 {
		case 0:
			b, err := c.Next(size)
			if err != nil {
				panic(err)
			}
			frame = append(frame, b...)
		case 1:
			b, err := c.Peek(size)
			if err != nil {
				panic(err)
			}
			frame = append(frame, b...)
			if n, err := c.Discard(size); err != nil || n != size {
				panic(fmt.Sprint("Discard: ", n, err))
			}
		case 2:
			frame = make([]byte, size)
			if n, err := io.ReadFull(c, frame); err != nil {
				panic(fmt.Sprint("Read: ", n, err))
			}
		case 3:
			var buf bytes.Buffer
			// WriteTo takes everything buffered: only use it when that is
			// one frame.
			if c.InboundBuffered() != size {
				b, _ := c.Next(size)
				frame = append(frame, b...)
				break
			}
			if _, err := c.WriteTo(&buf); err != nil {
				panic(err)
			}
			frame = buf.Bytes()
		}
		h.frames++
		if _, err := c.Write(frame); err != nil {
			panic(err)
		}
	}
	return None
}

func TestConnReadMethods(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	h := &frameEcho{eng: make(chan Engine, 1)}
	done := make(chan error, 1)
	go func() { done <- Run(h, "tcp://"+addr) }()
	eng := <-h.eng
	defer func() {
		if err := eng.Stop(context.Background()); err != nil {
			t.Error(err)
		}
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var sent []byte
	for i := 0; i < 40; i++ {
		body := bytes.Repeat([]byte{byte('a' + i%26)}, 1+i*97)
		frame := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
		sent = append(sent, append(frame, body...)...)
	}
	// Send in pieces that cut through headers and bodies, pausing so that
	// each piece is a read of its own.
	for off := 0; off < len(sent); {
		end := off + 1 + (off*7)%301
		if end > len(sent) {
			end = len(sent)
		}
		if _, err := c.Write(sent[off:end]); err != nil {
			t.Fatal(err)
		}
		off = end
		time.Sleep(200 * time.Microsecond)
	}
	got := make([]byte, len(sent))
	if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, sent) {
		t.Fatal("echoed frames differ from those sent")
	}
}
