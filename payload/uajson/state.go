package uajson

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math"
	"os"
	"path/filepath"
)

// metaFile, in agent.spool_dir, holds each writer's ConfigurationVersion
// with the field list it was given for, so that it changes when the
// writer's tags do, and only then.
const metaFile = "opcua_json_metadata"

// metaState is one writer's entry in metaFile.
type metaState struct {
	Fields  string `json:"fields"` // tagsHash
	Version uint32 `json:"version"`
}

// open reads seqFile and metaFile. Only run calls it (through New), never
// validate. A file that cannot be read as written is taken as absent:
// numbering starts at 1 again, as it did before there was one, and the
// ConfigurationVersions are new.
func (f *uaJSONFormat) Open() error {
	if err := os.MkdirAll(f.dir, 0o700); err != nil {
		return fmt.Errorf("opcua_json state directory: %w", err)
	}
	if err := f.openMeta(); err != nil {
		return err
	}
	b, err := os.ReadFile(filepath.Join(f.dir, seqFile))
	if errors.Is(err, fs.ErrNotExist) {
		f.mu.Lock()
		f.opened = true
		f.mu.Unlock()
		return nil
	}
	if err != nil {
		return fmt.Errorf("opcua_json sequence numbers: %w", err)
	}
	var seqs map[string]uint32
	if json.Unmarshal(b, &seqs) != nil {
		seqs = nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.opened = true
	for plc, seq := range seqs {
		if w, ok := f.writers[plc]; ok {
			w.seq, w.reserved = seq, uint64(seq)
		}
	}
	return nil
}

// openMeta keeps each writer's ConfigurationVersion from metaFile when
// its tags are those it was given for, and records new ones.
func (f *uaJSONFormat) openMeta() error {
	path := filepath.Join(f.dir, metaFile)
	var saved map[string]metaState
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		if json.Unmarshal(b, &saved) != nil {
			saved = nil
		}
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("opcua_json metadata versions: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	now := make(map[string]metaState, len(f.writers))
	for plc, w := range f.writers {
		st := metaState{Fields: tagsHash(w.tags), Version: w.version}
		if old, ok := saved[plc]; ok && old.Fields == st.Fields && old.Version != 0 {
			st.Version = old.Version
		} else if ok && old.Version >= st.Version {
			st.Version = old.Version + 1 // changed within the second of the last change
		}
		w.version = st.Version
		now[plc] = st
	}
	if maps.Equal(now, saved) {
		return nil
	}
	b, _ = json.Marshal(now) // strings and numbers always encode
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("opcua_json metadata versions: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("opcua_json metadata versions: %w", err)
	}
	return nil
}

// saveSeqs writes every writer's reserved SequenceNumber to seqFile, when
// the format was opened (not for validate). f.mu is held. A failure is not
// reported here: the spool, in the same directory, reports its own.
func (f *uaJSONFormat) saveSeqs() {
	if !f.opened {
		return
	}
	seqs := make(map[string]uint64, len(f.writers))
	for plc, w := range f.writers {
		seqs[plc] = min(w.reserved, math.MaxUint32)
	}
	b, _ := json.Marshal(seqs) // a map of numbers always encodes
	path := filepath.Join(f.dir, seqFile)
	tmp := path + ".tmp"
	if os.WriteFile(tmp, append(b, '\n'), 0o600) == nil {
		_ = os.Rename(tmp, path)
	}
}
