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
	"slices"
	"strings"
	"time"

	"github.com/cloudflare/circl/sign/ed448"

	"github.com/tagbridge/tagbridge/internal/brainpool"
	"github.com/tagbridge/tagbridge/internal/x509ecc"
)

// Options describe an application instance certificate for Generate.
type Options struct {
	AgentID  string    // required; part of the ApplicationURI
	Hostname string    // required; DNS SAN and part of the ApplicationURI
	Days     int       // validity; 0 means DefaultDays
	KeySize  int       // RSA: 2048, 3072 or 4096; 0 means 2048
	Now      time.Time // start of validity; zero means now
	// KeyType is rsa (the default when empty), nistP256, nistP384,
	// brainpoolP256r1, brainpoolP384r1, ed25519 or ed448: the ECC types go
	// with the security policy of their curve (ECC_nistP256, ...,
	// ECC_curve25519, ECC_curve448).
	KeyType string
}

// Key types of Options.KeyType.
const (
	KeyTypeRSA      = "rsa"
	KeyTypeNistP256 = "nistP256"
	KeyTypeNistP384 = "nistP384"
	KeyTypeEd25519  = "ed25519"
	// brainpool and Ed448 certificates are made and read by
	// internal/x509ecc: crypto/x509 has neither.
	KeyTypeBrainpoolP256r1 = "brainpoolP256r1"
	KeyTypeBrainpoolP384r1 = "brainpoolP384r1"
	KeyTypeEd448           = "ed448"
)

// KeyTypes are the key types Generate makes, in the order help texts list
// them.
var KeyTypes = []string{KeyTypeRSA, KeyTypeNistP256, KeyTypeNistP384, KeyTypeBrainpoolP256r1, KeyTypeBrainpoolP384r1, KeyTypeEd25519, KeyTypeEd448}

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
// SHA-384 (P-384), the same on the brainpool curves, or Ed25519 or Ed448,
// key usage digitalSignature, nonRepudiation, keyAgreement.
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
	if !slices.Contains(KeyTypes, o.KeyType) {
		return nil, nil, fmt.Errorf("key type %q not supported (%s)", o.KeyType, strings.Join(KeyTypes, ", "))
	}
	ecc := o.KeyType != KeyTypeRSA
	switch {
	case ecc && o.KeySize != 0:
		return nil, nil, fmt.Errorf("key size applies to RSA keys, not to key type %s", o.KeyType)
	case ecc:
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
	key, keyBlock, err := generateKey(o.KeyType, o.KeySize)
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
	if ecc {
		// An ECC key signs and agrees keys (ECDH), it does not encipher;
		// the digest matches the curve, as OPC UA's ECC policies hash
		// (x509ecc picks it for the brainpool curves).
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment | x509.KeyUsageKeyAgreement | x509.KeyUsageCertSign
		switch o.KeyType {
		case KeyTypeEd25519:
			tmpl.SignatureAlgorithm = x509.PureEd25519
		case KeyTypeNistP384:
			tmpl.SignatureAlgorithm = x509.ECDSAWithSHA384
		default:
			tmpl.SignatureAlgorithm = x509.ECDSAWithSHA256
		}
	}
	var der []byte
	switch key.(type) {
	case *brainpool.PrivateKey, ed448.PrivateKey:
		der, err = x509ecc.CreateSelfSigned(tmpl, key)
	default:
		der, err = x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("create certificate: %w", err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(keyBlock)
	return certPEM, keyPEM, nil
}

// generateKey makes a key of keyType (an RSA key of bits) with its PEM
// block: PKCS#1 (RSA PRIVATE KEY), SEC 1 (EC PRIVATE KEY, NIST and
// brainpool curves) or PKCS#8 (Ed25519, Ed448), the forms OPC UA stacks
// read.
func generateKey(keyType string, bits int) (crypto.Signer, *pem.Block, error) {
	var key crypto.Signer
	var err error
	switch keyType {
	case KeyTypeRSA:
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			return nil, nil, err
		}
		return k, &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}, nil
	case KeyTypeNistP256, KeyTypeNistP384:
		curve := elliptic.P256()
		if keyType == KeyTypeNistP384 {
			curve = elliptic.P384()
		}
		k, err := ecdsa.GenerateKey(curve, rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			return nil, nil, err
		}
		return k, &pem.Block{Type: "EC PRIVATE KEY", Bytes: der}, nil
	case KeyTypeEd25519:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return nil, nil, err
		}
		return k, &pem.Block{Type: "PRIVATE KEY", Bytes: der}, nil
	case KeyTypeBrainpoolP256r1:
		key, err = brainpool.P256r1().GenerateKey(rand.Reader)
	case KeyTypeBrainpoolP384r1:
		key, err = brainpool.P384r1().GenerateKey(rand.Reader)
	case KeyTypeEd448:
		_, key, err = ed448.GenerateKey(rand.Reader)
	default:
		return nil, nil, fmt.Errorf("key type %q not supported", keyType)
	}
	if err != nil {
		return nil, nil, err
	}
	typ, der, err := x509ecc.MarshalPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return key, &pem.Block{Type: typ, Bytes: der}, nil
}

// WriteFileAtomic writes data to a temporary file in name's directory with
// mode perm, syncs it and renames it over name, so a reader never sees half a
// file and a key is never briefly readable by others. Without overwrite an
// existing name is refused with an error wrapping fs.ErrExist. Run as root
// into a directory of another user, the file takes that user's ownership.
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
	if err := ownLikeDir(f, filepath.Dir(name)); err != nil {
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
