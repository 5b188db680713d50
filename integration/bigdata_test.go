package integration

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// These tests push hundreds of megabytes through pgmts: COPY both ways, and
// a huge SELECT read slowly, which must cost the daemon bounded memory.

// copyRows generates COPY text rows "id\tpayload\n" on the fly, so that
// the data never sits in memory whole.
type copyRows struct {
	n, next int
	bytes   int64 // bytes produced so far
	payload int64 // sum of payload lengths produced so far
	buf     []byte
	filler  []byte
	pos     int
}

func newCopyRows(n int) *copyRows {
	return &copyRows{n: n, filler: bytes.Repeat([]byte("abcdefghijklmnopqrstuvwxyz0123456789"), 40)}
}

// payloadLen varies the row size: 900 to 1099 bytes.
func payloadLen(i int) int { return 900 + i%200 }

func (r *copyRows) Read(p []byte) (int, error) {
	if r.pos == len(r.buf) {
		if r.next >= r.n {
			return 0, io.EOF
		}
		r.buf, r.pos = r.buf[:0], 0
		for r.next < r.n && len(r.buf) < 256<<10 {
			i := r.next
			r.next++
			l := payloadLen(i)
			r.buf = strconv.AppendInt(r.buf, int64(i), 10)
			r.buf = append(r.buf, '\t')
			off := i % 36
			r.buf = append(r.buf, r.filler[off:off+l]...)
			r.buf = append(r.buf, '\n')
			r.payload += int64(l)
		}
		r.bytes += int64(len(r.buf))
	}
	n := copy(p, r.buf[r.pos:])
	r.pos += n
	return n, nil
}

type countingWriter struct{ n int64 }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	return len(p), nil
}

func TestCopyBig(t *testing.T) {
	p := startPgmts(t, setMode("transaction", 4))
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, p.dsn(benchUser, benchPass, "bench", "default_query_exec_mode=exec"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	table := fmt.Sprintf("copy_big_%d_%d", os.Getpid(), time.Now().UnixNano()%1e9)
	if _, err := c.Exec(ctx, "CREATE TABLE "+table+" (id int, payload text)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Dropped directly on the cluster, so it goes even if pgmts failed.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		dc, err := pgx.Connect(ctx, cluster.DSN(benchUser, benchPass, "bench"))
		if err != nil {
			t.Error(err)
			return
		}
		defer dc.Close(ctx)
		if _, err := dc.Exec(ctx, "DROP TABLE IF EXISTS "+table); err != nil {
			t.Error(err)
		}
	})

	const rows = 105_000 // about 105 MB of COPY text
	src := newCopyRows(rows)
	start := time.Now()
	tag, err := c.PgConn().CopyFrom(ctx, src, "COPY "+table+" (id, payload) FROM STDIN")
	if err != nil {
		t.Fatalf("COPY FROM: %v", err)
	}
	in := time.Since(start)
	if src.bytes < 100<<20 {
		t.Fatalf("sent only %d bytes", src.bytes)
	}
	if tag.RowsAffected() != rows {
		t.Errorf("COPY FROM: %q, want %d rows", tag, rows)
	}
	t.Logf("COPY FROM: %d rows, %.1f MB in %v", rows, float64(src.bytes)/1e6, in.Round(time.Millisecond))

	var n, sum int64
	if err := c.QueryRow(ctx, "SELECT count(*), sum(length(payload)) FROM "+table).Scan(&n, &sum); err != nil {
		t.Fatal(err)
	}
	if n != rows || sum != src.payload {
		t.Errorf("table holds %d rows with %d payload bytes, want %d and %d", n, sum, rows, src.payload)
	}

	var out countingWriter
	start = time.Now()
	tag, err = c.PgConn().CopyTo(ctx, &out, "COPY "+table+" (id, payload) TO STDOUT")
	if err != nil {
		t.Fatalf("COPY TO: %v", err)
	}
	if tag.RowsAffected() != rows {
		t.Errorf("COPY TO: %q, want %d rows", tag, rows)
	}
	// The text that went in comes back out byte for byte in size.
	if out.n < 100<<20 || out.n != src.bytes {
		t.Errorf("COPY TO wrote %d bytes, want %d", out.n, src.bytes)
	}
	t.Logf("COPY TO: %.1f MB in %v", float64(out.n)/1e6, time.Since(start).Round(time.Millisecond))

	if _, err := c.Exec(ctx, "DROP TABLE "+table); err != nil {
		t.Fatal(err)
	}
}

// daemon is the pgmts binary run as a subprocess.
type daemon struct {
	cmd    *exec.Cmd
	port   int
	config string // the config file's path
	stderr *lockedBuffer
	done   chan struct{} // closed once the process has exited
	err    error         // how it exited, set before done is closed
}

// dsn is a connection string to the daemon as user bench.
func (d *daemon) dsn(extra ...string) string {
	return dsnAt(d.port, benchUser, benchPass, "bench", extra...)
}

func (d *daemon) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startDaemon runs the built pgmts binary in front of the cluster.
func startDaemon(t *testing.T) *daemon {
	t.Helper()
	return startDaemonWith(t, func(toml string) string { return toml })
}

// startDaemonWith runs the pgmts binary with configTOML changed by edit.
func startDaemonWith(t *testing.T, edit func(string) string) *daemon {
	t.Helper()
	needCluster(t)
	port := freePort(t)
	toml := edit(configTOML(port))
	path := filepath.Join(t.TempDir(), "pgmts.toml")
	if err := os.WriteFile(path, []byte(toml), 0o600); err != nil {
		t.Fatal(err)
	}
	d := &daemon{port: port, config: path, stderr: &lockedBuffer{}, done: make(chan struct{})}
	d.cmd = exec.Command(filepath.Join(binDir, "pgmts"), "-c", path)
	d.cmd.Stderr = d.stderr
	d.cmd.Stdout = d.stderr
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		d.err = d.cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() { d.stop(t) })

	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			return d
		}
		if d.exited() {
			t.Fatalf("pgmts exited at start: %v\n%s", d.err, d.stderr)
		}
		if time.Now().After(deadline) {
			t.Fatalf("pgmts does not listen on %d: %v\n%s", port, err, d.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGINT and waits for the daemon to exit. A daemon that is
// already gone is the test's business to report.
func (d *daemon) stop(t *testing.T) {
	if d.exited() {
		t.Logf("pgmts had already exited: %v", d.err)
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-d.done:
		if d.err != nil {
			t.Errorf("pgmts exited with %v after SIGINT\n%s", d.err, d.stderr)
		}
	case <-time.After(15 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
		t.Errorf("pgmts did not stop within 15 s of SIGINT\n%s", d.stderr)
	}
	if s := d.stderr.String(); s != "" {
		t.Logf("pgmts output:\n%s", s)
	}
}

// vmRSS reads a process's resident set size in bytes.
func vmRSS(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("odd VmRSS line %q", line)
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// replyCounter parses a stream of backend messages chunk by chunk.
type replyCounter struct {
	hdr     []byte // partial header
	skip    int    // body bytes of the current message still to come
	typ     byte
	body    []byte // kept for short messages we want to read (E, Z)
	rows    int64
	total   int64
	done    bool
	errText string
}

func (r *replyCounter) feed(b []byte) {
	r.total += int64(len(b))
	for len(b) > 0 && !r.done {
		if r.skip == 0 && len(r.hdr) < 5 {
			k := min(5-len(r.hdr), len(b))
			r.hdr = append(r.hdr, b[:k]...)
			b = b[k:]
			if len(r.hdr) < 5 {
				return
			}
			r.typ = r.hdr[0]
			r.skip = int(binary.BigEndian.Uint32(r.hdr[1:])) - 4
			r.body = r.body[:0]
			if r.typ == 'D' {
				r.rows++
			}
		}
		k := min(r.skip, len(b))
		if r.typ == 'E' || r.typ == 'Z' {
			r.body = append(r.body, b[:k]...)
		}
		r.skip -= k
		b = b[k:]
		if r.skip == 0 {
			switch r.typ {
			case 'E':
				var er pgproto3.ErrorResponse
				if er.Decode(r.body) == nil {
					r.errText = er.Code + " " + er.Message
				} else {
					r.errText = "malformed ErrorResponse"
				}
			case 'Z':
				r.done = true
			}
			r.hdr = r.hdr[:0]
		}
	}
}

func TestBigSelectSlowReader(t *testing.T) {
	if binDir == "" {
		needCluster(t)
		t.Fatal("no pgmts binary")
	}
	d := startDaemon(t)
	pid := d.cmd.Process.Pid

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dsn := d.dsn()
	pc, err := pgconn.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	// Warm the pool: the first query opens the backend.
	if _, err := pc.Exec(ctx, "SELECT 1").ReadAll(); err != nil {
		t.Fatal(err)
	}
	hj := hijack(t, pc)
	conn := hj.Conn
	defer conn.Close()

	time.Sleep(200 * time.Millisecond)
	base, err := vmRSS(pid)
	if err != nil {
		t.Fatal(err)
	}

	var (
		mu   sync.Mutex
		peak = base
		stop = make(chan struct{})
		wg   sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if rss, err := vmRSS(pid); err == nil {
				mu.Lock()
				peak = max(peak, rss)
				mu.Unlock()
			}
		}
	}()
	stopSampling := func() int64 {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return peak
	}
	defer stopSampling()

	const (
		rowCount = 520_000
		rowSize  = 1000
	)
	q, _ := (&pgproto3.Query{String: fmt.Sprintf("SELECT repeat('x', %d) FROM generate_series(1, %d)", rowSize, rowCount)}).Encode(nil)
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
	start := time.Now()
	if _, err := conn.Write(q); err != nil {
		t.Fatal(err)
	}
	// Let the backlog build up before reading at all.
	time.Sleep(2 * time.Second)

	var rc replyCounter
	buf := make([]byte, 64<<10)
	for !rc.done {
		n, err := conn.Read(buf)
		rc.feed(buf[:n])
		if err != nil {
			if !rc.done {
				t.Fatalf("after %d bytes, %d rows: %v", rc.total, rc.rows, err)
			}
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	elapsed := time.Since(start)
	peakRSS := stopSampling()

	if rc.errText != "" {
		t.Fatalf("query failed: %s", rc.errText)
	}
	if rc.rows != rowCount {
		t.Errorf("got %d DataRows, want %d", rc.rows, rowCount)
	}
	if rc.total < 500<<20 {
		t.Errorf("read only %d bytes, want at least 500 MiB", rc.total)
	}
	growth := peakRSS - base
	t.Logf("read %.1f MB (%d rows) in %v; daemon RSS: %.1f MB after login, peak %.1f MB, growth %.1f MB",
		float64(rc.total)/1e6, rc.rows, elapsed.Round(time.Millisecond), float64(base)/(1<<20), float64(peakRSS)/(1<<20), float64(growth)/(1<<20))
	if growth >= 64<<20 {
		t.Errorf("daemon RSS grew by %.1f MB reading a slow client's result, want < 64 MB", float64(growth)/(1<<20))
	}

	term, _ := (&pgproto3.Terminate{}).Encode(nil)
	_, _ = conn.Write(term)
}
