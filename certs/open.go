package certs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// ReadFile reads a certificate, CA or CRL file that must lie in the allowed
// directories. The check is made on the file actually opened, not only on
// the path beforehand: a symlink swapped after the configuration was
// loaded cannot lead the agent to a file outside them.
func (g Guard) ReadFile(path string) ([]byte, error) {
	return g.read(path, false)
}

// ReadKeyFile is ReadFile for a private key: the opened file must also be
// unreadable by group and others (CheckKeyFile's rule).
func (g Guard) ReadKeyFile(path string) ([]byte, error) {
	return g.read(path, true)
}

func (g Guard) read(path string, key bool) ([]byte, error) {
	f, err := g.open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if key {
		if mode := fi.Mode().Perm(); mode&0o077 != 0 {
			return nil, fail(ErrKeyPermissions, "key file %s is readable by group or others (mode %04o); chmod 600 %s", path, mode, path)
		}
	}
	return readAll(f, path)
}

// open opens path for reading after Check, then verifies that the file
// opened is the one Check resolved, inside an allowed directory: the last
// component is opened without following a symlink, and the opened file's
// own path (from /proc/self/fd, or resolved again and compared by device and
// inode where /proc is missing) must lie inside an allowed directory.
func (g Guard) open(path string) (*os.File, error) {
	resolved, err := g.Check(path)
	if err != nil {
		return nil, err
	}
	// O_NONBLOCK: opening a FIFO must not block; it is refused below as not a regular file.
	f, err := os.OpenFile(resolved, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, syscall.ELOOP) {
		// The last component became a symlink since Check resolved it.
		return nil, fail(ErrNotAllowed, "%s changed while it was opened (now a symlink); refused", path)
	}
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%s: not a regular file", path)
	}
	if err == nil {
		err = g.verifyOpened(path, f, fi)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// verifyOpened checks that the open file f lies in an allowed directory.
func (g Guard) verifyOpened(path string, f *os.File, fi os.FileInfo) error {
	opened, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(f.Fd())))
	if err != nil || !filepath.IsAbs(opened) {
		// No /proc: resolve again; the file must be the same one.
		again, err := filepath.EvalSymlinks(path)
		if err != nil {
			return fail(ErrNotAllowed, "%s changed while it was opened; refused", path)
		}
		st, err := os.Stat(again)
		if err != nil || !os.SameFile(fi, st) {
			return fail(ErrNotAllowed, "%s changed while it was opened; refused", path)
		}
		opened = absOr(again)
	}
	if !g.contains(opened) {
		return fail(ErrNotAllowed, "%s resolves to %s, which is not in an allowed directory (%s)", path, opened, g.list())
	}
	return nil
}

// contains reports whether the resolved absolute path p lies in an allowed
// directory, the directories' own symlinks resolved.
func (g Guard) contains(p string) bool {
	for _, d := range g.Dirs {
		if dr, err := filepath.EvalSymlinks(d); err == nil && within(p, absOr(dr)) {
			return true
		}
	}
	return false
}

// readAll reads at most maxFile bytes of f, named path in errors.
func readAll(f io.Reader, path string) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(f, maxFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxFile {
		return nil, fmt.Errorf("%s: larger than 1 MiB", path)
	}
	if len(data) == 0 {
		return nil, fmt.Errorf("%s: empty file", path)
	}
	return data, nil
}
