package main

import (
	"os"
	"runtime/pprof"
	"time"

	"github.com/rs/zerolog"
)

// cpuProfileEnv names a file for a CPU profile of `tagbridge run`, from
// start to stop: a diagnostics aid for the benchmarks (scripts/bench
// -cpuprofile-dir), read with `go tool pprof`. Unset in production; no
// network endpoint is involved.
const cpuProfileEnv = "TAGBRIDGE_CPUPROFILE"

// memProfileEnv names a file for heap profiles of `tagbridge run`, the
// same aid: rewritten every memProfileEvery while it runs, so that the file
// shows the heap under load, not after the drain at stop.
const memProfileEnv = "TAGBRIDGE_MEMPROFILE"

const memProfileEvery = 2 * time.Second

// startCPUProfile starts the profiles that cpuProfileEnv and memProfileEnv
// ask for, if any, and returns the function that stops them.
func startCPUProfile(log zerolog.Logger) (stop func()) {
	stopMem := startMemProfile(log)
	stopCPU := startCPU(log)
	return func() { stopCPU(); stopMem() }
}

func startMemProfile(log zerolog.Logger) (stop func()) {
	path := os.Getenv(memProfileEnv)
	if path == "" {
		return func() {}
	}
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(memProfileEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			f, err := os.Create(path + ".tmp")
			if err == nil {
				err = pprof.WriteHeapProfile(f)
				if cerr := f.Close(); err == nil {
					err = cerr
				}
			}
			if err == nil {
				err = os.Rename(path+".tmp", path)
			}
			if err != nil {
				log.Warn().Err(err).Msg(memProfileEnv + ": no heap profile")
				return
			}
		}
	}()
	return func() { close(done); <-stopped }
}

func startCPU(log zerolog.Logger) (stop func()) {
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
