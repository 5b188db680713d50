package sharedserver

import (
	"bytes"
	"strings"
	"testing"

	"github.com/VictoriaMetrics/metrics"

	"github.com/pgmts/pgmts/queue"
)

// TestReadyRecordsDurations: every ReadyForQuery is a query in the query
// histogram, and one with status idle ends a transaction that started at
// the first request after the previous one.
func TestReadyRecordsDurations(t *testing.T) {
	p := &Pools{metrics: metrics.NewSet()}
	st := serverStats{hist: p.newHistograms("db", "u")}
	now := queue.Nanotime()
	st.request(10, now-2e9) // the first query ran for 2s
	st.ready('T', now)
	st.request(10, now)
	st.ready('I', now)
	st.request(10, now)
	st.ready('I', now)

	var b bytes.Buffer
	p.WriteHistograms(&b)
	out := b.String()
	for _, want := range []string{
		`pgmts_pool_query_duration_seconds_count{database="db",user="u"} 3`,
		`pgmts_pool_query_duration_seconds_bucket{database="db",user="u",le="1"} 2`,
		`pgmts_pool_query_duration_seconds_bucket{database="db",user="u",le="2.5"} 3`,
		`pgmts_pool_transaction_duration_seconds_count{database="db",user="u"} 2`,
		`pgmts_pool_transaction_duration_seconds_bucket{database="db",user="u",le="1"} 1`,
		`pgmts_pool_queue_wait_seconds_count{database="db",user="u"} 0`,
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
	p.dropHistograms(st.hist)
	b.Reset()
	p.WriteHistograms(&b)
	if b.Len() != 0 {
		t.Errorf("dropped histograms still written:\n%s", b.String())
	}
}

// BenchmarkReady is the reader's cost per ReadyForQuery: counters and
// the query and transaction histograms.
func BenchmarkReady(b *testing.B) {
	p := &Pools{metrics: metrics.NewSet()}
	st := serverStats{hist: p.newHistograms("db", "u")}
	b.ReportAllocs()
	for b.Loop() {
		st.request(100, queue.Nanotime())
		st.ready('I', queue.Nanotime())
	}
}

// BenchmarkDurationHistograms is the part of BenchmarkReady the
// histograms add: two updates.
func BenchmarkDurationHistograms(b *testing.B) {
	p := &Pools{metrics: metrics.NewSet()}
	h := p.newHistograms("db", "u")
	b.ReportAllocs()
	for b.Loop() {
		h.query.Update(seconds(180e3))
		h.xact.Update(seconds(400e3))
	}
}
