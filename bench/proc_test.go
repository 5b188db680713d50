package main

import (
	"os"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	// The command name may hold spaces and parentheses.
	stat := "4242 (pg (x) y) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 9 0 100 1000000 500 18446744073709551615\n"
	got, err := parseStatCPU(stat)
	if err != nil || got != 3250*time.Millisecond {
		t.Fatalf("parseStatCPU = %v, %v; want 3.25s", got, err)
	}
	if _, err := parseStatCPU("4242 (x) S 1 2"); err == nil {
		t.Fatal("short line: want an error")
	}
	if d, err := cpuTime(os.Getpid()); err != nil || d < 0 {
		t.Fatalf("cpuTime(self) = %v, %v", d, err)
	}
}

func TestParseStatusKiB(t *testing.T) {
	status := "Name:\tpgbouncer\nVmHWM:\t   13208 kB\nVmRSS:\t   12904 kB\n"
	if v, err := parseStatusKiB(status, "VmRSS"); err != nil || v != 12904 {
		t.Fatalf("VmRSS = %d, %v", v, err)
	}
	if v, err := parseStatusKiB(status, "VmHWM"); err != nil || v != 13208 {
		t.Fatalf("VmHWM = %d, %v", v, err)
	}
	if _, err := parseStatusKiB(status, "VmSwap"); err == nil {
		t.Fatal("missing key: want an error")
	}
	if _, err := parseStatusKiB("VmRSS: 12 MB\n", "VmRSS"); err == nil {
		t.Fatal("odd unit: want an error")
	}
	s := sampleRSS(os.Getpid())
	if peak := s.finish(); peak <= 0 {
		t.Fatalf("peak RSS of self = %d", peak)
	}
}

func TestCollected(t *testing.T) {
	log := "==4214== \n==4214== Events    : Ir\n==4214== Collected : 55983047\n==4214== \n==4214== I   refs:      55,983,047\n"
	if n, err := collected(log); err != nil || n != 55983047 {
		t.Fatalf("collected = %d, %v; want 55983047", n, err)
	}
	if _, err := collected("==1== Callgrind: threads.c:247 (vgCallgrind_post_signal): Assertion failed.\n"); err == nil {
		t.Fatal("a log with no total: want an error")
	}
}
