// Package certs loads and generates OPC UA application instance
// certificates, guards the directories certificate files may come from, and
// keeps the trust store that decides whether a server's certificate is
// trusted. It returns values and errors; it never reads the config file and
// never logs.
package certs

import (
	"errors"
	"fmt"
)

// Sentinel errors, for errors.Is. The returned errors wrap them and say more.
var (
	ErrNotAllowed        = errors.New("not in an allowed directory")
	ErrKeyPermissions    = errors.New("key file readable by group or others")
	ErrBadCertificate    = errors.New("not a valid certificate")
	ErrBadKey            = errors.New("not a valid private key")
	ErrKeyType           = errors.New("key type not usable by the security policy")
	ErrKeyMismatch       = errors.New("key does not match certificate")
	ErrUntrusted         = errors.New("certificate not trusted")
	ErrChanged           = errors.New("certificate changed since first use")
	ErrExpired           = errors.New("certificate expired")
	ErrNotYetValid       = errors.New("certificate not yet valid")
	ErrRevoked           = errors.New("certificate revoked")
	ErrRevocationUnknown = errors.New("revocation status unknown")
	ErrWeakKey           = errors.New("key too short")
	ErrSHA1              = errors.New("SHA-1 signature")
	ErrKeyUsage          = errors.New("key usage not allowed")
	ErrHostname          = errors.New("host name not in certificate")
	ErrApplicationURI    = errors.New("application URI mismatch")
)

// reasonError reads as its message and matches its kind with errors.Is.
type reasonError struct {
	kind error
	msg  string
}

func (e *reasonError) Error() string { return e.msg }
func (e *reasonError) Unwrap() error { return e.kind }

func fail(kind error, format string, args ...any) error {
	return &reasonError{kind: kind, msg: fmt.Sprintf(format, args...)}
}
