package config

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// typoTags writes a configuration of n tags; with typos, every tag carries
// one mistake, each kind of mistake in turn: an unknown key, a node id the
// decoder refuses, a value of the wrong type, a name that is no topic
// level, a duplicate name.
func typoTags(n int, typos bool) []byte {
	var b strings.Builder
	b.WriteString("agent:\n  id: ipc01\nplcs:\n  - name: press1\n    endpoint: opc.tcp://127.0.0.1:4840\n    tags:\n")
	for i := range n {
		if !typos {
			fmt.Fprintf(&b, "      - node: ns=2;s=Line1.Temp%d\n        name: t%d\n", i, i)
			continue
		}
		switch i % 5 {
		case 0:
			fmt.Fprintf(&b, "      - nod: ns=2;s=Line1.Temp%d\n", i)
		case 1:
			fmt.Fprintf(&b, "      - node: ns=2;x=Line1.Temp%d\n", i)
		case 2:
			fmt.Fprintf(&b, "      - node: ns=2;s=Line1.Temp%d\n        queue_size: many\n", i)
		case 3:
			fmt.Fprintf(&b, "      - node: ns=2;s=Line1.Temp%d\n        name: a/b%d\n", i, i)
		case 4:
			fmt.Fprintf(&b, "      - node: ns=2;s=Line1.Temp%d\n        name: dup\n", i)
		}
	}
	return []byte(b.String())
}

// parseTime is the least CPU time (user and system, of the whole process,
// so the garbage collector's share counts) of two parses of data. CPU
// time rather than wall time, and the lesser of two: the machine is
// shared, and other processes' load must not look like ours.
func parseTime(t *testing.T, data []byte) (time.Duration, error) {
	t.Helper()
	best, err := time.Duration(1<<63-1), error(nil)
	for range 2 {
		runtime.GC()
		start := cpuTime(t)
		_, err = Parse("c.yaml", data)
		best = min(best, cpuTime(t)-start)
	}
	return best, err
}

func cpuTime(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Loading grows linearly with the number of tags, with a mistake on every
// tag or none: the bound is a ratio against a configuration an eighth the
// size, measured in the same test, so a slow machine does not fail it. A
// quadratic path makes the ratio grow toward 64 (the ones fixed here gave
// over 40); linear measures 6 to 13.
func TestParseScalesLinearly(t *testing.T) {
	const small, factor, maxRatio = 1200, 8, 20
	for _, typos := range []bool{true, false} {
		t.Run(fmt.Sprintf("typos=%v", typos), func(t *testing.T) {
			tSmall, errSmall := parseTime(t, typoTags(small, typos))
			tLarge, errLarge := parseTime(t, typoTags(small*factor, typos))
			ratio := float64(tLarge) / float64(tSmall)
			t.Logf("CPU time: %d tags %v, %d tags %v, ratio %.1f", small, tSmall, small*factor, tLarge, ratio)
			if ratio > maxRatio {
				t.Errorf("%d times the tags took %.1f times as long, want at most %d", factor, ratio, maxRatio)
			}
			if !typos {
				if errSmall != nil || errLarge != nil {
					t.Fatalf("valid configuration refused: %v / %v", errSmall, errLarge)
				}
				return
			}
			var errs Errors
			if !errors.As(errLarge, &errs) {
				t.Fatalf("error is %T, want Errors", errLarge)
			}
			// Every tag's mistake is found; a duplicate name's first use is not one.
			if want := small*factor - 1; len(errs) < want {
				t.Errorf("%d problems, want at least %d", len(errs), want)
			}
		})
	}
}

// A long list of problems prints the first MaxShown and counts the rest.
func TestErrorsShownBounded(t *testing.T) {
	_, err := Parse("c.yaml", typoTags(1000, true))
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error is %T, want Errors", err)
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != MaxShown+1 {
		t.Fatalf("%d lines printed, want %d", len(lines), MaxShown+1)
	}
	if want := fmt.Sprintf("... and %d more", len(errs)-MaxShown); lines[MaxShown] != want {
		t.Errorf("last line %q, want %q", lines[MaxShown], want)
	}
	if lines[0] != errs[0].Error() || lines[MaxShown-1] != errs[MaxShown-1].Error() {
		t.Errorf("printed lines are not the first problems in order:\n%s\n%s", lines[0], lines[MaxShown-1])
	}
	if got := errs[:3].Error(); strings.Contains(got, "more") || len(strings.Split(got, "\n")) != 3 {
		t.Errorf("three problems print as %q", got)
	}
}
