package publish

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/publish/brokertest"
)

// smallDisk mounts a tmpfs of size bytes in a temporary directory until
// the test ends. It fails the test, with the reason, if mounting is not
// permitted (the test needs root or CAP_SYS_ADMIN).
func smallDisk(t *testing.T, size int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "disk")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+itoa(size)); err != nil {
		t.Fatalf("mount a %d-byte tmpfs on %s: %v (the full-disk tests need root or CAP_SYS_ADMIN)", size, dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

func itoa(n int) string { return string(appendInt(nil, n)) }

func appendInt(b []byte, n int) []byte {
	if n >= 10 {
		b = appendInt(b, n/10)
	}
	return append(b, byte('0'+n%10))
}

// A disk that fills before max_bytes does: the spool drops its oldest
// records, as at max_bytes, and keeps the newest; with less room than a
// segment it still works, and it takes new records again as soon as there
// is room, across a restart too.
func TestSpoolDiskFull(t *testing.T) {
	disk := smallDisk(t, 2<<20)
	dir := filepath.Join(disk, "spool")
	const n = 40000 // some 5 MB: more than twice the disk
	s, _ := openSpool(t, dir, 256<<20)
	t.Cleanup(s.closeFiles) // before the unmount
	var failed int
	for i := range n {
		topic, payload := rec(i)
		if err := s.Append(topic, payload); err != nil {
			failed++
		}
		if i%500 == 499 {
			if err := s.Flush(); err != nil {
				failed++
			}
		}
	}
	if err := s.Flush(); err != nil {
		failed++
	}
	st := s.Stats()
	t.Logf("after %d records on a 2 MiB disk: %+v, %d append or flush errors", n, st, failed)
	if st.Dropped == 0 {
		t.Fatal("nothing dropped: the disk did not fill")
	}
	got := readAll(t, s)
	if len(got) == 0 || got[len(got)-1] != n-1 {
		t.Fatalf("read %d records, the last %v: want the newest kept", len(got), got[max(0, len(got)-1):])
	}
	for k, i := range got {
		if i != got[0]+k {
			t.Fatalf("record %d after %d: want the newest records, without a gap", i, got[max(0, k-1)])
		}
	}
	if failed > 0 {
		t.Errorf("%d appends or flushes failed: the oldest records should have made room", failed)
	}
	s.Ack(^uint64(0) - 1) // the broker has all read

	// Fill the disk to the last byte with another file, then free it:
	// the spool takes records again at once.
	ballast := fillDisk(t, disk)
	appendN(t, s, n, n+10) // room is made by dropping what was read
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	appendN(t, s, n+10, n+2000)
	if got := readAll(t, s); len(got) == 0 || got[len(got)-1] != n+1999 {
		t.Fatalf("after the disk had room again, read %d records, want up to %d", len(got), n+1999)
	}
	s.Ack(^uint64(0) - 1)
	appendN(t, s, n+2000, n+3000)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, _ = openSpool(t, dir, 256<<20)
	t.Cleanup(s.closeFiles)
	if got := readAll(t, s); len(got) != 1000 || got[0] != n+2000 {
		t.Fatalf("after a restart, read %d records from %v, want 1000 from %d", len(got), got[:min(1, len(got))], n+2000)
	}
}

// fillDisk writes a file until the disk holding dir is full, and returns
// its name.
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	name := filepath.Join(dir, "ballast")
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			return name
		}
	}
}

// The publisher on a 2 MiB disk with the broker down: the newest values
// are kept, none fails, and once the broker is back they and every new
// value arrive; a restart on the full disk sends what the spool holds.
// Before, new values were all dropped even after the broker came back, and
// a restart delivered none.
func TestDiskFullPublisher(t *testing.T) {
	disk := smallDisk(t, 2<<20)
	b := brokertest.Start(t)
	got := newArrivals()
	got.consume(t, brokertest.Subscribe(t, b.URL(), "tagbridge/#", 1), false)
	b.Stop()

	log, _ := newLog(t)
	cfg := testConfig(b.URL(), 1)
	cfg.Agent.SpoolDir = filepath.Join(disk, "spool")
	p := newPublisher(t, cfg, log)
	in := make(chan collectors.Batch) // each one taken and spooled before the next
	done := start(t, p, in)
	const n = 30000 // some 4 MB of JSON
	for i := range n {
		in <- collectors.Batch{seqSample(i)}
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
		in <- collectors.Batch{seqSample(i)}
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
	in = make(chan collectors.Batch)
	ctx, cancel := context.WithCancel(t.Context())
	stopped := make(chan error, 1)
	go func() { stopped <- p.Run(ctx, in) }()
	for i := n + 1000; i < 2*n; i++ {
		in <- collectors.Batch{seqSample(i)}
	}
	waitStats(t, p, "all spooled or dropped", wait, func(st Stats) bool { return st.Spooled+st.Dropped == n-1000 })
	cancel()
	if err := result(t, stopped); err != nil {
		t.Fatalf("Run: %v", err)
	}
	ballast := fillDisk(t, disk)
	defer os.Remove(ballast)
	b.Restart()
	cfg.MQTT.ClientID += "-3"
	p = newPublisher(t, cfg, log)
	in = make(chan collectors.Batch)
	done = start(t, p, in)
	got.waitUntil(t, "the newest value after a restart on the full disk", wait, func() bool { return got.seen[topic][2*n-1] })
	close(in)
	if err := result(t, done); err != nil {
		t.Fatalf("Run: %v", err)
	}
}
