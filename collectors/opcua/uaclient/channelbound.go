package uaclient

import (
	"errors"
	"fmt"

	"github.com/tagbridge/tagbridge/collectors/opcua/secpolicy"
	"github.com/tagbridge/tagbridge/collectors/opcua/uasc"
)

// Under the policies with the secure channel enhancements of 1.05.07
// (secpolicy.ChannelBound: ECC_nistP256_AesGcm, _ChaChaPoly) session
// signatures are bound to the channel: each signs the channel thumbprint,
// a nonce, hashes of certificates and the other nonce:
//
//	CreateSession, server:   clientNonce, H(server), H(client), serverNonce
//	ActivateSession, client: serverNonce, H(server app), H(server channel), H(client channel), clientNonce
//	X.509 user token:        serverNonce, H(server app), H(server channel), H(client app), H(client channel), clientNonce
//
// where an application's certificate is its channel certificate here.

// boundData assembles a channel-bound signature's data.
func boundData(ch *uasc.Channel, first []byte, certs [][]byte, last []byte) ([]byte, error) {
	tp := ch.Thumbprint()
	if len(tp) == 0 {
		return nil, errors.New("the secure channel has no thumbprint to bind the signature to")
	}
	out := concat(tp, first)
	for _, c := range certs {
		h, err := secpolicy.CertificateHash(ch.Policy(), c)
		if err != nil {
			return nil, fmt.Errorf("certificate hash: %w", err)
		}
		out = append(out, h...)
	}
	return append(out, last...), nil
}
