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
// the first request after the previous one. The series are written as
// github.com/VictoriaMetrics/metrics writes a Prometheus histogram.
func TestReadyRecordsDurations(t *testing.T) {
	var st serverStats
	now := queue.Nanotime()
	st.request(10, now-2e9) // the first query ran for 2s
	st.ready('T', now)
	st.request(10, now-5e4) // 50µs: the first bucket's bound is in it
	st.ready('I', now)
	st.request(10, now)
	st.ready('I', now)
	st.queryHist.observe(-1) // a clock that went back is not counted

	totals := st.totals()
	var b bytes.Buffer
	writeHistogram(&b, QueryHistogram, PoolLabels("db", "u"), &totals.QueryHist)
	writeHistogram(&b, TransactionHistogram, PoolLabels("db", "u"), &totals.XactHist)
	out := b.String()
	for _, want := range []string{
		`pgmts_pool_query_duration_seconds_bucket{database="db",user="u",le="5e-05"} 2`,
		`pgmts_pool_query_duration_seconds_bucket{database="db",user="u",le="1"} 2`,
		`pgmts_pool_query_duration_seconds_bucket{database="db",user="u",le="2.5"} 3`,
		`pgmts_pool_query_duration_seconds_bucket{database="db",user="u",le="+Inf"} 3`,
		`pgmts_pool_query_duration_seconds_sum{database="db",user="u"} 2.00005`,
		`pgmts_pool_query_duration_seconds_count{database="db",user="u"} 3`,
		`pgmts_pool_transaction_duration_seconds_count{database="db",user="u"} 2`,
		`pgmts_pool_transaction_duration_seconds_bucket{database="db",user="u",le="1"} 1`,
		`pgmts_pool_transaction_duration_seconds_bucket{database="db",user="u",le="2.5"} 2`,
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}

	// The same figures from a PrometheusHistogram of the library: the
	// same lines.
	set := metrics.NewSet()
	h := set.NewPrometheusHistogramExt(QueryHistogram+`{database="db",user="u"}`, durationBuckets[:])
	for _, d := range []float64{2, 0.00005, 0} {
		h.Update(d)
	}
	b.Reset()
	set.WritePrometheus(&b)
	var ours bytes.Buffer
	writeHistogram(&ours, QueryHistogram, PoolLabels("db", "u"), &totals.QueryHist)
	if b.String() != ours.String() {
		t.Errorf("written:\n%s\nthe library writes:\n%s", ours.String(), b.String())
	}
}

// TestQueueWaitHistogramDropped: a pool leaving the registry takes its
// queue-wait histogram out of the scrape.
func TestQueueWaitHistogramDropped(t *testing.T) {
	p := &Pools{metrics: metrics.NewSet()}
	h := p.newWaitHistogram("db", "u")
	var b bytes.Buffer
	p.WriteHistograms(&b, nil)
	if want := `pgmts_pool_queue_wait_seconds_count{database="db",user="u"} 0`; !strings.Contains(b.String(), want+"\n") {
		t.Errorf("no %q in:\n%s", want, b.String())
	}
	p.dropWaitHistogram(h)
	b.Reset()
	p.WriteHistograms(&b, nil)
	if b.Len() != 0 {
		t.Errorf("dropped histograms still written:\n%s", b.String())
	}
}

// BenchmarkReady is the reader's cost per ReadyForQuery: counters and
// the query and transaction histograms.
func BenchmarkReady(b *testing.B) {
	var st serverStats
	b.ReportAllocs()
	for b.Loop() {
		st.request(100, queue.Nanotime())
		st.ready('I', queue.Nanotime())
	}
}

// BenchmarkDurationHistograms is the part of BenchmarkReady the
// histograms add: two updates.
func BenchmarkDurationHistograms(b *testing.B) {
	var st serverStats
	b.ReportAllocs()
	for b.Loop() {
		st.queryHist.observe(180e3)
		st.xactHist.observe(400e3)
	}
}
