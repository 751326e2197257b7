package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// Append adds a record. It is in the spool once Flush has run, which Append
// does whenever enough is buffered.
func (s *Spool) Append(topic string, payload []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := 2 + len(topic) + len(payload)
	if len(topic) > 0xffff || l > maxRecord {
		return fmt.Errorf("spool: record of %d bytes too large", l)
	}
	if s.w == nil || s.segs[len(s.segs)-1].size+int64(len(s.wbuf)) >= s.segSize {
		if err := s.rotate(); err != nil {
			return err
		}
	}
	s.makeRoom(int64(recHeader + l))

	s.wbuf = appendRecord(s.wbuf, topic, payload)
	s.next++
	if len(s.wbuf) >= flushAt {
		return s.flush()
	}
	return nil
}

// Flush writes the appended records to the segment file, so they survive
// the agent being killed. On error they are dropped and counted.
func (s *Spool) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.flush()
}

func (s *Spool) flush() error {
	if len(s.wbuf) == 0 {
		return nil
	}
	if s.w == nil { // a full disk took the segment: start one
		if err := s.startSegment(); err != nil {
			return s.dropBuffered(err)
		}
	}
	last := &s.segs[len(s.segs)-1]
	n, err := s.w.Write(s.wbuf)
	for err != nil {
		// Take back a partial write, so the file holds whole records only.
		_ = s.w.Truncate(last.size)
		_, _ = s.w.Seek(last.size, io.SeekStart)
		if !noSpace(err) || !s.freeDisk() {
			return s.dropBuffered(fmt.Errorf("spool: write %s: %w", filepath.Base(s.segPath(last.first)), err))
		}
		last = &s.segs[len(s.segs)-1]
		n, err = s.w.Write(s.wbuf)
	}
	last.size += int64(n)
	s.wbuf = s.wbuf[:0]
	s.written = s.next
	s.wdirty = true
	s.updateStats()
	return nil
}

// dropBuffered drops the records not yet written, after err.
func (s *Spool) dropBuffered(err error) error {
	lost := s.next - s.written
	s.tellDropRecords(bytesReader(s.wbuf), 0, int64(len(s.wbuf)), lost)
	s.next = s.written
	s.wbuf = s.wbuf[:0]
	s.drop(lost)
	s.updateStats()
	return fmt.Errorf("%w (%d values lost)", err, lost)
}

func noSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// freeDisk makes room on a full disk as makeRoom does at max_bytes: it
// deletes the oldest segment, or, when the segment appended to is the only
// one, that segment, and starts a new one. It also makes later segments
// smaller, so that a disk with less room than a segment still holds some
// records. It reports whether it deleted anything.
func (s *Spool) freeDisk() bool {
	s.bg.Wait() // segments deleted while a background fsync holds them open free nothing
	s.segSize = max(minSegment, min(s.segSize, s.size()/8))
	if len(s.segs) > 1 {
		return s.dropOldest("disk full: dropping the oldest values to make room") == nil
	}
	if s.segs[0].size <= int64(len(segMagic)) {
		return false // nothing to delete
	}
	s.w.Close()
	s.w = nil
	if s.dropOldest("disk full: dropping the oldest values to make room") != nil {
		return false
	}
	return s.startSegment() == nil
}

// rotate closes the segment appended to and starts a new one.
func (s *Spool) rotate() error {
	if err := s.flush(); err != nil {
		return err
	}
	if s.w != nil {
		// The full segment is fsynced by the next Sync, within the same
		// period as if it were still appended to, unless the broker has
		// all its records by then: most often, with a broker keeping up.
		last := s.segs[len(s.segs)-1]
		if s.wdirty {
			s.unsynced = append(s.unsynced, fullSegment{s.w, last.first, s.written})
		} else {
			s.closeAfterFsync(s.w)
		}
		s.w, s.wdirty = nil, false
	}
	return s.startSegment()
}

// startSegment creates the segment appended to, for the records from
// written on; on a full disk it deletes the oldest segments to make room.
func (s *Spool) startSegment() error {
	path := s.segPath(s.written)
	var f *os.File
	var err error
	for {
		f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
		if err == nil {
			if _, err = f.Write([]byte(segMagic)); err != nil {
				f.Close()
				os.Remove(path)
			}
		}
		if err == nil {
			break
		}
		if !noSpace(err) || len(s.segs) == 0 {
			return fmt.Errorf("spool: %w", err)
		}
		s.bg.Wait()
		if s.dropOldest("disk full: dropping the oldest values to make room") != nil {
			return fmt.Errorf("spool: %w", err)
		}
	}
	s.w = f
	s.segs = append(s.segs, segment{first: s.written, size: int64(len(segMagic))})
	s.dirDirty = true
	if len(s.segs) == 1 { // the reader waits at the start of the first segment
		s.closeReader()
		s.rseg, s.roff = 0, int64(len(segMagic))
	}
	return nil
}

// makeRoom deletes the oldest segments until a record of size n fits.
func (s *Spool) makeRoom(n int64) {
	for len(s.segs) > 1 && s.size()+int64(len(s.wbuf))+n > s.max {
		if s.dropOldest("spool full: dropping the oldest values until the broker catches up") != nil {
			return
		}
	}
}

// dropOldest deletes the oldest segment, which is not the one appended to,
// and counts its records not yet read as dropped, logging why once per
// episode.
func (s *Spool) dropOldest(why string) error {
	first, end := s.segs[0].first, s.written
	if len(s.segs) > 1 {
		end = s.segs[1].first
	}
	lost := uint64(0)
	if from := max(s.rseq, first); from < end {
		lost = end - from
	}
	if s.rseg == 0 {
		s.tellDropRecords(s.readAt, s.roff, s.segs[0].size, lost)
		s.closeReader()
		s.peeked = 0
		s.rseg, s.rseq, s.roff = 1, max(s.rseq, end), int64(len(segMagic))
	}
	s.acked = max(s.acked, end)
	if err := s.removeOldest(); err != nil {
		s.log.Error().Err(err).Msg("spool: cannot delete the oldest segment")
		return err
	}
	s.drop(lost)
	if !s.dropping {
		s.dropping = true
		s.log.Error().Int64("max_bytes", s.max).Uint64("dropped", lost).Msg(why)
	}
	s.updateStats()
	return nil
}

func (s *Spool) drop(n uint64) {
	s.dropped.Add(n)
	s.episode += n
}

// tellDrop passes n records of topic dropped to the OnDrop hook.
func (s *Spool) tellDrop(topic string, n uint64) {
	if s.onDrop != nil && n > 0 {
		s.onDrop(topic, n)
	}
}

// tellDropRecords passes the n records dropped from off on to the OnDrop
// hook with their topics, those it cannot read with "". A spool full
// reads its oldest segment once for this: a few MiB at most.
func (s *Spool) tellDropRecords(read func(off int64, n int) ([]byte, error), off, end int64, n uint64) {
	if s.onDrop == nil {
		return
	}
	for ; n > 0; n-- {
		size, ok := recordAt(read, off, end)
		if !ok {
			break
		}
		body, err := read(off+recHeader, int(size-recHeader))
		if err != nil {
			break
		}
		tl := int(binary.LittleEndian.Uint16(body))
		s.onDrop(string(body[2:2+tl]), 1)
		off += size
	}
	s.tellDrop("", n)
}

// bytesReader reads records from b as recordAt does from a file.
func bytesReader(b []byte) func(off int64, n int) ([]byte, error) {
	return func(off int64, n int) ([]byte, error) {
		if off < 0 || off+int64(n) > int64(len(b)) {
			return nil, io.ErrUnexpectedEOF
		}
		return b[off : off+int64(n)], nil
	}
}

func (s *Spool) size() int64 {
	var n int64
	for _, g := range s.segs {
		n += g.size
	}
	return n
}

func (s *Spool) removeOldest() error {
	s.closeFull(s.segs[0].first)
	if err := os.Remove(s.segPath(s.segs[0].first)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	s.segs = s.segs[1:]
	s.rseg--
	s.dirDirty = true
	return nil
}

// DeadLetterPath is the file DeadLetter writes to.
func (s *Spool) DeadLetterPath() string { return filepath.Join(s.dir, deadName) }

// DeadLetter appends a message the broker cannot take to the dead-letter
// file, which keeps the latest deadLetterMax bytes or more of them.
func (s *Spool) DeadLetter(topic string, payload []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lock == nil {
		return fmt.Errorf("spool: dead letter: %w", os.ErrClosed)
	}
	if len(topic) > 0xffff {
		topic = topic[:0xffff]
	}
	if s.dead != nil && s.deadLen >= deadLetterMax {
		s.dead.Close()
		s.dead = nil
		if err := os.Rename(s.DeadLetterPath(), s.DeadLetterPath()+".1"); err != nil {
			return fmt.Errorf("spool: dead letter: %w", err)
		}
	}
	if s.dead == nil {
		f, err := os.OpenFile(s.DeadLetterPath(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("spool: dead letter: %w", err)
		}
		size, err := f.Seek(0, io.SeekEnd)
		if err == nil && size == 0 {
			_, err = f.Write([]byte(deadMagic))
			size = int64(len(deadMagic))
		}
		if err != nil {
			f.Close()
			return fmt.Errorf("spool: dead letter: %w", err)
		}
		s.dead, s.deadLen = f, size
	}
	rec := appendRecord(nil, topic, payload)
	n, err := s.dead.Write(rec)
	s.deadLen += int64(n)
	if err != nil {
		return fmt.Errorf("spool: dead letter: %w", err)
	}
	return nil
}

// appendRecord appends a record as segments hold it: body length, CRC-32C
// of the body, and the body (topic length, topic, payload).
func appendRecord(b []byte, topic string, payload []byte) []byte {
	start := len(b)
	b = binary.LittleEndian.AppendUint32(b, uint32(2+len(topic)+len(payload)))
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(topic)))
	b = append(b, topic...)
	b = append(b, payload...)
	binary.LittleEndian.PutUint32(b[start+4:], crc32.Checksum(b[start+recHeader:], castagnoli))
	return b
}
