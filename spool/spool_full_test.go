package spool

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/tagbridge/tagbridge/internal/testkit"
)

// A disk that fills before max_bytes does: the spool drops its oldest
// records, as at max_bytes, and keeps the newest; with less room than a
// segment it still works, and it takes new records again as soon as there
// is room, across a restart too.
func TestSpoolDiskFull(t *testing.T) {
	disk := testkit.SmallDisk(t, 2<<20)
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
	ballast := testkit.FillDisk(t, disk)
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
