package certs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Files and directories written into a directory another user owns (the
// service user's trust store, written by "tagbridge browse" run as root)
// take that directory's owner and group, so that the service can still read
// and replace them. Only root can give files away; anyone else writes as
// themselves, which is already the directory's owner in the package layout.

// dirOwner returns the owner of dir when this process runs as root and dir
// belongs to another user; ok is false when nothing is to be given away.
func dirOwner(dir string) (uid, gid int, ok bool) {
	if os.Geteuid() != 0 {
		return 0, 0, false
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return 0, 0, false
	}
	st, isUnix := fi.Sys().(*syscall.Stat_t)
	if !isUnix || st.Uid == 0 {
		return 0, 0, false
	}
	return int(st.Uid), int(st.Gid), true
}

// ownLikeDir gives the open file f the owner of dir (see dirOwner).
func ownLikeDir(f *os.File, dir string) error {
	uid, gid, ok := dirOwner(dir)
	if !ok {
		return nil
	}
	if err := f.Chown(uid, gid); err != nil {
		return fmt.Errorf("give %s to the owner of %s: %w", f.Name(), dir, err)
	}
	return nil
}

// mkdirAllOwned is os.MkdirAll, the directories it creates owned like the
// nearest one that existed.
func mkdirAllOwned(path string, perm os.FileMode) error {
	existing := path
	var missing []string
	for {
		if _, err := os.Stat(existing); err == nil {
			break
		}
		parent := filepath.Dir(existing)
		if parent == existing {
			break
		}
		missing = append(missing, existing)
		existing = parent
	}
	if err := os.MkdirAll(path, perm); err != nil {
		return err
	}
	uid, gid, ok := dirOwner(existing)
	if !ok {
		return nil
	}
	for _, dir := range missing {
		if err := os.Lchown(dir, uid, gid); err != nil {
			return fmt.Errorf("give %s to the owner of %s: %w", dir, existing, err)
		}
	}
	return nil
}

// unreadable lists the files in the store's trust directories this process
// cannot read, each with the user who needs access: a certificate moved to
// trusted/certs by root keeps root's owner and mode 0600, and the service
// would otherwise only say the server's certificate is not trusted.
func (s *Store) unreadable() []string {
	var out []string
	for _, sub := range []string{TrustedCerts, IssuersCerts, TrustedCRL, IssuersCRL} {
		for _, path := range s.files(sub) {
			f, err := os.Open(path)
			if err == nil {
				f.Close()
				continue
			}
			if errors.Is(err, fs.ErrPermission) {
				out = append(out, fmt.Sprintf("%s is not readable by user %s, who needs to read it (e.g. chown %s %s)", path, currentUser(), currentUserName(), shellQuote(path)))
			}
		}
	}
	return out
}

// currentUser names the user this process runs as, with its id.
func currentUser() string {
	return currentUserName() + " (uid " + strconv.Itoa(os.Geteuid()) + ")"
}

func currentUserName() string {
	if u, err := user.LookupId(strconv.Itoa(os.Geteuid())); err == nil {
		return u.Username
	}
	return strconv.Itoa(os.Geteuid())
}

// unreadableNote is appended to an untrusted-certificate error when files
// of the trust store could not be read.
func (s *Store) unreadableNote() string {
	list := s.unreadable()
	if len(list) == 0 {
		return ""
	}
	return "; " + strings.Join(list, "; ")
}
