package spool

import (
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
)

// Buffered reports whether appended records wait for Flush.
func (s *Spool) Buffered() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.wbuf) > 0
}

// Next is the sequence number the next record appended gets.
func (s *Spool) Next() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.next
}

// Unread reports whether records wait to be read.
func (s *Spool) Unread() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rseq < s.next
}

// Peek returns the next record to read and its sequence number, without
// consuming it; ok is false when there is none. payload is the caller's. A
// corrupt segment is skipped, its records counted as dropped.
func (s *Spool) Peek() (topic string, payload []byte, seq uint64, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.rseq < s.next {
		if s.rseq >= s.written {
			if err := s.flush(); err != nil {
				s.log.Error().Err(err).Msg("spool: write failed")
				continue
			}
		}
		if s.roff >= s.segs[s.rseg].size {
			s.endOfSegment()
			continue
		}
		size, ok := s.recordSize()
		if !ok {
			s.skipCorrupt()
			continue
		}
		body, _ := s.readAt(s.roff+recHeader, int(size-recHeader))
		tl := int(binary.LittleEndian.Uint16(body))
		s.peeked = size
		return s.topic(body[2 : 2+tl]), bytes.Clone(body[2+tl:]), s.rseq, true
	}
	return "", nil, 0, false
}

// maxTopics bounds the interned topics (some 100 bytes each): beyond it a
// topic costs an allocation again, as with mqtt.batch few topics do.
const maxTopics = 1 << 14

// topic returns b as a string, interned; s.mu is held.
func (s *Spool) topic(b []byte) string {
	if t, ok := s.topics[string(b)]; ok {
		return t
	}
	t := string(b)
	if s.topics == nil {
		s.topics = map[string]string{}
	}
	if len(s.topics) < maxTopics {
		s.topics[t] = t
	}
	return t
}

// Advance consumes record seq, which Peek returned. It returns false if that
// record is no longer the next one: the spool was full and dropped it.
func (s *Spool) Advance(seq uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.peeked == 0 || s.rseq != seq {
		return false
	}
	s.readRecord(seq, s.peeked)
	s.roff += s.peeked
	s.rseq++
	s.peeked = 0
	if s.rseg+1 < len(s.segs) && s.roff >= s.segs[s.rseg].size {
		s.endOfSegment()
	}
	if s.dropping && s.rseq == s.next {
		s.dropping = false
		s.log.Warn().Uint64("dropped", s.episode).Msg("spool drained; values were dropped while it was full")
		s.episode = 0
	}
	return true
}

// recordSize checks the record at the reader and returns its size, header
// included; ok is false when it is missing or corrupt.
func (s *Spool) recordSize() (int64, bool) {
	return recordAt(s.readAt, s.roff, s.segs[s.rseg].size)
}

// skipCorrupt moves the reader past a bad record to the next valid one in
// its segment (see resync), counting one record lost and logging it. A bad
// stretch up to the end of the segment is left to endOfSegment, which
// knows from the segments' names how many records are missing (none in a
// stray file).
func (s *Spool) skipCorrupt() {
	from := s.roff
	s.roff = resync(s.readAt, s.roff, s.segs[s.rseg].size)
	s.peeked = 0
	if s.roff == s.segs[s.rseg].size {
		return
	}
	s.log.Error().Str("file", filepath.Base(s.segPath(s.segs[s.rseg].first))).Int64("offset", from).Int64("bytes", s.roff-from).
		Uint64("dropped", 1).Msg("spool: corrupt record skipped; reading on at the next valid one")
	s.lose(1)
}

// endOfSegment moves the reader from the end of its segment's data to the
// next segment; records the segment should have held but did not (lost to
// corruption beyond what skipCorrupt counted) are counted as dropped. With
// nothing after it, the reader's sequence number catches up with next: the
// end of a segment is where its records end, whatever its name says.
func (s *Spool) endOfSegment() {
	end := s.written
	if s.rseg+1 < len(s.segs) {
		end = s.segs[s.rseg+1].first
	}
	if s.rseq < end {
		lost := end - s.rseq
		s.log.Error().Str("file", filepath.Base(s.segPath(s.segs[s.rseg].first))).Uint64("dropped", lost).
			Msg("spool: records missing at the end of a segment")
		s.lose(lost)
	}
	s.closeReader()
	s.peeked = 0
	if s.rseg+1 < len(s.segs) {
		s.rseg++
		s.roff = int64(len(segMagic))
	}
}

// lose moves the reader's sequence number past n records that cannot be
// read, and counts them as dropped.
func (s *Spool) lose(n uint64) {
	from := s.rseq
	s.rseq += n
	s.drop(n)
	s.tellDrop("", n)
	if s.acked >= from {
		s.acked = s.rseq // nothing before the lost records awaits an acknowledgement
	}
	s.updateStats()
}

// readAt returns n bytes of the reader's segment at off.
func (s *Spool) readAt(off int64, n int) ([]byte, error) {
	if off >= s.rbufOff && off+int64(n) <= s.rbufOff+int64(len(s.rbuf)) {
		return s.rbuf[off-s.rbufOff : off-s.rbufOff+int64(n)], nil
	}
	if s.r == nil {
		f, err := os.Open(s.segPath(s.segs[s.rseg].first))
		if err != nil {
			return nil, err
		}
		s.r = f
	}
	size := max(n, readChunk)
	if cap(s.rmem) < size {
		s.rmem = make([]byte, size)
	}
	buf := s.rmem[:size]
	m, err := s.r.ReadAt(buf, off)
	s.rbuf, s.rbufOff = buf[:m], off
	if m < n {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return buf[:n], nil
}

func (s *Spool) closeReader() {
	if s.r != nil {
		s.r.Close()
		s.r = nil
	}
	s.rbuf, s.rbufOff = nil, 0
}

// Rewind moves the reader back to the first record not acknowledged, so
// that the records read since are read again: they went out on a
// connection that broke before the broker confirmed them (QoS 0 fences,
// see Publisher). They count as resent.
func (s *Spool) Rewind() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rseq <= s.acked {
		return nil
	}
	s.resent.Add(s.rseq - s.acked)
	s.peeked = 0
	err := s.seek(s.acked)
	s.updateStats()
	return err
}

// Ack records that the broker has every record up to and including seq;
// segments wholly acknowledged and read are deleted.
func (s *Spool) Ack(seq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if seq+1 <= s.acked {
		return
	}
	s.acked = min(seq+1, s.rseq)
	for len(s.segs) > 1 && s.rseg > 0 && s.segs[1].first <= s.acked {
		if err := s.removeOldest(); err != nil {
			s.log.Error().Err(err).Msg("spool: cannot delete a delivered segment")
			break
		}
	}
	s.updateStats()
}
