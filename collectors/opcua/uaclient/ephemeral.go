package uaclient

import (
	"errors"
	"fmt"

	"github.com/gopcua/opcua/ua"

	"github.com/tagbridge/tagbridge/collectors/opcua/secpolicy"
)

// Under the ECC policies a password is encrypted to an ephemeral key of the
// server (EccEncryptedSecret), which the client asks for in the additional
// header of CreateSession and ActivateSession (Part 4 7.41.2.3, Part 6
// 6.8.2): "ECDHPolicyUri" names the policy; the response carries "ECDHKey",
// an EphemeralKeyType signed with the server's application key. Each
// response brings a new key for the next ActivateSession.

const (
	keyECDHPolicyURI = "ECDHPolicyUri"
	keyECDHKey       = "ECDHKey"
)

// ephemeralKeyPolicy is the security policy a password of id will be
// encrypted with on ep when that policy needs the server's ephemeral key;
// nil when it does not (other identities, RSA, None).
func ephemeralKeyPolicy(id Identity, ep *ua.EndpointDescription, channelPolicy secpolicy.Policy) secpolicy.Policy {
	if _, ok := id.(UserName); !ok || ep == nil {
		return nil
	}
	utp, err := tokenPolicy(ep, ua.UserTokenTypeUserName)
	if err != nil {
		return nil
	}
	p, err := tokenSecurityPolicy(utp, ep, channelPolicy)
	if err != nil {
		return nil
	}
	if _, ok := p.(secpolicy.EphemeralKeyEncrypter); !ok {
		return nil
	}
	return p
}

// ephemeralKeyRequest is a request header asking for the server's
// ephemeral key of policy p.
func ephemeralKeyRequest(p secpolicy.Policy) *ua.RequestHeader {
	return &ua.RequestHeader{AdditionalHeader: ua.NewExtensionObject(&ua.AdditionalParametersType{
		Parameters: []*ua.KeyValuePair{{
			Key:   &ua.QualifiedName{NamespaceIndex: 0, Name: keyECDHPolicyURI},
			Value: ua.MustVariant(p.URI()),
		}},
	})}
}

// serverEphemeralKey takes the server's ephemeral key from a response
// header and checks its signature with the server certificate serverCert
// under p. A response without one is an error: the password cannot be
// encrypted without it.
func serverEphemeralKey(h *ua.ResponseHeader, p secpolicy.Policy, serverCert []byte) ([]byte, error) {
	if h == nil || h.AdditionalHeader == nil {
		return nil, errors.New("the server sent no ephemeral key (ECDHKey) for the password")
	}
	params, ok := h.AdditionalHeader.Value.(*ua.AdditionalParametersType)
	if !ok {
		return nil, errors.New("the server sent no ephemeral key (ECDHKey) for the password")
	}
	for _, kv := range params.Parameters {
		if kv == nil || kv.Key == nil || kv.Key.NamespaceIndex != 0 || kv.Key.Name != keyECDHKey || kv.Value == nil {
			continue
		}
		var key *ua.EphemeralKeyType
		switch v := kv.Value.Value().(type) {
		case *ua.ExtensionObject:
			key, _ = v.Value.(*ua.EphemeralKeyType)
		case *ua.EphemeralKeyType:
			key = v
		}
		if key == nil {
			return nil, fmt.Errorf("the server's %s is a %T, not an EphemeralKeyType", keyECDHKey, kv.Value.Value())
		}
		cert, err := leafCertificate(serverCert)
		if err != nil {
			return nil, fmt.Errorf("check the server's ephemeral key: server certificate: %w", err)
		}
		if err := p.Verify(cert, key.PublicKey, key.Signature); err != nil {
			return nil, fmt.Errorf("the server's ephemeral key: %w", err)
		}
		return key.PublicKey, nil
	}
	return nil, errors.New("the server sent no ephemeral key (ECDHKey) for the password")
}
