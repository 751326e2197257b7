package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
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
	"strings"
	"time"
)

// Options describe an application instance certificate for Generate.
type Options struct {
	AgentID  string    // required; part of the ApplicationURI
	Hostname string    // required; DNS SAN and part of the ApplicationURI
	Days     int       // validity; 0 means DefaultDays
	KeySize  int       // RSA: 2048, 3072 or 4096; 0 means 2048
	Now      time.Time // start of validity; zero means now
	// KeyType is rsa (the default when empty), nistP256, nistP384 or
	// ed25519: the ECC types go with the security policy of their curve
	// (ECC_nistP256, ECC_nistP384, ECC_curve25519).
	KeyType string
}

// Key types of Options.KeyType.
const (
	KeyTypeRSA      = "rsa"
	KeyTypeNistP256 = "nistP256"
	KeyTypeNistP384 = "nistP384"
	KeyTypeEd25519  = "ed25519"
)

// KeyTypes are the key types Generate makes, in the order help texts list
// them.
var KeyTypes = []string{KeyTypeRSA, KeyTypeNistP256, KeyTypeNistP384, KeyTypeEd25519}

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
// its key, both PEM (an RSA key as PKCS#1, an ECC key as SEC 1, which every
// OPC UA stack reads): URI SAN urn:<hostname>:tagbridge:<agent id>, DNS SAN
// of the host name, extended key usage clientAuth and serverAuth. RSA:
// SHA-256 with RSA, key usage digitalSignature, nonRepudiation,
// keyEncipherment, dataEncipherment. ECC: ECDSA with SHA-256 (P-256) or
// SHA-384 (P-384), or Ed25519, key usage digitalSignature, nonRepudiation,
// keyAgreement.
func Generate(o Options) (certPEM, keyPEM []byte, err error) {
	if o.AgentID == "" {
		return nil, nil, errors.New("agent id required")
	}
	if o.Hostname == "" {
		return nil, nil, errors.New("host name required")
	}
	if o.KeyType == "" {
		o.KeyType = KeyTypeRSA
	}
	var curve elliptic.Curve
	edwards := o.KeyType == KeyTypeEd25519
	switch o.KeyType {
	case KeyTypeRSA, KeyTypeEd25519:
	case KeyTypeNistP256:
		curve = elliptic.P256()
	case KeyTypeNistP384:
		curve = elliptic.P384()
	default:
		return nil, nil, fmt.Errorf("key type %q not supported (%s)", o.KeyType, strings.Join(KeyTypes, ", "))
	}
	switch {
	case (curve != nil || edwards) && o.KeySize != 0:
		return nil, nil, fmt.Errorf("key size applies to RSA keys, not to key type %s", o.KeyType)
	case curve != nil || edwards:
	case o.KeySize == 0:
		o.KeySize = 2048
	case o.KeySize == 2048, o.KeySize == 3072, o.KeySize == 4096:
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
	key, keyBlock, err := generateKey(o.KeySize, curve, edwards)
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
	if curve != nil || edwards {
		// An ECC key signs and agrees keys (ECDH), it does not encipher;
		// the digest matches the curve, as OPC UA's ECC policies hash.
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment | x509.KeyUsageKeyAgreement | x509.KeyUsageCertSign
		switch {
		case edwards:
			tmpl.SignatureAlgorithm = x509.PureEd25519
		case curve == elliptic.P384():
			tmpl.SignatureAlgorithm = x509.ECDSAWithSHA384
		default:
			tmpl.SignatureAlgorithm = x509.ECDSAWithSHA256
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("create certificate: %w", err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(keyBlock)
	return certPEM, keyPEM, nil
}

// generateKey makes an RSA key of bits, an ECDSA key on curve when it is
// not nil, or an Ed25519 key, with its PEM block: PKCS#1 (RSA PRIVATE
// KEY), SEC 1 (EC PRIVATE KEY) or PKCS#8 (Ed25519), the forms OPC UA
// stacks read.
func generateKey(bits int, curve elliptic.Curve, edwards bool) (crypto.Signer, *pem.Block, error) {
	if edwards {
		_, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, nil, err
		}
		return key, &pem.Block{Type: "PRIVATE KEY", Bytes: der}, nil
	}
	if curve == nil {
		key, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			return nil, nil, err
		}
		return key, &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}, nil
	}
	key, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return key, &pem.Block{Type: "EC PRIVATE KEY", Bytes: der}, nil
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
