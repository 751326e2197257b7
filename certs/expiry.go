package certs

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Expiry is a certificate or CRL the agent depends on, and when it runs
// out: a certificate's NotAfter, a CRL's NextUpdate (after which a full
// trust check refuses the chain it covers).
type Expiry struct {
	Role     string    `json:"role"` // agent, user, server, trusted, ca, crl
	Subject  string    `json:"subject"`
	File     string    `json:"file"`
	NotAfter time.Time `json:"not_after"`
}

// Roles of the certificates in a trust store.
const (
	RoleServer  = "server"  // the certificate the PLC presents, trusted directly
	RoleTrusted = "trusted" // another server certificate in trusted/certs
	RoleCA      = "ca"      // a CA certificate in trusted/ or issuers/
	RoleCRL     = "crl"     // a CRL: its next update
)

// StoreExpiries lists the certificates and CRLs of the trust store in dir
// without creating or writing anything (a missing store lists nothing).
// serverFingerprint, when given, marks the server's own certificate; before
// the PLC was reached it is not known, and a certificate naming one of
// hosts (the PLC's, as the trust check would find it) is taken for it, so
// the log at start, the metric and tagbridge status use one role for it.
func StoreExpiries(dir, serverFingerprint string, hosts ...string) []Expiry {
	want, _ := NormalizeFingerprint(serverFingerprint)
	namesHost := func(cert *x509.Certificate) bool {
		return want == "" && slices.ContainsFunc(hosts, func(h string) bool { return h != "" && VerifyHostname(cert, h) == nil })
	}
	var out []Expiry
	for _, sub := range []string{TrustedCerts, IssuersCerts} {
		for _, path := range storeFiles(filepath.Join(dir, filepath.FromSlash(sub))) {
			data, err := readFile(path)
			if err != nil {
				continue
			}
			cert, der, err := ParseCertificate(data)
			if err != nil {
				continue
			}
			role := RoleTrusted
			switch {
			case cert.IsCA:
				role = RoleCA
			case want != "" && fingerprintHex(der) == want, sub == TrustedCerts && namesHost(cert):
				role = RoleServer
			case sub == IssuersCerts:
				continue // not trusted on its own: nothing depends on it
			}
			out = append(out, Expiry{Role: role, Subject: cert.Subject.CommonName, File: path, NotAfter: cert.NotAfter})
		}
	}
	for _, sub := range []string{TrustedCRL, IssuersCRL} {
		for _, path := range storeFiles(filepath.Join(dir, filepath.FromSlash(sub))) {
			data, err := readFile(path)
			if err != nil {
				continue
			}
			if crl := parseCRL(data); crl != nil && !crl.NextUpdate.IsZero() {
				out = append(out, Expiry{Role: RoleCRL, Subject: crl.Issuer.CommonName, File: path, NotAfter: crl.NextUpdate})
			}
		}
	}
	return out
}

// CertificateExpiry is the Expiry of the certificate file path in role.
func CertificateExpiry(role, path string) (Expiry, error) {
	cert, _, err := LoadCertificate(path)
	if err != nil {
		return Expiry{}, err
	}
	return Expiry{Role: role, Subject: subjectName(cert), File: path, NotAfter: cert.NotAfter}, nil
}

func subjectName(c *x509.Certificate) string {
	if c.Subject.CommonName != "" {
		return c.Subject.CommonName
	}
	return c.Subject.String()
}

func storeFiles(dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") || !e.Type().IsRegular() {
			continue
		}
		out = append(out, filepath.Join(dir, e.Name()))
	}
	return out
}
