package main

import (
	"math"
	"os"
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
