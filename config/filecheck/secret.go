package filecheck

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/tagbridge/tagbridge/certs"
)

// maxSecret bounds a password file, so a path like /dev/zero cannot exhaust memory.
const maxSecret = 64 << 10

// ReadSecret reads a password, key or token file, without its trailing
// newline: a regular file of at most 64 KiB.
func ReadSecret(name string) (string, error) {
	if err := Readable(name); err != nil {
		return "", err
	}
	f, err := os.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecret+1))
	if err != nil {
		return "", err
	}
	if len(b) > maxSecret {
		return "", errors.New("larger than 64 KiB")
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// Readable checks that name is a regular file we may open. Opening a FIFO
// or a device could block or never end, so those are refused first.
func Readable(name string) error {
	fi, err := os.Stat(name)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return errors.New("not a regular file")
	}
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	return f.Close()
}

// Reason drops the path an *fs.PathError repeats: the message quotes it already.
func Reason(err error) string {
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		return pe.Err.Error()
	}
	return err.Error()
}

// Token reads a bearer token file and returns the token, or what is wrong
// with the file. Like ssh with a private key, it refuses a file others may
// read: whoever reads the token can read what it guards. The token is one
// word of at least minLen characters; messages never echo it.
func Token(name string, minLen int) (token, msg string) {
	val, err := ReadSecret(name)
	if err != nil {
		return "", fmt.Sprintf("cannot read token file %q: %s", name, Reason(err))
	}
	if err := certs.CheckKeyFile(name); errors.Is(err, certs.ErrKeyPermissions) {
		mode := os.FileMode(0)
		if fi, err := os.Stat(name); err == nil {
			mode = fi.Mode().Perm()
		}
		return "", fmt.Sprintf("token file %q is readable by group or others (mode %04o); chmod 600 %s", name, mode, name)
	} else if err != nil {
		return "", fmt.Sprintf("cannot read token file %q: %s", name, Reason(err))
	}
	val = strings.TrimSpace(val)
	switch {
	case val == "":
		return "", fmt.Sprintf("token file %q is empty", name)
	case len(val) < minLen || strings.ContainsAny(val, " \t\r\n"):
		return "", fmt.Sprintf("token in %q must be one word of at least %d characters (e.g. openssl rand -hex 32)", name, minLen)
	}
	return val, ""
}
