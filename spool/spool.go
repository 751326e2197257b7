// Package spool is the disk log every message passes through on its way to
// the broker: segments, cursor, dead-letter file.
package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
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
// the broker has not acknowledged (plus the time one fsync takes, should
// the disk be slower than that). Sync skips the fsync when the broker has
// acknowledged every record written: a record it has needs no durability,
// and with a broker that keeps up most Syncs find nothing else. The
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

	// unacked holds the sizes of the records read and not yet
	// acknowledged, oldest first, from unackedHead on; unackedBytes is
	// their sum. With the records not yet read they make held().
	unacked      []recordSize
	unackedHead  int
	unackedBytes int64
	// onDrop hears of every record dropped, with its topic ("" when it
	// cannot be read); see OnDrop.
	onDrop func(topic string, n uint64)

	values, dropped, resent atomic.Uint64
	fileSyncs, dirSyncs     atomic.Uint64 // fsyncs done, for the tests
	bytes, fileBytes        atomic.Int64

	// unsynced are the full segments written since their last fsync,
	// still open: the next Sync fsyncs those the broker does not wholly
	// have and closes the others unsynced.
	unsynced []fullSegment

	// fsyncs run in the background, one at a time (Sync's).
	bg       sync.WaitGroup
	periodic chan struct{} // closed when Sync's latest fsync is done
	bgMu     sync.Mutex
	bgErr    error
}

// recordSize is a record read and not yet acknowledged.
type recordSize struct {
	seq  uint64
	size int64
}

type segment struct {
	first uint64 // sequence number of its first record
	size  int64  // bytes in the file
}

// fullSegment is a segment no longer appended to, awaiting its fsync.
type fullSegment struct {
	f          *os.File
	first, end uint64 // its records are first..end-1
}

// Stats describes the spool; safe to read from any goroutine.
type Stats struct {
	Values uint64 // records not yet acknowledged by the broker
	// Bytes is what those records take, framing included: 0 once the
	// broker has everything, whatever the files still hold.
	Bytes int64
	// FileBytes is the size of the segment files, which max_bytes
	// bounds: delivered records stay in them until a segment is wholly
	// delivered.
	FileBytes int64
	Dropped   uint64 // records deleted unsent: spool full, or corrupt on disk
	Resent    uint64 // records sent again after a restart, which the broker may have had
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
	s.closeDelivered()
	if !s.wdirty && !s.dirDirty && len(s.unsynced) == 0 || s.acked >= s.written {
		// Nothing written since the last fsync, or the broker has every
		// record written: those need no durability. The dirty marks stay
		// for the next fsync, so that the segment and the directory are
		// synced with the next records the broker does not have yet. With
		// a broker keeping up, a segment is then deleted before it was
		// ever written back: no fsync, and the disk never sees its data.
		return s.saveCursor()
	}
	select {
	case <-s.periodic:
		var f *os.File
		if s.wdirty {
			f = s.w
		}
		full := s.unsynced
		dir, done := s.dirDirty, make(chan struct{})
		s.wdirty, s.dirDirty, s.periodic, s.unsynced = false, false, done, nil
		s.background(func() error {
			defer close(done)
			var err error
			for _, g := range full {
				err = errors.Join(err, s.fsync(g.f, false), g.f.Close())
			}
			return errors.Join(err, s.fsync(f, dir))
		})
	default: // the previous one is still under way
	}
	return s.saveCursor()
}

// closeDelivered closes the full segments whose records the broker has
// all, without an fsync; s.mu is held.
func (s *Spool) closeDelivered() {
	for len(s.unsynced) > 0 && s.unsynced[0].end <= s.acked {
		s.closeAfterFsync(s.unsynced[0].f)
		s.unsynced = s.unsynced[1:]
	}
}

// closeAfterFsync closes f now, or once the fsync under way (which may be
// on f, taken when f was appended to) is done; s.mu is held.
func (s *Spool) closeAfterFsync(f *os.File) {
	select {
	case <-s.periodic:
		f.Close()
	default:
		prev := s.periodic
		s.background(func() error {
			<-prev
			return f.Close()
		})
	}
}

// closeFull closes the full segment first if it awaits its fsync: it is
// being deleted; s.mu is held.
func (s *Spool) closeFull(first uint64) {
	if len(s.unsynced) > 0 && s.unsynced[0].first == first {
		s.closeAfterFsync(s.unsynced[0].f)
		s.unsynced = s.unsynced[1:]
	}
}

// background runs fn in a goroutine; Close and a full disk wait for it.
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
		s.fileSyncs.Add(1)
		if err := f.Sync(); err != nil {
			return fmt.Errorf("spool: sync: %w", err)
		}
	}
	if dir {
		s.dirSyncs.Add(1)
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

// Close writes and fsyncs everything, saves the cursor and releases the
// directory. When the broker has acknowledged every record, the segments
// and the cursor are deleted: what stays in the directory is then only
// what is still of value (the dead-letter file), and the next Open starts
// afresh.
func (s *Spool) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.flush()
	s.bg.Wait()
	for _, g := range s.unsynced {
		err = errors.Join(err, s.fsync(g.f, false), g.f.Close())
	}
	s.unsynced = nil
	err = errors.Join(err, s.takeBgErr(), s.fsync(s.w, true), s.saveCursor())
	if err == nil && s.acked == s.next && len(s.segs) > 0 {
		err = s.removeDelivered()
	}
	s.closeFiles()
	return err
}

// removeDelivered deletes the segments, all delivered, then the cursor: a
// crash in between leaves a cursor past the (no) records, which Open
// reports and ignores, never a record sent twice.
func (s *Spool) removeDelivered() error {
	s.closeReader()
	for _, f := range []**os.File{&s.w, &s.cur} {
		if *f != nil {
			(*f).Close()
			*f = nil
		}
	}
	for len(s.segs) > 0 {
		if err := os.Remove(s.segPath(s.segs[0].first)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("spool: delete a delivered segment: %w", err)
		}
		s.segs = s.segs[1:]
	}
	if err := os.Remove(filepath.Join(s.dir, cursorName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("spool: delete the cursor: %w", err)
	}
	s.rseg, s.roff = 0, 0
	s.updateStats()
	if err := syncDir(s.dir); err != nil {
		return fmt.Errorf("spool: sync directory: %w", err)
	}
	return nil
}

// closeFiles closes the files without syncing, as a killed process would.
func (s *Spool) closeFiles() {
	s.bg.Wait()
	for _, g := range s.unsynced {
		g.f.Close()
	}
	s.unsynced = nil
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
	return Stats{Values: s.values.Load(), Bytes: s.bytes.Load(), FileBytes: s.fileBytes.Load(), Dropped: s.dropped.Load(), Resent: s.resent.Load()}
}

// OnDrop has fn hear of the records dropped from now on (spool full,
// disk full, a write error, corruption), n at a time, with their topic,
// or "" for records that cannot be read. fn runs with the spool locked:
// it must be quick and must not call the spool.
func (s *Spool) OnDrop(fn func(topic string, n uint64)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onDrop = fn
}

func (s *Spool) updateStats() {
	s.forgetRead()
	s.values.Store(s.next - s.acked)
	s.bytes.Store(s.held())
	s.fileBytes.Store(s.size())
}

// held is the size of the records not yet acknowledged: those read and
// awaiting their acknowledgement, and those after the reader.
func (s *Spool) held() int64 {
	n := s.unackedBytes + int64(len(s.wbuf))
	for i := s.rseg; i < len(s.segs); i++ {
		from := int64(len(segMagic))
		if i == s.rseg {
			from = s.roff
		}
		n += max(0, s.segs[i].size-from)
	}
	return n
}

// readRecord notes a record the reader passed, awaiting its acknowledgement.
func (s *Spool) readRecord(seq uint64, size int64) {
	if s.unackedHead > 0 && s.unackedHead == len(s.unacked) {
		s.unacked, s.unackedHead = s.unacked[:0], 0
	}
	s.unacked = append(s.unacked, recordSize{seq, size})
	s.unackedBytes += size
}

// forgetRead forgets the records read before s.acked (acknowledged or
// dropped) and, when the reader moved back, those from s.rseq on.
func (s *Spool) forgetRead() {
	for s.unackedHead < len(s.unacked) && s.unacked[s.unackedHead].seq < s.acked {
		s.unackedBytes -= s.unacked[s.unackedHead].size
		s.unackedHead++
	}
	for len(s.unacked) > s.unackedHead && s.unacked[len(s.unacked)-1].seq >= s.rseq {
		s.unackedBytes -= s.unacked[len(s.unacked)-1].size
		s.unacked = s.unacked[:len(s.unacked)-1]
	}
	if s.unackedHead == len(s.unacked) {
		s.unacked, s.unackedHead, s.unackedBytes = s.unacked[:0], 0, 0
	}
}

func (s *Spool) segPath(first uint64) string {
	return filepath.Join(s.dir, fmt.Sprintf("%016x%s", first, segSuffix))
}
