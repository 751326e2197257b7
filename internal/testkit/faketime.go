package testkit

import (
	"fmt"
	"path/filepath"
	"time"
)

// FakeTimeEnv is the environment that runs a program under libfaketime
// with its wall clock shifted by offset (whole seconds), monotonic clocks
// untouched. It preloads the library itself instead of running the
// faketime wrapper: the wrapper keeps a POSIX semaphore named after its
// process id, which a killed wrapper leaves behind, and a later wrapper
// that gets the same pid (soon, in a container) refuses to start with
// "sem_open: File exists". multiThreaded picks libfaketimeMT, for
// programs such as node.
func FakeTimeEnv(offset time.Duration, multiThreaded bool) ([]string, error) {
	name := "libfaketime.so.1"
	if multiThreaded {
		name = "libfaketimeMT.so.1"
	}
	var lib string
	for _, pattern := range []string{"/usr/lib/*/faketime/" + name, "/usr/lib/faketime/" + name, "/usr/local/lib/faketime/" + name} {
		if m, _ := filepath.Glob(pattern); len(m) > 0 {
			lib = m[0]
			break
		}
	}
	if lib == "" {
		return nil, fmt.Errorf("%s not found under /usr/lib/*/faketime: install the Debian package faketime (scripts/test does)", name)
	}
	return []string{
		"LD_PRELOAD=" + lib,
		fmt.Sprintf("FAKETIME=%+d", int64(offset.Round(time.Second)/time.Second)),
		"FAKETIME_DONT_FAKE_MONOTONIC=1",
	}, nil
}
