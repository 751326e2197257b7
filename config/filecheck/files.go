// Package filecheck checks the files a configuration names before the
// agent opens them for real: certificates and keys (in the allowed
// directories, readable, private, matching, valid now, holding the key
// the security policy needs) and secret files (regular, bounded). Each
// check says what is wrong in a message; the caller places it.
package filecheck

import (
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/tagbridge/tagbridge/certs"
)

// File checks one certificate, key, CA or CRL file: it must lie in the
// guard's directories, symlinks resolved, and be readable; a key file
// must not be readable by group or others. It says what is wrong, or ""
// when the file passed; hint ends the message of a missing file.
func File(guard certs.Guard, name string, key bool, hint string) string {
	resolved, err := guard.Check(name)
	switch {
	case errors.Is(err, certs.ErrNotAllowed):
		return err.Error()
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Sprintf("cannot read file %q: no such file or directory%s", name, hint)
	case err != nil:
		return fmt.Sprintf("cannot read file %q: %s", name, Reason(err))
	}
	if err := Readable(resolved); err != nil {
		return fmt.Sprintf("cannot read file %q: %s", name, Reason(err))
	}
	if key {
		if err := certs.CheckKeyFile(resolved); err != nil {
			return err.Error()
		}
	}
	return ""
}

// Problem is one thing wrong with a key pair; Key is the key of the file
// at fault: certificate_file or key_file.
type Problem struct {
	Key string
	Msg string
}

// KeyPair checks a certificate and key file pair that passed File: that
// they load and match, that the certificate is valid now, that its key is
// what need asks for and, with needURI, that it names an application URI.
func KeyPair(guard certs.Guard, certFile, keyFile string, needURI bool, need KeyNeed) []Problem {
	cert, _, _, err := guard.LoadAnyKeyPair(certFile, keyFile)
	switch {
	case errors.Is(err, certs.ErrKeyMismatch), errors.Is(err, certs.ErrBadKey), errors.Is(err, certs.ErrKeyPermissions):
		return []Problem{{"key_file", err.Error()}}
	case err != nil:
		return []Problem{{"certificate_file", err.Error()}}
	}
	var out []Problem
	if err := certs.CheckValidity(certFile, cert, time.Now()); err != nil {
		out = append(out, Problem{"certificate_file", err.Error()})
	}
	if msg := need.Check(certFile, cert.PublicKey); msg != "" {
		out = append(out, Problem{"certificate_file", msg})
	}
	if needURI {
		if _, err := certs.ApplicationURI(cert); err != nil {
			out = append(out, Problem{"certificate_file", err.Error()})
		}
	}
	return out
}
