package main

import (
	"math"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/tagbridge/tagbridge/config"
)

// memLimit is the soft memory limit the configuration asks for and the one
// in force. A limit taken from the tag count holds while the live heap is
// the tags' own; a backlog (values the publisher has not sent yet) grows
// the live heap towards it, and then the collector would run without
// pause and take the CPU the agent needs to catch up (S3 batch fell to
// 54,000 values/s at 6 µs a value in one starved run, S3 with one message
// per value to a third at ×5.4). So the limit in force never falls below
// liveHeadroom times the live heap, read once a second: the process's
// whole life, hence no context.
var memLimit struct {
	mu      sync.Mutex
	base    int64 // from agent.memory_limit; 0: none
	inForce int64
	follow  sync.Once
}

// liveHeadroom is the least ratio of the limit to the live heap: the
// collector then runs at most about twice as often as with no limit.
const liveHeadroom = 1.5

// applyMemoryLimit sets the Go runtime's soft memory limit from
// agent.memory_limit (config.MemoryLimit), at start and on every reload,
// where a limit may also be lifted. GOMEMLIMIT in the environment wins:
// then tagbridge leaves the runtime's limit alone.
func applyMemoryLimit(cfg *config.Config, log zerolog.Logger) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	base := cfg.MemoryLimit()
	memLimit.mu.Lock()
	memLimit.base = base
	memLimit.mu.Unlock()
	followLiveHeap()
	if base == 0 {
		return
	}
	log.Info().Int64("memory_limit_bytes", base).Str("setting", cfg.Agent.MemoryLimit).Msg("soft memory limit set")
	memLimit.follow.Do(func() {
		go func() {
			for range time.Tick(time.Second) {
				followLiveHeap()
			}
		}()
	})
}

// followLiveHeap puts limitFor(base, live heap) in force.
func followLiveHeap() {
	memLimit.mu.Lock()
	defer memLimit.mu.Unlock()
	if limit := limitFor(memLimit.base, liveHeap()); limit != memLimit.inForce {
		debug.SetMemoryLimit(limit)
		memLimit.inForce = limit
	}
}

// limitFor is the limit in force for the configured base: none without
// one, else base, raised to liveHeadroom times the live heap.
func limitFor(base, live int64) int64 {
	if base == 0 {
		return math.MaxInt64
	}
	return max(base, int64(float64(live)*liveHeadroom))
}

// liveHeap is the heap the last collection found reachable.
func liveHeap() int64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return int64(s[0].Value.Uint64())
}
