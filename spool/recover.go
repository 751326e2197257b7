package spool

import (
	"cmp"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

func (s *Spool) load() error {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), segSuffix)
		if !ok || !e.Type().IsRegular() {
			continue
		}
		first, err := strconv.ParseUint(name, 16, 64)
		if err != nil || first == 0 {
			s.log.Warn().Str("file", e.Name()).Msg("spool: ignoring a file that is not a segment")
			continue
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		if fi.Size() >= int64(len(segMagic)) && !hasMagic(filepath.Join(s.dir, e.Name())) {
			// A stray file, or a segment whose header is damaged: its valid
			// records, if any, are read all the same.
			s.log.Warn().Str("file", e.Name()).Msg("spool: a .seg file without the segment header; reading what valid records it holds")
		}
		s.segs = append(s.segs, segment{first: first, size: fi.Size()})
	}
	slices.SortFunc(s.segs, func(a, b segment) int { return cmp.Compare(a.first, b.first) })

	if len(s.segs) > 0 {
		if err := s.recoverTail(); err != nil {
			return err
		}
	}
	s.written = s.next

	var read uint64
	s.acked, read, err = s.readCursor()
	if err != nil {
		s.log.Warn().Err(err).Msg("spool: cursor unreadable; sending every spooled record again")
	}
	if s.acked > s.next {
		// A cursor from another spool, or damaged in a way its CRC missed:
		// trusting it would skip every record spooled.
		s.log.Error().Uint64("cursor", s.acked).Uint64("end", s.next).
			Msg("spool: the cursor points past the spooled records; sending every spooled record again")
		s.acked, read = 0, 0
	}
	if len(s.segs) > 0 {
		s.acked = max(s.acked, s.segs[0].first)
	}
	if s.corruptFrom > 0 {
		s.acked = min(s.acked, s.corruptFrom)
	}
	if s.acked == 0 {
		s.acked = s.next
	}
	s.savedAck, s.savedRead = s.acked, s.acked
	// Records sent before the restart but not known to be acknowledged go
	// again: the broker may have them already.
	if read = min(read, s.next); read > s.acked {
		s.resent.Add(read - s.acked)
		s.log.Info().Uint64("values", read-s.acked).Msg("spool: values sent before the restart go again; the broker may have some of them twice")
	}
	// Segments wholly acknowledged are no longer needed.
	for len(s.segs) > 1 && s.segs[1].first <= s.acked {
		if err := s.removeOldest(); err != nil {
			return err
		}
	}
	if err := s.seek(s.acked); err != nil {
		return err
	}
	s.acked = min(s.acked, s.rseq)
	if s.next > s.acked {
		s.log.Info().Uint64("values", s.next-s.acked).Msg("spool: values from before the restart to send")
	}
	return nil
}

// recoverTail scans the newest segment, cuts off a torn or corrupt end, and
// sets next; it opens the segment for appending.
func (s *Spool) recoverTail() error {
	last := &s.segs[len(s.segs)-1]
	path := s.segPath(last.first)
	f, err := os.OpenFile(path, os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	good, n, lost, firstBad, err := scanSegment(f, last.size)
	if err != nil {
		f.Close()
		return err
	}
	if lost > 0 {
		s.log.Error().Str("file", filepath.Base(path)).Uint64("dropped", lost).
			Msg("spool: corrupt records in the newest segment; the records after them are kept")
		// A bad stretch counts as one record, however many it held, so
		// the cursor's numbers may be off after it: resend from there.
		s.corruptFrom = last.first + firstBad
	}
	if good < int64(len(segMagic)) || !hasMagic(path) {
		// Created but its header never written, or the header damaged:
		// write it again.
		if _, err := f.WriteAt([]byte(segMagic), 0); err != nil {
			f.Close()
			return err
		}
		good = max(good, int64(len(segMagic)))
	}
	if good < last.size {
		s.log.Warn().Str("file", filepath.Base(path)).Int64("bytes", last.size-good).
			Msg("spool: cut off a torn record at the end (the agent stopped mid-write)")
		if last.size-good >= recHeader {
			s.drop(1) // a record was being written
		}
		if err := f.Truncate(good); err != nil {
			f.Close()
			return err
		}
	}
	if _, err := f.Seek(good, io.SeekStart); err != nil {
		f.Close()
		return err
	}
	last.size = good
	s.w = f
	s.next = last.first + n
	return nil
}

// scanSegment returns the end of the last valid record of a segment (or
// of its header), the number of records up to there, how many of them
// were lost to corruption, and the index of the first lost: after a bad
// record scanning resumes at the next valid one (see resync), and each bad
// stretch counts as one record.
func scanSegment(f *os.File, size int64) (good int64, n, lost, firstBad uint64, err error) {
	if size < int64(len(segMagic)) {
		return 0, 0, 0, 0, nil
	}
	var fr fileReader
	fr.f = f
	off := int64(len(segMagic))
	good = off
	for off < size {
		if l, ok := recordAt(fr.readAt, off, size); ok {
			off += l
			n++
			good = off
			continue
		}
		next := resync(fr.readAt, off, size)
		if next == size {
			break // a torn end: no valid record after it
		}
		if lost == 0 {
			firstBad = n
		}
		off = next
		n++
		lost++
	}
	return good, n, lost, firstBad, nil
}

// fileReader reads a file through a window, for scanSegment.
type fileReader struct {
	f   *os.File
	buf []byte
	at  int64
}

func (r *fileReader) readAt(off int64, n int) ([]byte, error) {
	if off >= r.at && off+int64(n) <= r.at+int64(len(r.buf)) {
		return r.buf[off-r.at : off-r.at+int64(n)], nil
	}
	buf := make([]byte, max(n, readChunk))
	m, err := r.f.ReadAt(buf, off)
	r.buf, r.at = buf[:m], off
	if m < n {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return buf[:n], nil
}

// recordAt checks the record at off, which must end by end, and returns
// its size, header included.
func recordAt(read func(off int64, n int) ([]byte, error), off, end int64) (int64, bool) {
	if off+recHeader+2 > end {
		return 0, false
	}
	h, err := read(off, recHeader)
	if err != nil {
		return 0, false
	}
	l := int64(binary.LittleEndian.Uint32(h))
	sum := binary.LittleEndian.Uint32(h[4:])
	if l < 2 || l > maxRecord || off+recHeader+l > end {
		return 0, false
	}
	body, err := read(off+recHeader, int(l))
	if err != nil || !validBody(body, sum) {
		return 0, false
	}
	return recHeader + l, true
}

// resync returns where the first valid record after the bad one at off
// starts, or end if none does: the first offset holding a record whose
// CRC-32C checks. Not where the bad record's length says: a damaged length
// could point past intact records.
func resync(read func(off int64, n int) ([]byte, error), off, end int64) int64 {
	for o := off + 1; o+recHeader+2 <= end; o++ {
		if _, ok := recordAt(read, o, end); ok {
			return o
		}
	}
	return end
}

// hasMagic reports whether the file starts as a segment does.
func hasMagic(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	hdr := make([]byte, len(segMagic))
	_, err = io.ReadFull(f, hdr)
	return err == nil && string(hdr) == segMagic
}

func validBody(body []byte, sum uint32) bool {
	return crc32.Checksum(body, castagnoli) == sum && 2+int(binary.LittleEndian.Uint16(body)) <= len(body)
}

// readCursor returns the saved acknowledged and read positions: of the
// two slots, the valid one furthest on (a write torn by a crash leaves the
// other). A file of one record, as older versions wrote it, reads too.
func (s *Spool) readCursor() (acked, read uint64, err error) {
	b, err := os.ReadFile(filepath.Join(s.dir, cursorName))
	switch {
	case errors.Is(err, os.ErrNotExist):
		return 0, 0, nil
	case err != nil:
		return 0, 0, err
	case len(b) != cursorFileLen && len(b) != cursorSlots*cursorFileLen:
		return 0, 0, errors.New("bad cursor file")
	}
	valid := false
	for ; len(b) >= cursorFileLen; b = b[cursorFileLen:] {
		if crc32.Checksum(b[:16], castagnoli) != binary.LittleEndian.Uint32(b[16:]) {
			continue
		}
		a, r := binary.LittleEndian.Uint64(b), binary.LittleEndian.Uint64(b[8:])
		if !valid || a > acked || a == acked && r > read {
			acked, read = a, r
		}
		valid = true
	}
	if !valid {
		return 0, 0, errors.New("bad cursor file")
	}
	return acked, read, nil
}

// seek positions the reader at record seq.
func (s *Spool) seek(seq uint64) error {
	s.closeReader()
	s.rseg, s.rseq = 0, seq
	if len(s.segs) == 0 {
		return nil
	}
	for s.rseg+1 < len(s.segs) && s.segs[s.rseg+1].first <= seq {
		s.rseg++
	}
	s.roff = int64(len(segMagic))
	end := s.segs[s.rseg].size
	// Stop at a bad record or the end of the data: the count of records
	// is uncertain beyond, so the reader sends again from there.
	at := s.segs[s.rseg].first
	for ; at < seq && s.roff < end; at++ {
		size, ok := s.recordSize()
		if !ok {
			break
		}
		s.roff += size
	}
	s.rseq = at
	return nil
}
