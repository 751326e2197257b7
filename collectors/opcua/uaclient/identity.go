package uaclient

import (
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/tagbridge/tagbridge/collectors/opcua/secpolicy"
	"github.com/tagbridge/tagbridge/internal/x509ecc"
)

// Identity is the user a session is activated for: Anonymous, UserName or
// X509.
type Identity interface{ isIdentity() }

// Anonymous is no user.
type Anonymous struct{}

// UserName is a user name and password. The password is encrypted for the
// server as its user token policy asks; it goes out in plaintext only when
// that policy is None and AllowPlaintext is set.
type UserName struct {
	User           string
	Password       []byte
	AllowPlaintext bool
}

// X509 is a user certificate and its key; the key signs the server's
// certificate and nonce to prove the user holds it.
type X509 struct{ KeyPair secpolicy.KeyPair }

func (Anonymous) isIdentity() {}
func (UserName) isIdentity()  {}
func (X509) isIdentity()      {}

// identityToken is what ActivateSession carries for the user.
type identityToken struct {
	token     *ua.ExtensionObject
	signature *ua.SignatureData // of an X.509 user token; empty otherwise
}

// tokenProof is what a user token is bound to: the server's certificate and
// the nonce of its last CreateSession or ActivateSession response.
type tokenProof struct {
	serverCert  []byte // DER; the leaf is used
	serverNonce []byte
	// serverEphemeral is the server's ephemeral key a password is
	// encrypted to under the ECC policies, with the client's key pair,
	// which signs that secret.
	serverEphemeral []byte
	client          *secpolicy.KeyPair
	// boundUserData is what an X.509 user token signs when the channel's
	// and the token's policies bind signatures to the channel.
	boundUserData []byte
}

// buildIdentityToken makes the token for id with the endpoint's user token
// policy of the matching type: servers such as open62541 refuse a token
// whose PolicyId is not one the endpoint offers, even an anonymous one.
// channelPolicy is the secure channel's, used when the token policy names
// none.
func buildIdentityToken(id Identity, ep *ua.EndpointDescription, channelPolicy secpolicy.Policy, proof tokenProof) (identityToken, error) {
	if id == nil {
		id = Anonymous{}
	}
	switch id := id.(type) {
	case Anonymous:
		utp, err := tokenPolicy(ep, ua.UserTokenTypeAnonymous)
		if err != nil {
			return identityToken{}, err
		}
		return identityToken{
			token:     ua.NewExtensionObject(&ua.AnonymousIdentityToken{PolicyID: utp.PolicyID}),
			signature: &ua.SignatureData{},
		}, nil

	case UserName:
		utp, err := tokenPolicy(ep, ua.UserTokenTypeUserName)
		if err != nil {
			return identityToken{}, err
		}
		policy, err := tokenSecurityPolicy(utp, ep, channelPolicy)
		if err != nil {
			return identityToken{}, err
		}
		tok := &ua.UserNameIdentityToken{PolicyID: utp.PolicyID, UserName: id.User}
		if policy.URI() == ua.SecurityPolicyURINone {
			if !id.AllowPlaintext {
				return identityToken{}, fmt.Errorf("user token policy %q would send the password in plaintext (security policy None): refused, plaintext passwords are not allowed", utp.PolicyID)
			}
			tok.Password = id.Password
		} else if enc, ok := policy.(secpolicy.EphemeralKeyEncrypter); ok {
			if len(proof.serverEphemeral) == 0 {
				return identityToken{}, fmt.Errorf("encrypt password with %s for user token policy %q: the server sent no ephemeral key", policy.Name(), utp.PolicyID)
			}
			// The algorithm stays empty: the secret names its policy, and
			// open62541 refuses any other URI there.
			ct, err := enc.EncryptToEphemeralKey(proof.client, proof.serverEphemeral, id.Password, proof.serverNonce, time.Now())
			if err != nil {
				return identityToken{}, fmt.Errorf("encrypt password with %s for user token policy %q: %w", policy.Name(), utp.PolicyID, err)
			}
			tok.Password = ct
		} else {
			cert, err := leafCertificate(proof.serverCert)
			if err != nil {
				return identityToken{}, fmt.Errorf("encrypt password for user token policy %q: server certificate: %w", utp.PolicyID, err)
			}
			// The secret and nonce never go into an error: only the policy.
			ct, alg, err := policy.EncryptSecret(cert, id.Password, proof.serverNonce)
			if err != nil {
				return identityToken{}, fmt.Errorf("encrypt password with %s for user token policy %q: %w", policy.Name(), utp.PolicyID, err)
			}
			tok.Password, tok.EncryptionAlgorithm = ct, alg
		}
		return identityToken{token: ua.NewExtensionObject(tok), signature: &ua.SignatureData{}}, nil

	case X509:
		utp, err := tokenPolicy(ep, ua.UserTokenTypeCertificate)
		if err != nil {
			return identityToken{}, err
		}
		policy, err := tokenSecurityPolicy(utp, ep, channelPolicy)
		if err != nil {
			return identityToken{}, err
		}
		sig := &ua.SignatureData{}
		if policy.URI() != ua.SecurityPolicyURINone {
			// Say it here: a server only answers BadIdentityTokenInvalid.
			userCert, err := leafCertificate(id.KeyPair.Certificate)
			if err != nil {
				return identityToken{}, fmt.Errorf("user certificate: %w", err)
			}
			if err := policy.CheckKey(userCert.PublicKey); err != nil {
				return identityToken{}, fmt.Errorf("user certificate for user token policy %q: %w", utp.PolicyID, err)
			}
			leaf, err := leafDER(proof.serverCert)
			if err != nil {
				return identityToken{}, fmt.Errorf("sign user certificate token: server certificate: %w", err)
			}
			data := concat(leaf, proof.serverNonce)
			if secpolicy.ChannelBound(policy) && proof.boundUserData != nil {
				data = proof.boundUserData
			}
			s, err := policy.Sign(id.KeyPair.Key, data)
			if err != nil {
				return identityToken{}, fmt.Errorf("sign user certificate token with %s: %w", policy.Name(), err)
			}
			sig = &ua.SignatureData{Algorithm: policy.SignatureAlgorithm(), Signature: s}
		}
		return identityToken{
			token:     ua.NewExtensionObject(&ua.X509IdentityToken{PolicyID: utp.PolicyID, CertificateData: id.KeyPair.Certificate}),
			signature: sig,
		}, nil
	}
	return identityToken{}, fmt.Errorf("identity %T not supported", id)
}

// tokenPolicy finds the endpoint's user token policy of type kind. Among
// several (node-opcua offers a UserName policy per security policy on its
// None endpoint) it takes the best protected one this client implements.
func tokenPolicy(ep *ua.EndpointDescription, kind ua.UserTokenType) (*ua.UserTokenPolicy, error) {
	var best *ua.UserTokenPolicy
	bestRank := -1
	var offered []string
	for _, p := range ep.UserIdentityTokens {
		if p == nil {
			continue
		}
		offered = append(offered, tokenTypeName(p.TokenType))
		if p.TokenType != kind {
			continue
		}
		if r := tokenPolicyRank(p, ep); r > bestRank {
			best, bestRank = p, r
		}
	}
	if best != nil {
		return best, nil
	}
	if len(offered) == 0 {
		offered = []string{"none"}
	}
	return nil, fmt.Errorf("endpoint %s offers no %s user token (offers %s)", endpointName(ep), tokenTypeName(kind), strings.Join(offered, ", "))
}

// tokenPolicyRank orders user token policies of one type: a current
// security policy, then a deprecated one, then None (a plaintext secret),
// then one this client does not implement.
func tokenPolicyRank(p *ua.UserTokenPolicy, ep *ua.EndpointDescription) int {
	uri := p.SecurityPolicyURI
	if uri == "" {
		uri = ep.SecurityPolicyURI
	}
	policy, err := secpolicy.ByURI(uri)
	switch {
	case err != nil:
		return 0
	case policy.URI() == ua.SecurityPolicyURINone:
		return 1
	case policy.Deprecated():
		return 2
	}
	return 3
}

// tokenSecurityPolicy is the policy that protects a user token: the token
// policy's own, else the endpoint's, else the channel's.
func tokenSecurityPolicy(utp *ua.UserTokenPolicy, ep *ua.EndpointDescription, channelPolicy secpolicy.Policy) (secpolicy.Policy, error) {
	uri := utp.SecurityPolicyURI
	if uri == "" {
		uri = ep.SecurityPolicyURI
	}
	if uri == "" || (channelPolicy != nil && uri == channelPolicy.URI()) {
		if channelPolicy == nil {
			return nil, errors.New("no security policy for the user token")
		}
		return channelPolicy, nil
	}
	p, err := secpolicy.ByURI(uri)
	if err != nil {
		return nil, fmt.Errorf("user token policy %q: %w", utp.PolicyID, err)
	}
	return p, nil
}

func tokenTypeName(t ua.UserTokenType) string {
	switch t {
	case ua.UserTokenTypeAnonymous:
		return "Anonymous"
	case ua.UserTokenTypeUserName:
		return "UserName"
	case ua.UserTokenTypeCertificate:
		return "Certificate"
	case ua.UserTokenTypeIssuedToken:
		return "IssuedToken"
	}
	return fmt.Sprintf("UserTokenType(%d)", uint32(t))
}

// leafCertificate parses the first certificate of der, which may be followed
// by its chain; brainpool and Ed448 keys included.
func leafCertificate(der []byte) (*x509.Certificate, error) {
	leaf, err := leafDER(der)
	if err != nil {
		return nil, err
	}
	return x509ecc.ParseCertificate(leaf)
}

func concat(a, b []byte) []byte {
	out := make([]byte, 0, len(a)+len(b))
	return append(append(out, a...), b...)
}
