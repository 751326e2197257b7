package main

import (
	"os"
	"runtime/pprof"

	"github.com/rs/zerolog"
)

// cpuProfileEnv names a file for a CPU profile of `tagbridge run`, from
// start to stop: a diagnostics aid for the benchmarks (scripts/bench
// -cpuprofile-dir), read with `go tool pprof`. Unset in production; no
// network endpoint is involved.
const cpuProfileEnv = "TAGBRIDGE_CPUPROFILE"

// startCPUProfile starts the profile that cpuProfileEnv asks for, if any,
// and returns the function that stops and writes it.
func startCPUProfile(log zerolog.Logger) (stop func()) {
	path := os.Getenv(cpuProfileEnv)
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		log.Warn().Err(err).Msg(cpuProfileEnv + ": no CPU profile")
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		log.Warn().Err(err).Msg(cpuProfileEnv + ": no CPU profile")
		return func() {}
	}
	log.Info().Str("file", path).Msg("writing a CPU profile (" + cpuProfileEnv + ")")
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			log.Warn().Err(err).Msg(cpuProfileEnv + ": CPU profile incomplete")
		}
	}
}
