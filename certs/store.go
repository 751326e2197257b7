package certs

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Store is a PKI directory in the layout the OPC UA stacks use:
//
//	trusted/certs   server certificates and CAs trusted as anchors
//	trusted/crl     their CRLs
//	issuers/certs   intermediate CAs, not trusted on their own
//	issuers/crl     their CRLs
//	rejected/certs  certificates refused, to be moved to trusted/certs by hand
//
// The directories are read again at every Verify, so a certificate moved into
// trusted/certs counts at the next attempt; parsed files are cached by
// modification time and size. A Store is safe for concurrent use.
type Store struct {
	Dir string

	mu    sync.Mutex
	cache map[string]cached
}

type cached struct {
	mod  time.Time
	size int64
	cert *x509.Certificate
	crl  *x509.RevocationList
}

// The store's subdirectories.
const (
	TrustedCerts  = "trusted/certs"
	TrustedCRL    = "trusted/crl"
	IssuersCerts  = "issuers/certs"
	IssuersCRL    = "issuers/crl"
	RejectedCerts = "rejected/certs"
)

// OpenStore returns the store at dir, creating its subdirectories (mode
// 0700, owned like dir) where missing.
func OpenStore(dir string) (*Store, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	for _, sub := range []string{TrustedCerts, TrustedCRL, IssuersCerts, IssuersCRL, RejectedCerts} {
		if err := mkdirAllOwned(filepath.Join(abs, sub), 0o700); err != nil {
			return nil, fmt.Errorf("pki dir: %w", err)
		}
	}
	return &Store{Dir: abs, cache: map[string]cached{}}, nil
}

// Path returns the absolute path of a subdirectory such as TrustedCerts.
func (s *Store) Path(sub string) string { return filepath.Join(s.Dir, filepath.FromSlash(sub)) }

// storedCert is a certificate file of the store.
type storedCert struct {
	path string
	cert *x509.Certificate
}

// certs returns the parseable certificates in sub. Unreadable or
// unparseable files are skipped: the store is a folder people drop files in.
func (s *Store) certs(sub string) []storedCert {
	var out []storedCert
	for _, path := range s.files(sub) {
		if c := s.load(path, false); c.cert != nil {
			out = append(out, storedCert{path, c.cert})
		}
	}
	return out
}

func (s *Store) crls(sub string) []*x509.RevocationList {
	var out []*x509.RevocationList
	for _, path := range s.files(sub) {
		if c := s.load(path, true); c.crl != nil {
			out = append(out, c.crl)
		}
	}
	return out
}

func (s *Store) files(sub string) []string {
	dir := s.Path(sub)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		out = append(out, filepath.Join(dir, e.Name()))
	}
	return out
}

func (s *Store) load(path string, crl bool) cached {
	fi, err := os.Stat(path)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() > maxFile {
		return cached{}
	}
	s.mu.Lock()
	c, ok := s.cache[path]
	s.mu.Unlock()
	if ok && c.mod.Equal(fi.ModTime()) && c.size == fi.Size() {
		return c
	}
	c = cached{mod: fi.ModTime(), size: fi.Size()}
	if data, err := readFile(path); err == nil {
		if crl {
			c.crl = parseCRL(data)
		} else {
			c.cert, _, _ = ParseCertificate(data)
		}
	}
	s.mu.Lock()
	if s.cache == nil {
		s.cache = map[string]cached{}
	}
	s.cache[path] = c
	s.mu.Unlock()
	return c
}

// parseCRL parses a PEM ("X509 CRL") or DER CRL, or returns nil.
func parseCRL(data []byte) *x509.RevocationList {
	der := data
	if b, ok := pemBlock(data, "X509 CRL"); ok {
		der = b
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil
	}
	return crl
}

// reject writes der to rejected/certs, named after the subject's common name
// and the fingerprint, and returns the file's path.
func (s *Store) reject(cert *x509.Certificate) (string, error) {
	path := filepath.Join(s.Path(RejectedCerts), fileName(cert))
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, cert.Raw) {
		return path, nil
	}
	if err := WriteFileAtomic(path, cert.Raw, 0o600, true); err != nil {
		return "", err
	}
	return path, nil
}

// fileName is "<common name>_<sha-256 hex>.der" with the name reduced to
// characters safe in a file name and a shell command.
func fileName(cert *x509.Certificate) string {
	return sanitize(cert.Subject.CommonName, "certificate") + "_" + fingerprintHex(cert.Raw) + ".der"
}

func sanitize(s, empty string) string {
	s = strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '.', r == '_':
			return r
		}
		return '_'
	}, s)
	s = strings.TrimLeft(s, ".")
	if len(s) > 64 {
		s = s[:64]
	}
	if s == "" {
		return empty
	}
	return s
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-._/:=+,@", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
