package dispatcher

import "testing"

// The loop's busy time is sampled: one wake-up in busySample is timed and
// counts for busySample. The estimate must not depend on a pattern in the
// wake-ups: at one client they alternate between a request (cheap here)
// and its reply (dear).
func TestBusySample(t *testing.T) {
	var s dispatcherStats
	if !s.timeThisBatch() {
		t.Fatal("the first wake-up was not timed: a loop that did anything must show busy time")
	}
	const runs = 20000
	var actual, estimate int64
	timed := 1
	for i := 1; i < busySample*runs; i++ {
		length := int64(1)
		if i%2 == 1 {
			length = 3
		}
		actual += length
		if s.timeThisBatch() {
			timed++
			estimate += busySample * length
		}
		if (i+1)%busySample == 0 && timed != (i+1)/busySample {
			t.Fatalf("after %d wake-ups %d were timed, want one in %d", i+1, timed, busySample)
		}
	}
	if r := float64(estimate) / float64(actual); r < 0.97 || r > 1.03 {
		t.Errorf("busy time estimated at %.3f of the actual over alternating wake-ups", r)
	}
}
