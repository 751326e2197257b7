package opcua

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/gopcua/opcua/ua"
	"github.com/gopcua/opcua/uacp"
	"github.com/gopcua/opcua/uapolicy"
	"github.com/gopcua/opcua/uasc"
)

// ErrSessionCertificate reports a CreateSession answer that does not come
// from the certificate the secure channel was opened with.
var ErrSessionCertificate = errors.New("CreateSession certificate check failed")

// checkCreateSession opens a probe channel to the endpoint and creates a
// session on it, to check what gopcua does not: that the certificate in the
// CreateSession response is the one the channel was opened with, and that
// the server's signature over our certificate and nonce verifies (gopcua
// only logs a bad one). The probe session is closed again.
func (s *Session) checkCreateSession(ctx context.Context, ep *ua.EndpointDescription, clientDER []byte, key *rsa.PrivateKey, appURI string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*dialTimeout)
	defer cancel()
	conn, err := uacp.Dial(ctx, s.plc.Endpoint)
	if err != nil {
		return fmt.Errorf("session check: %w", err)
	}
	defer conn.Close()
	sc, err := uasc.NewSecureChannel(s.plc.Endpoint, conn, &uasc.Config{
		SecurityPolicyURI: ep.SecurityPolicyURI,
		SecurityMode:      ep.SecurityMode,
		Certificate:       clientDER,
		LocalKey:          key,
		RemoteCertificate: ep.ServerCertificate,
		Thumbprint:        uapolicy.Thumbprint(ep.ServerCertificate),
		Lifetime:          uint32(time.Minute / time.Millisecond),
		RequestTimeout:    dialTimeout,
	}, make(chan error, 1))
	if err != nil {
		return fmt.Errorf("session check: %w", err)
	}
	if err := sc.Open(ctx); err != nil {
		return fmt.Errorf("session check: open secure channel: %w", err)
	}
	defer sc.Close()

	nonce := make([]byte, 32)
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	var res *ua.CreateSessionResponse
	err = sc.SendRequest(ctx, &ua.CreateSessionRequest{
		ClientDescription: &ua.ApplicationDescription{
			ApplicationURI:  appURI,
			ApplicationName: ua.NewLocalizedText("tagbridge"),
			ApplicationType: ua.ApplicationTypeClient,
		},
		EndpointURL:             s.plc.Endpoint,
		SessionName:             "tagbridge certificate check",
		ClientNonce:             nonce,
		ClientCertificate:       clientDER,
		RequestedSessionTimeout: float64(time.Minute / time.Millisecond),
	}, nil, func(v ua.Response) error {
		r, ok := v.(*ua.CreateSessionResponse)
		if !ok {
			return fmt.Errorf("unexpected %T", v)
		}
		res = r
		return nil
	})
	if err != nil {
		return fmt.Errorf("session check: create session: %w", err)
	}
	defer sc.SendRequest(ctx, &ua.CloseSessionRequest{DeleteSubscriptions: true}, res.AuthenticationToken, func(ua.Response) error { return nil })

	if !sameLeaf(res.ServerCertificate, ep.ServerCertificate) {
		return fmt.Errorf("%w: the server answered CreateSession with another certificate than its endpoint's", ErrSessionCertificate)
	}
	var sig []byte
	if res.ServerSignature != nil {
		sig = res.ServerSignature.Signature
	}
	if err := sc.VerifySessionSignature(res.ServerCertificate, nonce, sig); err != nil {
		return fmt.Errorf("%w: the server's CreateSession signature does not verify: %v", ErrSessionCertificate, err)
	}
	return nil
}

// sameLeaf compares the first certificates of two DER blobs, either of which
// may carry its issuer chain behind it.
func sameLeaf(a, b []byte) bool {
	ca, errA := x509.ParseCertificates(a)
	cb, errB := x509.ParseCertificates(b)
	if errA != nil || errB != nil || len(ca) == 0 || len(cb) == 0 {
		return bytes.Equal(a, b)
	}
	return bytes.Equal(ca[0].Raw, cb[0].Raw)
}
