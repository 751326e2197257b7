// Package testkit holds what the tests of several packages share: the
// process harnesses and the helpers around them, defined once.
package testkit

import (
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// maxLogBytes bounds what a Log keeps: enough to diagnose, never unbounded.
const maxLogBytes = 8 << 20

// Log is a log written by one goroutine or process and read by a test; it
// wakes waiters at every write instead of having them poll.
type Log struct {
	mu     sync.Mutex
	b      strings.Builder
	notify chan struct{}
}

// NewLogger returns a debug-level zerolog logger writing to a new Log,
// which is printed, under name, if the test fails.
func NewLogger(t testing.TB, name string) (zerolog.Logger, *Log) {
	l := &Log{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s log:\n%s", name, l.String())
		}
	})
	return zerolog.New(l).Level(zerolog.DebugLevel), l
}

func (l *Log) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.notify != nil {
		close(l.notify)
		l.notify = nil
	}
	if l.b.Len() > maxLogBytes {
		return len(p), nil
	}
	return l.b.Write(p)
}

// Changed returns a channel closed at the next write.
func (l *Log) Changed() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.notify == nil {
		l.notify = make(chan struct{})
	}
	return l.notify
}

func (l *Log) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Matching returns the lines of the log that match re.
func (l *Log) Matching(re *regexp.Regexp) []string {
	var got []string
	for line := range strings.Lines(l.String()) {
		if re.MatchString(line) {
			got = append(got, strings.TrimSuffix(line, "\n"))
		}
	}
	return got
}

// Wait waits until the log has n lines matching re and returns them; it
// fails the test after timeout, naming the writer.
func (l *Log) Wait(t testing.TB, writer string, re *regexp.Regexp, n int, timeout time.Duration) []string {
	t.Helper()
	var got []string
	if !Until(l.Changed, timeout, func() bool { got = l.Matching(re); return len(got) >= n }) {
		t.Fatalf("%s: %d log lines matching %q within %s, want %d:\n%s", writer, len(got), re, timeout, n, strings.Join(got, "\n"))
	}
	return got
}

// WaitFor waits until the log has a line containing all of parts and
// returns it; it fails the test after timeout.
func (l *Log) WaitFor(t testing.TB, timeout time.Duration, parts ...string) string {
	t.Helper()
	var found string
	has := func() bool {
		for line := range strings.Lines(l.String()) {
			if ContainsAll(line, parts...) {
				found = line
				return true
			}
		}
		return false
	}
	if !Until(l.Changed, timeout, has) {
		t.Fatalf("no log line with %q within %v", parts, timeout)
	}
	return found
}

// ContainsAll reports whether s contains every one of parts.
func ContainsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}
