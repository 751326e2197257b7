package spool

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tagbridge/tagbridge/internal/testkit"

	"github.com/tagbridge/tagbridge/internal/testutil"
)

// wait bounds every wait on the spool's log.
const wait = 20 * time.Second

// rec is the i-th test record: a topic per tag of 7, and a payload of a
// size that varies with i.
func rec(i int) (string, []byte) {
	return fmt.Sprintf("tagbridge/a1/plc/tag%d", i%7), fmt.Appendf(nil, `{"value":%d,"pad":"%s"}`, i, strings.Repeat("x", i%97))
}

func recIndex(t *testing.T, payload []byte) int {
	t.Helper()
	var i int
	if _, err := fmt.Sscanf(string(payload), `{"value":%d,`, &i); err != nil {
		t.Fatalf("payload %q: %v", payload, err)
	}
	return i
}

func openSpool(t *testing.T, dir string, maxBytes int64) (*Spool, *testkit.Log) {
	t.Helper()
	log, sink := testkit.NewLogger(t, "spool")
	s, err := Open(dir, maxBytes, log)
	if err != nil {
		t.Fatal(err)
	}
	return s, sink
}

func appendN(t *testing.T, s *Spool, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		topic, payload := rec(i)
		if err := s.Append(topic, payload); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
}

// readN reads n records, checks they are from, from+1, ... and returns the
// sequence number of the last.
func readN(t *testing.T, s *Spool, from, n int) uint64 {
	t.Helper()
	var seq uint64
	for i := from; i < from+n; i++ {
		topic, payload, next, ok := s.Peek()
		if !ok {
			t.Fatalf("record %d: spool empty", i)
		}
		wantTopic, wantPayload := rec(i)
		if topic != wantTopic || !bytes.Equal(payload, wantPayload) {
			t.Fatalf("record %d: got %s %s, want %s %s", i, topic, payload, wantTopic, wantPayload)
		}
		if !s.Advance(next) {
			t.Fatalf("record %d: Advance failed", i)
		}
		seq = next
	}
	return seq
}

func segments(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestSpoolAppendReadAck(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	s, _ := openSpool(t, dir, 1<<20) // 128 KiB segments
	defer s.Close()
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("spool dir: %v, %v; want mode 0700", fi.Mode(), err)
	}
	if _, _, _, ok := s.Peek(); ok || s.Unread() {
		t.Fatal("new spool not empty")
	}
	const n = 5000
	appendN(t, s, 0, n)
	if got := len(segments(t, dir)); got < 3 {
		t.Fatalf("%d segments, want several", got)
	}
	if st := s.Stats(); st.Values != n || st.Bytes <= 0 {
		t.Fatalf("Stats = %+v, want %d values", st, n)
	}
	// Interleave reading and appending.
	last := readN(t, s, 0, 3000)
	appendN(t, s, n, n+100)
	s.Ack(last)
	if st := s.Stats(); st.Values != n+100-3000 {
		t.Errorf("after Ack: Stats = %+v, want %d values", st, n+100-3000)
	}
	last = readN(t, s, 3000, n+100-3000)
	if s.Unread() {
		t.Fatal("records left after reading all")
	}
	s.Ack(last)
	if st := s.Stats(); st.Values != 0 || st.Dropped != 0 {
		t.Errorf("all acknowledged: Stats = %+v", st)
	}
	if got := len(segments(t, dir)); got != 1 {
		t.Errorf("%d segments after everything was acknowledged, want 1 (the one appended to)", got)
	}
}

func TestSpoolRestart(t *testing.T) {
	dir := t.TempDir()
	s, _ := openSpool(t, dir, 1<<20)
	appendN(t, s, 0, 3000)
	readN(t, s, 0, 2000)
	s.Ack(1000) // sequence numbers start at 1: record 999
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Everything not acknowledged comes again, read or not.
	s, _ = openSpool(t, dir, 1<<20)
	if st := s.Stats(); st.Values != 2000 || st.Resent != 1000 {
		t.Errorf("after restart: Stats = %+v, want 2000 values, 1000 of them resent", st)
	}
	readN(t, s, 1000, 500)
	appendN(t, s, 3000, 3100)
	readN(t, s, 1500, 1600)
	if s.Unread() {
		t.Error("records left")
	}
	s.Close()
}

// The cursor is written in place to two slots in turn: a torn write of one
// leaves the other, so records come again rather than being lost, and the
// one-record file of older versions still reads.
func TestSpoolCursorSlots(t *testing.T) {
	dir := t.TempDir()
	cursor := filepath.Join(dir, cursorName)
	s, _ := openSpool(t, dir, 1<<20)
	appendN(t, s, 0, 100)
	s.Ack(readN(t, s, 0, 10)) // records 0-9
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	s.Ack(readN(t, s, 10, 20)) // records 10-29
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(cursor)
	if err != nil || len(b) != cursorSlots*cursorFileLen {
		t.Fatalf("cursor file: %d bytes, %v; want %d", len(b), err, cursorSlots*cursorFileLen)
	}
	reopen := func(from int) {
		t.Helper()
		s, _ := openSpool(t, dir, 1<<20)
		readN(t, s, from, 1)
		s.closeFiles() // no cursor written: the file stays as the test made it
	}
	reopen(30)

	// Tear the newer record (in the first slot: the first write after
	// opening goes to the second): the older one, after record 9, counts.
	torn := bytes.Clone(b)
	torn[3] ^= 0xff
	if err := os.WriteFile(cursor, torn, 0o600); err != nil {
		t.Fatal(err)
	}
	reopen(10)

	// An older version's file: one record, after record 4.
	old := make([]byte, cursorFileLen)
	binary.LittleEndian.PutUint64(old, 6)
	binary.LittleEndian.PutUint64(old[8:], 6)
	binary.LittleEndian.PutUint32(old[16:], crc32.Checksum(old[:16], castagnoli))
	if err := os.WriteFile(cursor, old, 0o600); err != nil {
		t.Fatal(err)
	}
	reopen(5)
}

// TestSpoolKilled: what was flushed survives a process that ends without
// Sync or Close (kill -9 leaves the page cache to the kernel); the
// acknowledgements since the last Sync are lost, so records come again.
func TestSpoolKilled(t *testing.T) {
	dir := t.TempDir()
	s, _ := openSpool(t, dir, 1<<20)
	appendN(t, s, 0, 100)
	s.Ack(readN(t, s, 0, 50))
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	s.Ack(readN(t, s, 50, 30)) // not synced
	appendN(t, s, 100, 200)
	s.closeFiles() // killed

	s, _ = openSpool(t, dir, 1<<20)
	defer s.Close()
	if st := s.Stats(); st.Values != 150 {
		t.Errorf("Stats = %+v, want 150 values", st)
	}
	readN(t, s, 50, 150)
}

func TestSpoolTornTail(t *testing.T) {
	dir := t.TempDir()
	s, _ := openSpool(t, dir, 1<<20)
	appendN(t, s, 0, 10)
	s.Close()
	segs := segments(t, dir)
	last := segs[len(segs)-1]
	fi, _ := os.Stat(last)

	for _, tc := range []struct {
		name string
		tear func(t *testing.T)
	}{
		{"half a record", func(t *testing.T) {
			topic, payload := rec(10)
			var b []byte
			b = append(b, 0, 1, 0, 0, 1, 2, 3, 4, byte(len(topic)), 0)
			b = append(b, topic...)
			b = append(b, payload[:3]...)
			testutil.AppendFile(t, last, b)
		}},
		{"zeros", func(t *testing.T) { testutil.AppendFile(t, last, make([]byte, 4096)) }},
		{"bad crc", func(t *testing.T) {
			b := []byte{12, 0, 0, 0, 9, 9, 9, 9, 1, 0, 'x'}
			testutil.AppendFile(t, last, append(b, "123456789"...))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.tear(t)
			s, logs := openSpool(t, dir, 1<<20)
			logs.WaitFor(t, wait, "cut off a torn record")
			if fi2, _ := os.Stat(last); fi2.Size() != fi.Size() {
				t.Errorf("segment is %d bytes, want %d", fi2.Size(), fi.Size())
			}
			appendN(t, s, 10, 20)
			readN(t, s, 0, 20)
			s.closeFiles()
			if err := os.Truncate(last, fi.Size()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestSpoolFull: at its size limit the spool drops its oldest segments,
// counts the values and logs once per episode; the rest reads in order.
func TestSpoolFull(t *testing.T) {
	dir := t.TempDir()
	const limit = 64 << 10 // 8 KiB segments
	s, logs := openSpool(t, dir, limit)
	defer s.Close()
	droppedBy := map[string]uint64{}
	s.OnDrop(func(topic string, n uint64) { droppedBy[topic] += n })
	const n = 20000
	appendN(t, s, 0, n)
	st := s.Stats()
	if st.FileBytes > limit || st.Bytes > st.FileBytes {
		t.Errorf("spool files are %d bytes holding %d, over its limit of %d", st.FileBytes, st.Bytes, limit)
	}
	// The hook names the topic of every record dropped: the oldest, so
	// each of rec's 7 topics in turn.
	var told uint64
	for topic, c := range droppedBy {
		if !strings.HasPrefix(topic, "tagbridge/a1/plc/tag") {
			t.Errorf("dropped %d records of topic %q, want rec's topics only", c, topic)
		}
		told += c
	}
	if told != st.Dropped || len(droppedBy) != 7 {
		t.Errorf("OnDrop heard of %d records in %d topics, want %d in 7", told, len(droppedBy), st.Dropped)
	}
	if st.Dropped == 0 || st.Values+st.Dropped != n {
		t.Errorf("Stats = %+v, want values + dropped = %d", st, n)
	}
	if c := strings.Count(logs.String(), "spool full"); c != 1 {
		t.Errorf("spool full logged %d times, want once", c)
	}
	readN(t, s, int(st.Dropped), int(st.Values))
	logs.WaitFor(t, wait, "spool drained", fmt.Sprintf(`"dropped":%d`, st.Dropped))

	// A second episode is logged again.
	appendN(t, s, n, 2*n)
	if c := strings.Count(logs.String(), "spool full"); c != 2 {
		t.Errorf("spool full logged %d times after a second episode, want twice", c)
	}
}

// TestSpoolFullWhileReading: dropping the segment being read moves the
// reader to the oldest kept record.
func TestSpoolFullWhileReading(t *testing.T) {
	s, _ := openSpool(t, t.TempDir(), 64<<10)
	defer s.Close()
	appendN(t, s, 0, 100)
	s.Ack(readN(t, s, 0, 10))
	appendN(t, s, 100, 5000)
	st := s.Stats()
	first := 5000 - int(st.Values)
	if int(st.Dropped) != first-10 {
		t.Errorf("Stats = %+v, want %d dropped", st, first-10)
	}
	readN(t, s, first, int(st.Values))
}

func TestSpoolOpenErrors(t *testing.T) {
	dir := t.TempDir()
	s, _ := openSpool(t, dir, 1<<20)
	defer s.Close()
	_, err := Open(dir, 1<<20, zerolog.Nop())
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), dir) {
		t.Errorf("second Open = %v, want ErrLocked naming %s", err, dir)
	}

	open := filepath.Join(t.TempDir(), "open")
	if err := os.Mkdir(open, 0o700); err != nil || os.Chmod(open, 0o755) != nil {
		t.Fatal(err)
	}
	o, logs := openSpool(t, open, 1<<20)
	o.Close()
	logs.WaitFor(t, wait, `"level":"warn"`, "open to other users", "-rwxr-xr-x")

	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	bad := filepath.Join(file, "spool")
	_, err = Open(bad, 1<<20, zerolog.Nop())
	if want := "spool directory " + bad + ": mkdir " + file + ": not a directory"; err == nil || err.Error() != want {
		t.Errorf("Open under a file = %v\nwant %s", err, want)
	}
}

// BenchmarkSpoolAppend writes each value to the kernel at once, as Run does
// when samples arrive one at a time (the worst case).
func BenchmarkSpoolAppend(b *testing.B) {
	s, err := Open(b.TempDir(), 256<<20, zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	topic, payload := benchRecord()
	b.SetBytes(int64(len(topic) + len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Append(topic, payload); err != nil {
			b.Fatal(err)
		}
		if err := s.Flush(); err != nil {
			b.Fatal(err)
		}
		if s.Stats().Values > 100000 {
			b.StopTimer()
			for s.Unread() {
				_, _, seq, _ := s.Peek()
				s.Advance(seq)
				s.Ack(seq)
			}
			b.StartTimer()
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "values/s")
}

// BenchmarkSpoolAppendBatched: samples arriving in bursts, written 64 KiB at a time.
func BenchmarkSpoolAppendBatched(b *testing.B) {
	s, err := Open(b.TempDir(), 256<<20, zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	topic, payload := benchRecord()
	b.SetBytes(int64(len(topic) + len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Append(topic, payload); err != nil {
			b.Fatal(err)
		}
	}
	s.Flush()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "values/s")
}

// BenchmarkSpoolRead reads and acknowledges records, as the publisher does.
func BenchmarkSpoolRead(b *testing.B) {
	s, err := Open(b.TempDir(), 1<<40, zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	topic, payload := benchRecord()
	for range b.N {
		s.Append(topic, payload)
	}
	s.Flush()
	b.SetBytes(int64(len(topic) + len(payload)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		_, _, seq, ok := s.Peek()
		if !ok {
			b.Fatal("spool empty")
		}
		s.Advance(seq)
		s.Ack(seq)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "values/s")
}

func benchRecord() (string, []byte) {
	return "tagbridge/line1-ipc01/press1/int32_0001", []byte(`{"plc":"press1","tag":"int32_0001","node":"ns=1;s=Int32.0001","value":123456,"type":"Int32","status":"Good","status_code":0,"source_time":"2026-11-22T10:15:30.123456Z","server_time":"2026-11-22T10:15:30.124Z"}`)
}

// FuzzSpoolOpen: whatever an older segment holds, opening and reading the
// spool neither panics nor loops, and the segment after it reads intact.
func FuzzSpoolOpen(f *testing.F) {
	good := []byte(segMagic)
	for i := range 3 {
		topic, payload := rec(i)
		body := binary.LittleEndian.AppendUint16(nil, uint16(len(topic)))
		body = append(append(body, topic...), payload...)
		good = binary.LittleEndian.AppendUint32(good, uint32(len(body)))
		good = binary.LittleEndian.AppendUint32(good, crc32.Checksum(body, castagnoli))
		good = append(good, body...)
	}
	f.Add(good)
	f.Add(good[:len(good)-5])
	f.Add([]byte(segMagic + "\xff\xff\xff\xff\x00\x00\x00\x00"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "0000000000000001.seg"), data, 0o600); err != nil {
			t.Fatal(err)
		}
		// Then a good segment from record 1000 on, holding records 0-2.
		if err := os.WriteFile(filepath.Join(dir, "00000000000003e8.seg"), good, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := Open(dir, 1<<20, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		var tail []int
		for n := 0; n < 2000; n++ {
			_, payload, seq, ok := s.Peek()
			if !ok {
				break
			}
			if s.Advance(seq); seq >= 1000 {
				tail = append(tail, recIndex(t, payload))
			}
		}
		if s.Unread() {
			t.Fatal("more than 2000 records read from a small file")
		}
		if fmt.Sprint(tail) != "[0 1 2]" {
			t.Errorf("good segment read as %v", tail)
		}
	})
}

// TestSpoolConcurrent: one goroutine appends while another reads and
// acknowledges, with the spool full part of the time: records come out in
// order, and every one is read or counted as dropped.
func TestSpoolConcurrent(t *testing.T) {
	s, _ := openSpool(t, t.TempDir(), 64<<10)
	defer s.Close()
	const n = 20000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			topic, payload := rec(i)
			if err := s.Append(topic, payload); err != nil {
				t.Error(err)
				return
			}
			if i%10 == 0 {
				s.Flush()
			}
		}
		s.Flush()
	}()
	read, prev := 0, -1
	for finished := false; ; {
		select {
		case <-done:
			finished = true
		default:
		}
		_, payload, seq, ok := s.Peek()
		if !ok {
			if finished && !s.Unread() {
				break
			}
			continue
		}
		if !s.Advance(seq) {
			continue // dropped between Peek and Advance
		}
		i := recIndex(t, payload)
		if i <= prev {
			t.Fatalf("record %d after %d", i, prev)
		}
		prev = i
		read++
		if read%100 == 0 {
			s.Ack(seq)
		}
	}
	if st := s.Stats(); read+int(st.Dropped) != n {
		t.Errorf("%d read + %d dropped, want %d", read, st.Dropped, n)
	}
	t.Logf("%d read, %d dropped", read, s.Stats().Dropped)
}

// recordBytes is what record i takes in a segment, framing included.
func recordBytes(i int) int64 {
	topic, payload := rec(i)
	return recHeader + 2 + int64(len(topic)+len(payload))
}

// TestSpoolBytesHeld: Stats.Bytes counts the records not yet
// acknowledged (read or not), not the files, which keep delivered records
// until their segment is wholly delivered: it falls to 0 once the broker
// has everything, and a rewind or a restart does not change it.
func TestSpoolBytesHeld(t *testing.T) {
	dir := t.TempDir()
	s, _ := openSpool(t, dir, 1<<20) // 128 KiB segments
	const n = 3000
	var want int64
	for i := range n {
		want += recordBytes(i)
	}
	appendN(t, s, 0, n)
	check := func(when string, want int64) {
		t.Helper()
		if st := s.Stats(); st.Bytes != want {
			t.Fatalf("%s: Bytes = %d, want %d (files %d)", when, st.Bytes, want, st.FileBytes)
		}
	}
	check("appended", want)
	last := readN(t, s, 0, 1000)
	check("1000 read, none acknowledged", want)
	if err := s.Rewind(); err != nil {
		t.Fatal(err)
	}
	check("rewound", want)
	last = readN(t, s, 0, 1000)
	s.Ack(last - 500) // the first 500
	for i := range 500 {
		want -= recordBytes(i)
	}
	check("500 acknowledged", want)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, _ = openSpool(t, dir, 1<<20)
	defer s.Close()
	check("reopened", want)
	last = readN(t, s, 500, n-500)
	s.Ack(last)
	check("all acknowledged", 0)
	if st := s.Stats(); st.FileBytes <= int64(len(segMagic)) {
		t.Errorf("FileBytes = %d: the segment appended to should still hold its delivered records", st.FileBytes)
	}
}

// TestSpoolCloseDelivered: closed with every record acknowledged, the
// spool leaves no segment and no cursor behind (a package purge then finds
// nothing undelivered), and opens afresh; closed with one record not
// acknowledged, it keeps them.
func TestSpoolCloseDelivered(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	s, _ := openSpool(t, dir, 1<<20)
	appendN(t, s, 0, 100)
	s.Ack(readN(t, s, 0, 99))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := len(segments(t, dir)); got == 0 {
		t.Fatal("closed with a record unacknowledged: no segment kept")
	}
	s, _ = openSpool(t, dir, 1<<20)
	s.Ack(readN(t, s, 99, 1))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := segments(t, dir); len(got) != 0 {
		t.Errorf("closed with everything acknowledged: segments %v left", got)
	}
	if _, err := os.Stat(filepath.Join(dir, cursorName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("closed with everything acknowledged: cursor left (%v)", err)
	}
	s, logs := openSpool(t, dir, 1<<20)
	defer s.Close()
	if st := s.Stats(); st.Values != 0 || st.Bytes != 0 || s.Unread() {
		t.Fatalf("reopened: Stats = %+v, unread %v; want empty", st, s.Unread())
	}
	appendN(t, s, 0, 10)
	readN(t, s, 0, 10)
	if strings.Contains(logs.String(), `"level":"error"`) || strings.Contains(logs.String(), `"level":"warn"`) {
		t.Errorf("reopening an emptied spool logged:\n%s", logs)
	}
}

// TestSpoolSyncSkipsDelivered: Sync fsyncs what the broker does not have,
// in the segment appended to and in full ones, and nothing when it has
// every record; the records stay intact across a restart either way.
func TestSpoolSyncSkipsDelivered(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	s, _ := openSpool(t, dir, 64<<10) // 8 KiB segments
	sync := func(step string, files, dirs uint64) {
		t.Helper()
		if err := s.Sync(); err != nil {
			t.Fatalf("%s: Sync: %v", step, err)
		}
		s.bg.Wait()
		if f, d := s.fileSyncs.Load(), s.dirSyncs.Load(); f != files || d != dirs {
			t.Fatalf("%s: %d file and %d directory fsyncs, want %d and %d", step, f, d, files, dirs)
		}
	}
	appendN(t, s, 0, 10)
	sync("new records in a new segment", 1, 1)
	sync("nothing new", 1, 1)

	s.Ack(readN(t, s, 0, 10))
	appendN(t, s, 10, 20)
	s.Ack(readN(t, s, 10, 10))
	sync("every record acknowledged", 1, 1)
	appendN(t, s, 20, 25)
	sync("records not acknowledged", 2, 1)

	appendN(t, s, 25, 300)
	if len(s.unsynced) < 2 {
		t.Fatalf("%d full segments awaiting their fsync, want several", len(s.unsynced))
	}
	s.Ack(readN(t, s, 20, 280))
	sync("full segments, all acknowledged", 2, 1)
	if len(s.unsynced) != 0 {
		t.Fatalf("%d full segments still open after the broker had them all", len(s.unsynced))
	}

	appendN(t, s, 300, 600)
	full := uint64(len(s.unsynced))
	if full < 2 {
		t.Fatalf("%d full segments awaiting their fsync, want several", full)
	}
	files := 2 + full + 1 // and the one appended to
	sync("full segments not acknowledged", files, 2)

	appendN(t, s, 600, 900)
	full = uint64(len(s.unsynced))
	firstEnd := s.unsynced[0].end // the first full segment's records end before it
	s.Ack(readN(t, s, 300, int(firstEnd)-1-300))
	sync("the first full segment acknowledged, the others not", files+full-1+1, 3)

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, _ = openSpool(t, dir, 64<<10)
	defer s.Close()
	readN(t, s, int(firstEnd)-1, 900-(int(firstEnd)-1))
	if s.Unread() {
		t.Fatal("records left after reading every one not acknowledged")
	}
}
