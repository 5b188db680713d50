package integration

import (
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgmts/pgmts/config"
)

// TestClientLoginTimeout: a client that stalls before its startup packet,
// or in the middle of SCRAM, is dropped after client_login_timeout with a
// FATAL, while other clients log in and work; so is one that comes after
// a spell with no login pending.
func TestClientLoginTimeout(t *testing.T) {
	p := startPgmts(t, func(c *config.Config) { c.Pgmts.ClientLoginTimeout = time.Second })
	addr := fmt.Sprintf("127.0.0.1:%d", p.port)

	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()

	midSCRAM, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer midSCRAM.Close()
	fe := pgproto3.NewFrontend(midSCRAM, midSCRAM)
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: map[string]string{"user": benchUser, "database": "bench"}})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	_ = midSCRAM.SetDeadline(time.Now().Add(5 * time.Second))
	if m, err := fe.Receive(); err != nil {
		t.Fatal(err)
	} else if _, ok := m.(*pgproto3.AuthenticationSASL); !ok {
		t.Fatalf("got %T, want AuthenticationSASL", m)
	}
	start := time.Now()

	// Others log in fine meanwhile.
	c := p.connect(t, "default_query_exec_mode=simple_protocol")
	if got := queryString(t, c, "SELECT 'fine'"); got != "fine" {
		t.Fatal(got)
	}

	for name, conn := range map[string]net.Conn{"silent": silent, "mid-SCRAM": midSCRAM} {
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		b, err := io.ReadAll(conn)
		if err != nil {
			t.Fatalf("%s client: %v (not dropped?)", name, err)
		}
		if len(b) == 0 || b[0] != 'E' {
			t.Fatalf("%s client got %q, want a FATAL ErrorResponse", name, b)
		}
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Fatalf("stalled clients dropped after %v; client_login_timeout is 1s", d)
	}
	// The logged-in client is not affected by the timeout.
	time.Sleep(1500 * time.Millisecond)
	if got := queryString(t, c, "SELECT 'still fine'"); got != "still fine" {
		t.Fatal(got)
	}

	// No login was pending for a while, so the deadline timer stopped: the
	// next stalled login starts it again.
	late, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	start = time.Now()
	_ = late.SetDeadline(time.Now().Add(5 * time.Second))
	if b, err := io.ReadAll(late); err != nil || len(b) == 0 || b[0] != 'E' {
		t.Fatalf("a stalled login after a quiet spell got %q, %v; want a FATAL ErrorResponse", b, err)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Fatalf("stalled client dropped after %v; client_login_timeout is 1s", d)
	}
}
