package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestStatsAdd(t *testing.T) {
	msg := func(tag, value string) []byte {
		return []byte(`{"plc":"plc00","tag":"` + tag + `","node":"ns=1;s=X","value":` + value +
			`,"type":"Int32","status":"Good","status_code":0,"source_time":"2026-11-22T10:15:30.123456Z","server_time":"2026-11-22T10:15:30.124Z"}`)
	}
	tests := []struct {
		name       string
		values     []string
		gaps, dups int64
	}{
		{name: "in order", values: []string{"1", "2", "3"}},
		{name: "gap", values: []string{"1", "4", "5"}, gaps: 2},
		{name: "duplicate", values: []string{"1", "2", "2", "3"}, dups: 1},
		{name: "older after newer", values: []string{"1", "3", "2", "4"}, gaps: 1, dups: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStats(2)
			s.window(true)
			arrived := time.Date(2026, 11, 22, 10, 15, 30, 173456000, time.UTC)
			for _, v := range tc.values {
				s.add(msg("int32_0001", v), arrived)
			}
			s.add(msg("string_0003", `"v1"`), arrived)
			if s.parseErrs != 0 {
				t.Fatalf("parse errors: %s", s.firstParseErr)
			}
			if s.gaps != tc.gaps || s.dups != tc.dups {
				t.Errorf("gaps %d, dups %d; want %d, %d", s.gaps, s.dups, tc.gaps, tc.dups)
			}
			if int64(len(s.firstDups)) != tc.dups {
				t.Errorf("%d duplicates noted, want %d", len(s.firstDups), tc.dups)
			}
			for _, d := range s.firstDups {
				if d.key != `plc00","tag":"int32_0001` || d.value != 2 || d.arrived != arrived || !d.inWindow {
					t.Errorf("duplicate noted as %+v, want int32_0001's 2, arrived at %s, in the window", d, arrived)
				}
			}
			if got := s.seenCount(); got != 2 {
				t.Errorf("tags seen %d, want 2", got)
			}
			if want := int64(len(tc.values) + 1); s.windowCount != want {
				t.Errorf("window count %d, want %d", s.windowCount, want)
			}
			if l := s.latencies[0]; l < 49.99 || l > 50.01 {
				t.Errorf("latency %v ms, want 50", l)
			}
		})
	}
}

func TestStatsAddBatch(t *testing.T) {
	obj := func(tag, value string) string {
		return `{"plc":"plc00","tag":"` + tag + `","node":"ns=1;s=X","value":` + value +
			`,"type":"Int32","status":"Good","status_code":0,"source_time":"2026-11-22T10:15:30.123456Z"}`
	}
	arrived := time.Date(2026, 11, 22, 10, 15, 30, 173456000, time.UTC)
	s := newStats(3)
	s.window(true)
	s.add([]byte("["+obj("int32_0001", "1")+","+obj("int32_0005", "7")+","+obj("string_0003", `"v1"`)+"]"), arrived)
	s.add([]byte("["+obj("int32_0001", "2")+","+obj("int32_0005", "9")+"]"), arrived)
	s.add([]byte("["+obj("int32_0001", "2")+"]"), arrived)
	if s.parseErrs != 0 {
		t.Fatalf("parse errors: %s", s.firstParseErr)
	}
	if s.gaps != 1 || s.dups != 1 {
		t.Errorf("gaps %d, dups %d; want 1, 1", s.gaps, s.dups)
	}
	if got := s.seenCount(); got != 3 {
		t.Errorf("tags seen %d, want 3", got)
	}
	if s.windowCount != 6 || len(s.latencies) != 6 {
		t.Errorf("window count %d, latencies %d; want 6, 6", s.windowCount, len(s.latencies))
	}
	// The duplicate came in the third message (one value); the 2 before it in the second.
	if len(s.firstDups) != 1 || s.firstDups[0].msg != 3 || s.firstDups[0].msgValues != 1 || s.firstDups[0].prevMsg != 2 {
		t.Errorf("duplicates noted %+v, want one in message 3 of 1 value, the value before in message 2", s.firstDups)
	}
	for _, bad := range []string{"[]", `[{"state":"online"}]`, "[" + obj("int32_0001", "x") + "]"} {
		s.add([]byte(bad), arrived)
	}
	if s.parseErrs != 3 {
		t.Errorf("parse errors %d, want 3 (first: %s)", s.parseErrs, s.firstParseErr)
	}
}

func TestMedianPercentile(t *testing.T) {
	if got := median([]float64{3, 1, 2}); got != 2 {
		t.Errorf("median odd = %v", got)
	}
	if got := median([]float64{4, 1, 2, 3}); got != 2.5 {
		t.Errorf("median even = %v", got)
	}
	v := make([]float64, 100)
	for i := range v {
		v[i] = float64(i + 1)
	}
	if p50, p99 := percentile(v, 0.5), percentile(v, 0.99); p50 != 51 || p99 != 100 {
		t.Errorf("p50 %v, p99 %v", p50, p99)
	}
}

func TestBrokerReconnects(t *testing.T) {
	log := `1796325466: New client connected from 127.0.0.1:54832 as bench-sub-8102-0 (p2, c1, k30).
1796325467: New client connected from 127.0.0.1:54840 as tagbridge-bench (p2, c0, k30).
1796325480: Client tagbridge-bench has exceeded timeout, disconnecting.
1796325482: New client connected from 127.0.0.1:54850 as tagbridge-bench (p2, c0, k30).
`
	path := filepath.Join(t.TempDir(), "mosquitto.log")
	if err := os.WriteFile(path, []byte(log), 0o600); err != nil {
		t.Fatal(err)
	}
	if n := brokerReconnects(path); n != 1 {
		t.Errorf("reconnects %d, want 1", n)
	}
	if n := brokerReconnects(filepath.Join(t.TempDir(), "none.log")); n != 0 {
		t.Errorf("reconnects of a missing log %d, want 0", n)
	}
}
