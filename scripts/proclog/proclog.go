// Package proclog collects the log of a test peer process (node-opcua,
// open62541) and waits for lines in it, for the process harnesses.
package proclog

import (
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// maxBytes bounds what a Buffer keeps: enough to diagnose, never unbounded.
const maxBytes = 8 << 20

// Buffer is a peer's log; it tells waiters when it grows.
type Buffer struct {
	mu     sync.Mutex
	b      strings.Builder
	notify chan struct{}
}

func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.notify != nil {
		close(l.notify)
		l.notify = nil
	}
	if l.b.Len() > maxBytes {
		return len(p), nil
	}
	return l.b.Write(p)
}

// changed returns a channel closed at the next write.
func (l *Buffer) changed() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.notify == nil {
		l.notify = make(chan struct{})
	}
	return l.notify
}

func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Matching returns the lines of the log that match re.
func (l *Buffer) Matching(re *regexp.Regexp) []string {
	var got []string
	for _, line := range strings.Split(l.String(), "\n") {
		if re.MatchString(line) {
			got = append(got, line)
		}
	}
	return got
}

// Wait waits until the log has n lines matching re and returns them; it
// fails the test after timeout, naming the peer.
func (l *Buffer) Wait(t testing.TB, peer string, re *regexp.Regexp, n int, timeout time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		changed := l.changed() // before reading, so no write is missed
		got := l.Matching(re)
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d log lines matching %q within %s, want %d:\n%s", peer, len(got), re, timeout, n, strings.Join(got, "\n"))
		}
		select {
		case <-changed:
		case <-time.After(time.Until(deadline)):
		}
	}
}
