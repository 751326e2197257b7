package main

import (
	"math"
	"os"
	"runtime/debug"

	"github.com/rs/zerolog"

	"github.com/tagbridge/tagbridge/config"
)

// applyMemoryLimit sets the Go runtime's soft memory limit from
// agent.memory_limit (config.MemoryLimit), at start and on every reload,
// where a limit may also be lifted. GOMEMLIMIT in the environment wins:
// then tagbridge leaves the runtime's limit alone.
func applyMemoryLimit(cfg *config.Config, log zerolog.Logger) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	limit := cfg.MemoryLimit()
	if limit == 0 {
		debug.SetMemoryLimit(math.MaxInt64) // the runtime's own default: none
		return
	}
	debug.SetMemoryLimit(limit)
	log.Info().Int64("memory_limit_bytes", limit).Str("setting", cfg.Agent.MemoryLimit).Msg("soft memory limit set")
}
