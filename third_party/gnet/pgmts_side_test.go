//go:build linux

package gnet

import (
	"bytes"
	"context"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"
)

// addrsAndFlood records each connection's addresses at OnOpen, and answers
// a connection's first byte with flood bytes, written in 10 KiB pieces.
type addrsAndFlood struct {
	BuiltinEventEngine
	eng   chan Engine
	addrs chan [2]net.Addr
	flood []byte
}

func (h *addrsAndFlood) OnBoot(eng Engine) Action {
	h.eng <- eng
	return None
}

func (h *addrsAndFlood) OnOpen(c Conn) ([]byte, Action) {
	h.addrs <- [2]net.Addr{c.LocalAddr(), c.RemoteAddr()}
	return nil, None
}

func (h *addrsAndFlood) OnTraffic(c Conn) Action {
	if _, err := c.Discard(-1); err != nil {
		panic(err)
	}
	for rest := h.flood; len(rest) > 0; {
		n := 10 << 10
		if n > len(rest) {
			n = len(rest)
		}
		if _, err := c.Write(rest[:n]); err != nil {
			panic(err)
		}
		rest = rest[n:]
	}
	return None
}

// TestConnSideFields covers what conn keeps out of line (connSide) or no
// longer copies: an accepted connection's local address is its listener's,
// a unix socket peer's address lives in the side fields, and a reply far
// larger than WriteBufferCap, written while the client reads nothing, goes
// through the outbound buffer's list (made at first use) and arrives whole.
func TestConnSideFields(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tcpAddr := ln.Addr().String()
	ln.Close()
	sock := filepath.Join(t.TempDir(), "s")

	flood := make([]byte, 4<<20)
	for i := range flood {
		flood[i] = byte(i * 7)
	}
	h := &addrsAndFlood{eng: make(chan Engine, 1), addrs: make(chan [2]net.Addr, 2), flood: flood}
	done := make(chan error, 1)
	go func() {
		done <- Rotate(h, []string{"tcp://" + tcpAddr, "unix://" + sock}, WithWriteBufferCap(4096))
	}()
	eng := <-h.eng
	defer func() {
		if err := eng.Stop(context.Background()); err != nil {
			t.Error(err)
		}
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	for _, target := range [][2]string{{"tcp", tcpAddr}, {"unix", sock}} {
		c, err := net.Dial(target[0], target[1])
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		var got [2]net.Addr
		select {
		case got = <-h.addrs:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no OnOpen", target[0])
		}
		if got[0] == nil || got[0].String() != c.RemoteAddr().String() {
			t.Errorf("%s: LocalAddr %v, want %v", target[0], got[0], c.RemoteAddr())
		}
		if target[0] == "tcp" && (got[1] == nil || got[1].String() != c.LocalAddr().String()) {
			t.Errorf("tcp: RemoteAddr %v, want %v", got[1], c.LocalAddr())
		}
		if target[0] == "unix" {
			if _, ok := got[1].(*net.UnixAddr); !ok {
				t.Errorf("unix: RemoteAddr %#v, want a *net.UnixAddr", got[1])
			}
		}

		if _, err := c.Write([]byte{1}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond) // the writes fill the socket, then the buffer
		reply := make([]byte, len(flood))
		if err := c.SetReadDeadline(time.Now().Add(20 * time.Second)); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, reply); err != nil {
			t.Fatalf("%s: %v", target[0], err)
		}
		if !bytes.Equal(reply, flood) {
			t.Fatalf("%s: the reply differs from the bytes written", target[0])
		}
	}
}
