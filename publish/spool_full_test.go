package publish

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/internal/testkit"
)

// The publisher on a 2 MiB disk with the broker down: the newest values
// are kept, none fails, and once the broker is back they and every new
// value arrive; a restart on the full disk sends what the spool holds.
// Before, new values were all dropped even after the broker came back, and
// a restart delivered none.
func TestDiskFullPublisher(t *testing.T) {
	disk := testkit.SmallDisk(t, 2<<20)
	b := testkit.StartBroker(t)
	got := newArrivals()
	got.consume(t, testkit.Subscribe(t, b.URL(), "tagbridge/#", 1), false)
	b.Stop()

	log, _ := testkit.NewLogger(t, "publisher")
	cfg := testkit.Config(b.URL(), 1)
	cfg.Agent.SpoolDir = filepath.Join(disk, "spool")
	p := newPublisher(t, cfg, log)
	in := make(chan collectors.Event) // each one taken and spooled before the next
	done := start(t, p, in)
	const n = 30000 // some 4 MB of JSON
	for i := range n {
		in <- collectors.Event{Batch: collectors.Batch{seqSample(i)}}
	}
	st := waitStats(t, p, fmt.Sprintf("spooled + dropped = %d", n), wait, func(st Stats) bool { return st.Spooled+st.Dropped == n })
	t.Logf("broker down, %d values on a 2 MiB disk: %+v", n, st)
	if st.Dropped == 0 || st.Failed != 0 {
		t.Fatalf("Stats = %+v: want the oldest dropped, none failed", st)
	}
	kept := int(st.Spooled)
	b.Restart()
	// The disk is full until the kept values are out: a value taken
	// meanwhile pushes the oldest out, as max_bytes would. New values come
	// once the backlog went.
	topic := "tagbridge/a1/press1/temperature"
	got.waitUntil(t, "the kept values", wait, func() bool { return len(got.seen[topic]) >= kept })
	for i := n; i < n+1000; i++ {
		in <- collectors.Event{Batch: collectors.Batch{seqSample(i)}}
	}
	close(in)
	if err := result(t, done); err != nil {
		t.Fatalf("Run: %v", err)
	}
	got.waitUntil(t, "the kept and the new values", wait, func() bool { return len(got.seen[topic]) >= kept+1000 })
	got.mu.Lock()
	for v := n - kept; v < n+1000; v++ {
		if !got.seen[topic][int64(v)] {
			t.Errorf("value %d missing (kept %d from %d)", v, kept, n-kept)
			break
		}
	}
	got.mu.Unlock()
	if st := p.Stats(); st.Failed != 0 {
		t.Errorf("Stats = %+v, want none failed", st)
	}

	// Full again with the broker down; stopped hard; the disk filled to the
	// last byte by another file; started again with the broker up.
	b.Stop()
	cfg.MQTT.ClientID += "-2"
	p = newPublisher(t, cfg, log)
	in = make(chan collectors.Event)
	ctx, cancel := context.WithCancel(t.Context())
	stopped := make(chan error, 1)
	go func() { stopped <- p.Run(ctx, in) }()
	for i := n + 1000; i < 2*n; i++ {
		in <- collectors.Event{Batch: collectors.Batch{seqSample(i)}}
	}
	waitStats(t, p, "all spooled or dropped", wait, func(st Stats) bool { return st.Spooled+st.Dropped == n-1000 })
	cancel()
	if err := result(t, stopped); err != nil {
		t.Fatalf("Run: %v", err)
	}
	ballast := testkit.FillDisk(t, disk)
	defer os.Remove(ballast)
	b.Restart()
	cfg.MQTT.ClientID += "-3"
	p = newPublisher(t, cfg, log)
	in = make(chan collectors.Event)
	done = start(t, p, in)
	got.waitUntil(t, "the newest value after a restart on the full disk", wait, func() bool { return got.seen[topic][2*n-1] })
	close(in)
	if err := result(t, done); err != nil {
		t.Fatalf("Run: %v", err)
	}
}
