// Package spool is the disk log every message passes through on its way to
// the broker: segments, cursor, dead-letter file.
package spool

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/rs/zerolog"
)

// Spool is the disk log every message passes through on its way to the
// broker: appended when a sample arrives, read back in order when the link
// is up, and removed once the broker has acknowledged it.
//
// On disk, in its directory (mode 0700):
//   - segments named by the sequence number of their first record, in hex
//     (0000000000000001.seg), each "TBSPOOL1" and then records: a 4-byte
//     little-endian body length, the CRC-32C of the body, and the body (a
//     2-byte topic length, the topic, the payload);
//   - "cursor": the sequence numbers of the first record the broker has not
//     acknowledged and of the first not yet handed to the MQTT client, and
//     their CRC-32C;
//   - "lock", held with flock while the spool is open;
//   - "deadletter" (and "deadletter.1", the one before, when it grew past
//     deadLetterMax): messages the broker can never take, set aside so
//     that the rest flows; "TBDEAD01", then records as in a segment.
//
// Durability: Flush hands records to the kernel with one write; from then
// on they survive the agent being killed. Sync fsyncs them, in the
// background; the Publisher calls it every mqtt.spool.sync_interval, so a
// power loss or kernel crash loses at most that much of the latest records
// (plus the time one fsync takes, should the disk be slower than that). The
// cursor is written (without fsync) on Sync too: after a crash the records
// since the cursor last written are sent again, so delivery is at least once.
//
// A torn record at the end of the newest segment (a crash mid-write) is cut
// off at Open. After a record that fails its CRC the reader goes on at the
// next valid record (resync): each bad stretch counts as one record
// dropped, and records an older segment should have held but did not are
// counted at its end; every intact record is read. A cursor pointing past
// the records is reported and ignored, and a .seg file without the segment
// header is ignored.
//
// When appending would make the segments larger than maxBytes, the oldest
// segments are deleted and their records not yet read are counted as
// dropped, with one log line per episode (until the spool has drained).
//
// A Spool is safe for use by several goroutines: typically one appends
// and another reads.
type Spool struct {
	mu sync.Mutex // guards all but the atomics and the background fsyncs

	dir     string
	log     zerolog.Logger
	max     int64 // max_bytes
	segSize int64 // a segment is closed once it reaches this size
	lock    *os.File

	segs     []segment // oldest first; the last is the one appended to
	w        *os.File  // the last segment, nil before the first append
	wbuf     []byte    // records appended but not yet written
	wdirty   bool      // written since the last fsync
	dirDirty bool      // segments created or deleted since the last fsync of dir
	next     uint64    // sequence number of the next record appended
	written  uint64    // records before this are in the file

	// The reader: the next record to read is rseq, at roff in segs[rseg].
	r       *os.File
	rseg    int
	roff    int64
	rseq    uint64
	rbuf    []byte // a window of the reader's segment at rbufOff
	rbufOff int64
	rmem    []byte
	peeked  int64    // size of the record returned by Peek, 0 if none
	cur     *os.File // the cursor file, open once written
	dead    *os.File // the dead-letter file, open once written
	deadLen int64
	curSlot int // the slot the next cursor record goes to
	// topics read so far: a value's topic is one of a fixed set, and
	// interning saves an allocation per record read.
	topics map[string]string

	acked     uint64 // records before this are acknowledged
	savedAck  uint64 // acked as last written to the cursor file
	savedRead uint64 // rseq as last written to the cursor file
	dropping  bool   // in a drop episode
	// corruptFrom is the first corrupt record of the newest segment found
	// at Open, 0 if none: the cursor is trusted only up to it.
	corruptFrom uint64
	episode     uint64 // dropped in the current episode

	values, dropped, resent atomic.Uint64
	bytes                   atomic.Int64

	// fsyncs run in the background: Sync's one at a time, each full
	// segment's after the Sync fsync under way (which may be on it).
	bg       sync.WaitGroup
	periodic chan struct{} // closed when Sync's latest fsync is done
	bgMu     sync.Mutex
	bgErr    error
}

type segment struct {
	first uint64 // sequence number of its first record
	size  int64  // bytes in the file
}

// Stats describes the spool; safe to read from any goroutine.
type Stats struct {
	Values  uint64 // records not yet acknowledged by the broker
	Bytes   int64  // size of the segment files
	Dropped uint64 // records deleted unsent: spool full, or corrupt on disk
	Resent  uint64 // records sent again after a restart, which the broker may have had
}

const (
	segMagic      = "TBSPOOL1"
	recHeader     = 8
	maxRecord     = 64 << 20 // a larger length is corruption
	maxSegment    = 4 << 20
	minSegment    = 4 << 10
	flushAt       = 64 << 10 // Append writes once this much is buffered
	readChunk     = 64 << 10
	cursorName    = "cursor"
	segSuffix     = ".seg"
	cursorFileLen = 20 // one cursor record; the file holds two (cursorSlots)
	cursorSlots   = 2
	deadName      = "deadletter"
	deadMagic     = "TBDEAD01"
	deadLetterMax = 16 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrLocked is returned by Open when another process holds the directory.
var ErrLocked = errors.New("in use by another process")

// Open opens or creates the spool in dir, bounded by maxBytes, and
// positions its reader at the first record not yet acknowledged.
func Open(dir string, maxBytes int64, log zerolog.Logger) (*Spool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool directory %s: %w", dir, err)
	}
	if fi, err := os.Stat(dir); err == nil && fi.Mode().Perm()&0o077 != 0 {
		// Made by someone else: the payloads may be confidential.
		log.Warn().Str("dir", dir).Str("mode", fi.Mode().Perm().String()).Msg("spool: the directory is open to other users (0700 recommended)")
	}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spool directory %s: %w", dir, err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			err = ErrLocked
		}
		return nil, fmt.Errorf("spool directory %s: %w", dir, err)
	}
	s := &Spool{
		dir:      dir,
		log:      log,
		max:      maxBytes,
		segSize:  min(maxSegment, max(minSegment, maxBytes/8)),
		lock:     lock,
		next:     1,
		periodic: make(chan struct{}),
	}
	close(s.periodic)
	if err := s.load(); err != nil {
		s.closeFiles()
		return nil, fmt.Errorf("spool directory %s: %w", dir, err)
	}
	s.updateStats()
	return s, nil
}

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
		// The full segment is fsynced and closed in the background, after
		// the Sync fsync under way (which may be on this very file).
		f, dirty, prev := s.w, s.wdirty, s.periodic
		s.w, s.wdirty = nil, false
		s.background(func() error {
			<-prev
			var err error
			if dirty {
				err = s.fsync(f, false)
			}
			return errors.Join(err, f.Close())
		})
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

func (s *Spool) size() int64 {
	var n int64
	for _, g := range s.segs {
		n += g.size
	}
	return n
}

func (s *Spool) removeOldest() error {
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

// Buffered reports whether appended records wait for Flush.
func (s *Spool) Buffered() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.wbuf) > 0
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
	return s.seek(s.acked)
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

// Sync writes what was appended, starts an fsync of the segment (and of the
// directory if segments came or went) in the background, unless one is still
// under way, and saves the cursor. It returns the error of an earlier
// background fsync, if any. The fsync runs in the background so that a slow
// disk never holds up Append: records are durable at most one Sync period
// plus the time of one fsync after they were appended.
func (s *Spool) Sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.flush(); err != nil {
		return err
	}
	if err := s.takeBgErr(); err != nil {
		return err
	}
	if !s.wdirty && !s.dirDirty {
		return s.saveCursor()
	}
	select {
	case <-s.periodic:
		var f *os.File
		if s.wdirty {
			f = s.w
		}
		dir, done := s.dirDirty, make(chan struct{})
		s.wdirty, s.dirDirty, s.periodic = false, false, done
		s.background(func() error {
			defer close(done)
			return s.fsync(f, dir)
		})
	default: // the previous one is still under way
	}
	return s.saveCursor()
}

// background runs fn in a goroutine; Close and rotate wait for it.
func (s *Spool) background(fn func() error) {
	s.bg.Go(func() {
		if err := fn(); err != nil {
			s.bgMu.Lock()
			s.bgErr = errors.Join(s.bgErr, err)
			s.bgMu.Unlock()
		}
	})
}

func (s *Spool) takeBgErr() error {
	s.bgMu.Lock()
	defer s.bgMu.Unlock()
	err := s.bgErr
	s.bgErr = nil
	return err
}

// fsync syncs f, if not nil, and the directory if dir is set.
func (s *Spool) fsync(f *os.File, dir bool) error {
	if f != nil {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("spool: sync: %w", err)
		}
	}
	if dir {
		if err := syncDir(s.dir); err != nil {
			return fmt.Errorf("spool: sync directory: %w", err)
		}
	}
	return nil
}

// saveCursor writes the cursor file if it changed.
func (s *Spool) saveCursor() error {
	if s.acked == s.savedAck && s.rseq == s.savedRead {
		return nil
	}
	// Not fsynced: a cursor lost with the power only means duplicates.
	// Written in place, to the two slots in turn, rather than to a new file
	// renamed over the old: creating and renaming a file ten times a second
	// was an eighth of the agent's CPU at 10,000 values/s in batch mode.
	var b [cursorFileLen]byte
	binary.LittleEndian.PutUint64(b[:], s.acked)
	binary.LittleEndian.PutUint64(b[8:], s.rseq)
	binary.LittleEndian.PutUint32(b[16:], crc32.Checksum(b[:16], castagnoli))
	if s.cur == nil {
		path := filepath.Join(s.dir, cursorName)
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return fmt.Errorf("spool: cursor: %w", err)
		}
		// The first record goes to the second slot, so that the first
		// (which an older version's one-record file also holds) stays
		// intact should this write be torn.
		if _, err := f.WriteAt(b[:], cursorFileLen); err != nil {
			f.Close()
			return fmt.Errorf("spool: cursor: %w", err)
		}
		if err := f.Truncate(cursorSlots * cursorFileLen); err != nil {
			f.Close()
			return fmt.Errorf("spool: cursor: %w", err)
		}
		s.cur, s.curSlot = f, 0
	} else {
		if _, err := s.cur.WriteAt(b[:], int64(s.curSlot*cursorFileLen)); err != nil {
			return fmt.Errorf("spool: cursor: %w", err)
		}
		s.curSlot = (s.curSlot + 1) % cursorSlots
	}
	s.savedAck, s.savedRead = s.acked, s.rseq
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Close writes and fsyncs everything, saves the cursor and releases the directory.
func (s *Spool) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.flush()
	s.bg.Wait()
	err = errors.Join(err, s.takeBgErr(), s.fsync(s.w, true), s.saveCursor())
	s.closeFiles()
	return err
}

// Abandon closes the files without syncing or saving the cursor, as a
// killed process would: a reader that must leave the spool as it found it
// (a test reading a killed agent's spool) closes it this way.
func (s *Spool) Abandon() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeFiles()
}

// closeFiles closes the files without syncing, as a killed process would.
func (s *Spool) closeFiles() {
	s.bg.Wait()
	s.closeReader()
	if s.cur != nil {
		s.cur.Close()
		s.cur = nil
	}
	if s.dead != nil {
		s.dead.Close()
		s.dead = nil
	}
	if s.w != nil {
		s.w.Close()
		s.w = nil
	}
	if s.lock != nil {
		s.lock.Close() // releases the flock
		s.lock = nil
	}
}

// Stats returns the spool's counters; safe to call from any goroutine.
func (s *Spool) Stats() Stats {
	return Stats{Values: s.values.Load(), Bytes: s.bytes.Load(), Dropped: s.dropped.Load(), Resent: s.resent.Load()}
}

func (s *Spool) updateStats() {
	s.values.Store(s.next - s.acked)
	s.bytes.Store(s.size())
}

func (s *Spool) segPath(first uint64) string {
	return filepath.Join(s.dir, fmt.Sprintf("%016x%s", first, segSuffix))
}
