package spool

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/rs/zerolog"
)

// readAll reads every record left and returns their indexes (see rec).
func readAll(t *testing.T, s *Spool) []int {
	t.Helper()
	var got []int
	for range 1 << 20 {
		topic, payload, seq, ok := s.Peek()
		if !ok {
			return got
		}
		i := recIndex(t, payload)
		if wantTopic, wantPayload := rec(i); topic != wantTopic || string(payload) != string(wantPayload) {
			t.Fatalf("record %d read as %s %s", i, topic, payload)
		}
		got = append(got, i)
		s.Advance(seq)
	}
	t.Fatal("endless spool")
	return nil
}

// span is where a record lies in a segment file.
type span struct {
	file     string
	from, to int64
}

// layout returns where each record of a spool written with appendN lies.
func layout(t *testing.T, dir string) []span {
	t.Helper()
	var spans []span
	for _, seg := range segments(t, dir) {
		b, err := os.ReadFile(seg)
		if err != nil {
			t.Fatal(err)
		}
		for off := int64(len(segMagic)); off+recHeader <= int64(len(b)); {
			l := int64(binary.LittleEndian.Uint32(b[off:]))
			spans = append(spans, span{seg, off, off + recHeader + l})
			off += recHeader + l
		}
	}
	return spans
}

func flip(t *testing.T, file string, off int64, mask byte) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	b[off] ^= mask
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// One flipped byte costs the record it is in, counted and logged, and no
// other: in an older segment it cost the rest of the segment; in the
// newest, everything after it, silently.
func TestSpoolCorruptRecord(t *testing.T) {
	for _, tc := range []struct {
		name  string
		which func(n int) int // the record damaged, of n
		at    func(sp span) int64
	}{
		{"older segment, payload", func(n int) int { return n / 5 }, func(sp span) int64 { return sp.to - 3 }},
		{"older segment, length", func(n int) int { return n / 5 }, func(sp span) int64 { return sp.from + 1 }},
		{"newest segment, payload", func(n int) int { return n - 200 }, func(sp span) int64 { return sp.to - 3 }},
		{"newest segment, length", func(n int) int { return n - 200 }, func(sp span) int64 { return sp.from + 2 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 5000
			dir := t.TempDir()
			s, _ := openSpool(t, dir, 1<<20)
			appendN(t, s, 0, n)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			spans := layout(t, dir)
			if len(spans) != n || len(segments(t, dir)) < 3 {
				t.Fatalf("%d records in %d segments, want %d in 3 or more", len(spans), len(segments(t, dir)), n)
			}
			bad := tc.which(n)
			flip(t, spans[bad].file, tc.at(spans[bad]), 0x5a)

			s, logs := openSpool(t, dir, 1<<20)
			defer s.Close()
			got := readAll(t, s)
			want := slices.Delete(slices.Collect(func(yield func(int) bool) {
				for i := range n {
					if !yield(i) {
						return
					}
				}
			}), bad, bad+1)
			if !slices.Equal(got, want) {
				t.Errorf("read %d records, want all %d but record %d", len(got), len(want), bad)
			}
			if st := s.Stats(); st.Dropped != 1 {
				t.Errorf("Stats = %+v, want 1 dropped", st)
			}
			logs.WaitFor(t, wait, `"level":"error"`, "corrupt record")
		})
	}
}

// A cursor past the records is reported, and every record is sent again,
// instead of none.
func TestSpoolCursorPastData(t *testing.T) {
	dir := t.TempDir()
	s, _ := openSpool(t, dir, 1<<20)
	appendN(t, s, 0, 100)
	s.Close()
	var b [cursorFileLen]byte
	binary.LittleEndian.PutUint64(b[:], 1000)
	binary.LittleEndian.PutUint64(b[8:], 1000)
	binary.LittleEndian.PutUint32(b[16:], crc32c(b[:16]))
	if err := os.WriteFile(filepath.Join(dir, cursorName), b[:], 0o600); err != nil {
		t.Fatal(err)
	}
	s, logs := openSpool(t, dir, 1<<20)
	defer s.Close()
	logs.WaitFor(t, wait, `"level":"error"`, "cursor points past the spooled records")
	if got := readAll(t, s); len(got) != 100 {
		t.Errorf("read %d records, want 100", len(got))
	}
}

// A stray .seg file, named to fall inside a real segment's records, costs
// no real record.
func TestSpoolStraySegment(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"garbage", []byte("not a segment at all, but named like one")},
		{"empty segment", []byte(segMagic)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s, _ := openSpool(t, dir, 1<<20)
			appendN(t, s, 0, 3000)
			s.Close()
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%016x.seg", 500)), tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			s, _ = openSpool(t, dir, 1<<20)
			defer s.Close()
			got := readAll(t, s)
			for i := range 3000 {
				if !slices.Contains(got, i) {
					t.Fatalf("record %d lost; read %d of 3000", i, len(got))
				}
			}
		})
	}
}

func crc32c(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// FuzzSpoolCorrupt flips bytes anywhere in a spool's segments: every
// record left intact is read, in order, and a damaged one is counted.
func FuzzSpoolCorrupt(f *testing.F) {
	f.Add([]byte{0, 0, 1, 0, 0xff})
	f.Add([]byte{0, 0, 0, 9, 0x01, 0, 2, 0, 0, 0x80})
	f.Add([]byte{0, 0, 0, 0, 0x54}) // the first segment's header
	f.Fuzz(func(t *testing.T, flips []byte) {
		const n = 3000
		dir := t.TempDir()
		s, err := Open(dir, 1<<20, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		appendN(t, s, 0, n)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		spans := layout(t, dir)
		sizes := map[string]int64{}
		var total int64
		files := segments(t, dir)
		for _, seg := range files {
			fi, err := os.Stat(seg)
			if err != nil {
				t.Fatal(err)
			}
			sizes[seg] = fi.Size()
			total += fi.Size()
		}
		damaged := map[int]bool{}
		for k := 0; k+5 <= len(flips) && k < 5*8; k += 5 {
			pos := int64(binary.BigEndian.Uint32(flips[k:])) % total
			mask := flips[k+4]
			if mask == 0 {
				continue
			}
			file := ""
			for _, seg := range files {
				if pos < sizes[seg] {
					file = seg
					break
				}
				pos -= sizes[seg]
			}
			flip(t, file, pos, mask)
			for i, sp := range spans {
				if sp.file == file && pos >= sp.from && pos < sp.to {
					damaged[i] = true
				}
			}
		}
		s, err = Open(dir, 1<<20, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		got := readAll(t, s)
		if !slices.IsSorted(got) {
			t.Fatalf("records out of order: %v", got)
		}
		for i := range n {
			if !damaged[i] && !slices.Contains(got, i) {
				t.Fatalf("intact record %d not read (damaged: %v)", i, damaged)
			}
		}
		if len(damaged) > 0 && s.Stats().Dropped == 0 {
			t.Errorf("%d records damaged, none counted as dropped", len(damaged))
		}
	})
}
