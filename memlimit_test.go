package main

import (
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/rs/zerolog"

	"github.com/tagbridge/tagbridge/config"
)

// TestApplyMemoryLimit sets the runtime's limit from the configuration, lifts
// it again on a reload that asks for none, and leaves it to GOMEMLIMIT when
// that is set.
func TestApplyMemoryLimit(t *testing.T) {
	t.Cleanup(func() { debug.SetMemoryLimit(math.MaxInt64) })
	current := func() int64 { return debug.SetMemoryLimit(-1) }
	t.Setenv("GOMEMLIMIT", "")
	os.Unsetenv("GOMEMLIMIT")
	cfg := &config.Config{Agent: config.Agent{MemoryLimit: "96MiB"}}

	applyMemoryLimit(cfg, zerolog.Nop())
	if got := current(); got != 96<<20 {
		t.Fatalf("limit %d, want 96 MiB", got)
	}
	cfg.Agent.MemoryLimit = config.MemoryLimitOff
	applyMemoryLimit(cfg, zerolog.Nop())
	if got := current(); got != math.MaxInt64 {
		t.Fatalf("limit %d after off, want none", got)
	}

	t.Setenv("GOMEMLIMIT", "200MiB")
	debug.SetMemoryLimit(200 << 20) // as the runtime read it at start
	cfg.Agent.MemoryLimit = "96MiB"
	applyMemoryLimit(cfg, zerolog.Nop())
	if got := current(); got != 200<<20 {
		t.Fatalf("limit %d with GOMEMLIMIT=200MiB, want it left at 200 MiB", got)
	}
}

// TestLimitFollowsLiveHeap: the limit in force is the configured one while
// the live heap leaves the collector room, and rises with a live heap
// (a backlog) that would not, instead of making the collector run without
// pause; back to the configured one once the heap shrinks.
func TestLimitFollowsLiveHeap(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name       string
		base, live int64
		want       int64
	}{
		{"no limit", 0, 500 * mib, math.MaxInt64},
		{"tags only", 62 * mib, 38 * mib, 62 * mib},
		{"at the headroom", 60 * mib, 40 * mib, 60 * mib},
		{"a backlog", 62 * mib, 100 * mib, 150 * mib},
	}
	for _, tt := range tests {
		if got := limitFor(tt.base, tt.live); got != tt.want {
			t.Errorf("%s: limitFor(%d, %d) = %d, want %d", tt.name, tt.base, tt.live, got, tt.want)
		}
	}

	t.Cleanup(func() { debug.SetMemoryLimit(math.MaxInt64) })
	t.Setenv("GOMEMLIMIT", "")
	os.Unsetenv("GOMEMLIMIT")
	applyMemoryLimit(&config.Config{Agent: config.Agent{MemoryLimit: "16MiB"}}, zerolog.Nop())
	backlog := make([][]byte, 0, 40)
	for range cap(backlog) {
		backlog = append(backlog, make([]byte, 1<<20))
	}
	runtime.GC()
	followLiveHeap()
	if got := debug.SetMemoryLimit(-1); got < 40*mib*3/2 {
		t.Errorf("limit %d MiB with a live heap of 40 MiB and more, want at least 60 MiB", got/mib)
	}
	runtime.KeepAlive(backlog)
	backlog = nil
	runtime.GC()
	followLiveHeap()
	if got := debug.SetMemoryLimit(-1); got != 16*mib {
		t.Errorf("limit %d MiB once the heap shrank, want the configured 16 MiB", got/mib)
	}
}
