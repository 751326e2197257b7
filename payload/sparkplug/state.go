package sparkplug

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/tagbridge/tagbridge/payload"
)

// open reads the state files that run keeps in agent.spool_dir: the bdSeq
// of the latest session and the datatypes announced. Only run calls it
// (through New), never validate: the files are made by the user that runs.
func (f *sparkplugFormat) Open() error {
	if err := os.MkdirAll(f.dir, 0o700); err != nil {
		return fmt.Errorf("sparkplug state directory: %w", err)
	}
	seq, err := readBDSeq(filepath.Join(f.dir, bdSeqFile))
	if err != nil {
		return err
	}
	f.bdSeq.Store(seq)
	return f.readTypes()
}

// readBDSeq returns the bdSeq for the first CONNECT: 0 without a file,
// else one more than the latest session's.
func readBDSeq(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("sparkplug bdSeq: %w", err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		// Start again at 0: hosts only compare an NDEATH's bdSeq with the
		// NBIRTH's of the same connection.
		return 0, nil
	}
	return (n + 1) % 256, nil
}

// writeState replaces a state file in the spool directory.
func (f *sparkplugFormat) writeState(name string, b []byte) error {
	path := filepath.Join(f.dir, name)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("sparkplug state %s: %w", name, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("sparkplug state %s: %w", name, err)
	}
	return nil
}

// sessionStarted records that the broker accepted the CONNECT whose will
// holds the current bdSeq: the next CONNECT takes one more, and so does
// the next start.
func (f *sparkplugFormat) SessionStarted() error {
	f.began.Store(true)
	f.setHost(false, -1) // until the session's STATE (retained) says otherwise
	return f.writeState(bdSeqFile, []byte(strconv.FormatUint(f.bdSeq.Load(), 10)+"\n"))
}

// reconnecting returns the will for the next CONNECT: one bdSeq more if
// the broker accepted the previous one, else the same.
func (f *sparkplugFormat) Reconnecting() payload.Message {
	if f.began.Swap(false) {
		f.bdSeq.Store((f.bdSeq.Load() + 1) % 256)
	}
	w, _ := f.Will()
	return w
}

// readTypes sets the datatypes announced by earlier runs, as known but not
// yet announced by this one.
func (f *sparkplugFormat) readTypes() error {
	b, err := os.ReadFile(filepath.Join(f.dir, typesFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("sparkplug datatypes: %w", err)
	}
	var types map[string]map[string]uint32
	if json.Unmarshal(b, &types) != nil {
		return nil // a later birth rewrites it; datatypes come with values
	}
	for plc, d := range f.devices {
		for _, m := range d.metrics {
			if dt := types[plc][m.name]; dt != spUnknown && m.datatype == spUnknown {
				m.datatype = dt
			}
		}
	}
	return nil
}

// writeTypes stores every known datatype; f.mu is held.
func (f *sparkplugFormat) writeTypes() error {
	types := map[string]map[string]uint32{}
	for plc, d := range f.devices {
		for _, m := range d.metrics {
			if m.datatype != spUnknown {
				if types[plc] == nil {
					types[plc] = map[string]uint32{}
				}
				types[plc][m.name] = m.datatype
			}
		}
	}
	b, err := json.Marshal(types)
	if err != nil {
		return fmt.Errorf("sparkplug datatypes: %w", err)
	}
	return f.writeState(typesFile, b)
}
