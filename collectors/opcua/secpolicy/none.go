package secpolicy

import (
	"crypto"
	"crypto/x509"

	"github.com/gopcua/opcua/ua"
)

// None is the policy without security: chunks pass as they are, nothing is
// signed, a secret is not encrypted.
var None Policy = nonePolicy{}

type nonePolicy struct{}

func (nonePolicy) URI() string                                    { return uriPrefix + "None" }
func (nonePolicy) Name() string                                   { return "None" }
func (nonePolicy) Deprecated() bool                               { return false }
func (nonePolicy) NonceLength() int                               { return 0 }
func (nonePolicy) CheckKey(crypto.PublicKey) error                { return nil }
func (nonePolicy) SignatureAlgorithm() string                     { return "" }
func (nonePolicy) NewExchange() (Exchange, error)                 { return noneExchange{}, nil }
func (nonePolicy) Sign(crypto.PrivateKey, []byte) ([]byte, error) { return nil, nil }
func (nonePolicy) Verify(*x509.Certificate, []byte, []byte) error { return nil }

func (nonePolicy) Asymmetric(ua.MessageSecurityMode, *KeyPair, []byte) (ChunkCrypto, error) {
	return passThrough{}, nil
}

// EncryptSecret returns the secret as it is, with no algorithm: whether it
// may travel so is the caller's decision.
func (nonePolicy) EncryptSecret(_ *x509.Certificate, secret, _ []byte) ([]byte, string, error) {
	return secret, "", nil
}

type noneExchange struct{}

func (noneExchange) Nonce() []byte { return nil }

func (noneExchange) Symmetric(ua.MessageSecurityMode, []byte) (ChunkCrypto, error) {
	return passThrough{}, nil
}
