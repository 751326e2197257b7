package certs

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// Options describe an application instance certificate for Generate.
type Options struct {
	AgentID  string    // required; part of the ApplicationURI
	Hostname string    // required; DNS SAN and part of the ApplicationURI
	Days     int       // validity; 0 means DefaultDays
	KeySize  int       // 2048, 3072 or 4096; 0 means 2048
	Now      time.Time // start of validity; zero means now
}

// backdate starts a generated certificate's validity before its creation:
// PLC clocks are often hours or days behind, and a PLC refuses a client
// certificate that is not yet valid by its clock (BadCertificateTimeInvalid).
const backdate = 7 * 24 * time.Hour

// DefaultDays is the validity of a generated certificate.
const DefaultDays = 2 * 365

// ApplicationURIFor returns the ApplicationURI Generate puts in a certificate.
func ApplicationURIFor(hostname, agentID string) string {
	return "urn:" + hostname + ":tagbridge:" + agentID
}

// Generate creates a self-signed OPC UA application instance certificate and
// its key, both PEM (the key as PKCS#1, which every OPC UA stack reads): SHA-256
// with RSA, URI SAN urn:<hostname>:tagbridge:<agent id>, DNS SAN of the host
// name, key usage digitalSignature, nonRepudiation, keyEncipherment,
// dataEncipherment, and extended key usage clientAuth and serverAuth.
func Generate(o Options) (certPEM, keyPEM []byte, err error) {
	if o.AgentID == "" {
		return nil, nil, errors.New("agent id required")
	}
	if o.Hostname == "" {
		return nil, nil, errors.New("host name required")
	}
	switch o.KeySize {
	case 0:
		o.KeySize = 2048
	case 2048, 3072, 4096:
	default:
		return nil, nil, fmt.Errorf("key size %d not supported (2048, 3072 or 4096)", o.KeySize)
	}
	if o.Days == 0 {
		o.Days = DefaultDays
	}
	if o.Days < 0 {
		return nil, nil, fmt.Errorf("days must be positive, got %d", o.Days)
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	uri, err := url.Parse(ApplicationURIFor(o.Hostname, o.AgentID))
	if err != nil {
		return nil, nil, fmt.Errorf("application URI: %w", err)
	}
	key, err := rsa.GenerateKey(rand.Reader, o.KeySize)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:   "tagbridge " + o.AgentID,
			Organization: []string{"tagbridge"},
		},
		NotBefore:             o.Now.Add(-backdate), // a PLC whose clock is behind must not see it as not yet valid
		NotAfter:              o.Now.AddDate(0, 0, o.Days),
		SignatureAlgorithm:    x509.SHA256WithRSA,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment | x509.KeyUsageKeyEncipherment | x509.KeyUsageDataEncipherment | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{uri},
	}
	if ip := net.ParseIP(o.Hostname); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{o.Hostname}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create certificate: %w", err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	return certPEM, keyPEM, nil
}

// WriteFileAtomic writes data to a temporary file in name's directory with
// mode perm, syncs it and renames it over name, so a reader never sees half a
// file and a key is never briefly readable by others. Without overwrite an
// existing name is refused with an error wrapping fs.ErrExist.
func WriteFileAtomic(name string, data []byte, perm os.FileMode, overwrite bool) error {
	if !overwrite {
		if _, err := os.Lstat(name); err == nil {
			return fmt.Errorf("%s: %w", name, os.ErrExist)
		}
	}
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if !overwrite {
		// Link fails if name appeared meanwhile; rename would replace it.
		if err := os.Link(tmp, name); err != nil {
			return err
		}
		return nil
	}
	return os.Rename(tmp, name)
}
