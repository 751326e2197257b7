package secpolicy

import (
	"bytes"
	"crypto/rand"
	"crypto/sha1"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/tagbridge/tagbridge/scripts/opcua-peer/peerproc"
	"github.com/tagbridge/tagbridge/scripts/open62541/o62proc"
)

// The interop tests open a secure channel with a real server using only
// this package's crypto and a few lines of UA-TCP framing, then send
// GetEndpoints under the derived keys: the server must accept our OPN and
// MSG chunks, and we must read its OPN and MSG chunks back. They check the
// policies against open62541 and node-opcua before the secure channel
// package exists; the channel's own tests cover the protocol.

// wireConn is the least of UA-TCP and UA-SC needed for one request.
type wireConn struct {
	t    *testing.T
	conn net.Conn
	seq  uint32
}

func le32(b []byte, v uint32) []byte { return binary.LittleEndian.AppendUint32(b, v) }

func uaBytes(b, s []byte) []byte {
	if s == nil {
		return le32(b, 0xFFFFFFFF)
	}
	return append(le32(b, uint32(len(s))), s...)
}

func dialWire(t *testing.T, endpoint string) *wireConn {
	t.Helper()
	u, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	w := &wireConn{t: t, conn: conn}
	hel := []byte("HELF\x00\x00\x00\x00")
	for _, v := range []uint32{0, 8192, 65536, 0, 0} { // small receive buffer: responses come in several chunks
		hel = le32(hel, v)
	}
	hel = uaBytes(hel, []byte(endpoint))
	binary.LittleEndian.PutUint32(hel[4:8], uint32(len(hel)))
	w.write(hel)
	if ack := w.read(); string(ack[:3]) != "ACK" {
		t.Fatalf("HEL answered with %q", ack[:3])
	}
	return w
}

func (w *wireConn) write(b []byte) {
	w.t.Helper()
	if _, err := w.conn.Write(b); err != nil {
		w.t.Fatal(err)
	}
}

func (w *wireConn) read() []byte {
	w.t.Helper()
	hdr := make([]byte, 8)
	if _, err := io.ReadFull(w.conn, hdr); err != nil {
		w.t.Fatalf("read chunk: %v", err)
	}
	size := binary.LittleEndian.Uint32(hdr[4:8])
	if size < 8 || size > 1<<20 {
		w.t.Fatalf("chunk size %d", size)
	}
	chunk := append(hdr, make([]byte, size-8)...)
	if _, err := io.ReadFull(w.conn, chunk[8:]); err != nil {
		w.t.Fatalf("read chunk: %v", err)
	}
	if string(chunk[:3]) == "ERR" && len(chunk) >= 12 {
		w.t.Fatalf("server error 0x%08X: %q", binary.LittleEndian.Uint32(chunk[8:12]), chunk[12:])
	}
	return chunk
}

// message is a sequence header and an encoded service request.
func (w *wireConn) message(req ua.Request) []byte {
	w.t.Helper()
	w.seq++
	body := le32(le32(nil, w.seq), w.seq)
	typeID, err := ua.NewFourByteNodeID(0, ua.ServiceTypeID(req)).Encode()
	if err != nil {
		w.t.Fatal(err)
	}
	enc, err := ua.Encode(req)
	if err != nil {
		w.t.Fatal(err)
	}
	return append(append(body, typeID...), enc...)
}

func requestHeader() *ua.RequestHeader { return sessionHeader(ua.NewTwoByteNodeID(0)) }

func sessionHeader(authToken *ua.NodeID) *ua.RequestHeader {
	return &ua.RequestHeader{AuthenticationToken: authToken, Timestamp: time.Now(), RequestHandle: 1, TimeoutHint: 10000}
}

// decodeBody decodes the service after a body's sequence header.
func decodeBody(t *testing.T, body []byte) any {
	t.Helper()
	_, svc, err := ua.DecodeService(body[sequenceHeaderLen:])
	if err != nil {
		t.Fatalf("decode response: %v", err)
	}
	return svc
}

// secureChannel is an open channel: id, token, and the token's crypto.
type secureChannel struct {
	*wireConn
	id, token uint32
	crypto    ChunkCrypto
	lastSeq   uint32 // the server's, which AEAD chunks are bound to
}

// openChannel sends OPN (Issue) secured with p and mode and reads the
// response back through the same package.
func openChannel(t *testing.T, endpoint string, p Policy, mode ua.MessageSecurityMode, local *KeyPair, serverCert []byte) *secureChannel {
	t.Helper()
	w := dialWire(t, endpoint)
	asym, err := p.Asymmetric(mode, local, serverCert)
	if err != nil {
		t.Fatal(err)
	}
	ex, err := p.NewExchange()
	if err != nil {
		t.Fatal(err)
	}
	hdr := le32([]byte("OPNF\x00\x00\x00\x00"), 0)
	hdr = uaBytes(hdr, []byte(p.URI()))
	if p == None {
		hdr = uaBytes(uaBytes(hdr, nil), nil)
	} else {
		leaf, err := leafCertificate(serverCert)
		if err != nil {
			t.Fatal(err)
		}
		thumb := sha1.Sum(leaf.Raw)
		hdr = uaBytes(uaBytes(hdr, local.Certificate), thumb[:])
	}
	body := w.message(&ua.OpenSecureChannelRequest{
		RequestHeader:     requestHeader(),
		RequestType:       ua.SecurityTokenRequestTypeIssue,
		SecurityMode:      mode,
		ClientNonce:       ex.Nonce(),
		RequestedLifetime: 60000,
	})
	if max := asym.MaxBody(8192, len(hdr)); len(body) > max {
		t.Fatalf("OPN body of %d bytes, MaxBody %d", len(body), max)
	}
	sealed, err := asym.Seal(append(hdr, body...), len(hdr))
	if err != nil {
		t.Fatal(err)
	}
	w.write(sealed)

	resp := w.read()
	if string(resp[:4]) != "OPNF" {
		t.Fatalf("OPN answered with %q", resp[:4])
	}
	// Skip channel id, policy URI, sender certificate, thumbprint.
	pos := 12
	for range 3 {
		if pos+4 > len(resp) {
			t.Fatal("short OPN response header")
		}
		n := int(int32(binary.LittleEndian.Uint32(resp[pos:])))
		pos += 4 + max(n, 0)
	}
	got, err := asym.Open(resp, pos)
	if err != nil {
		t.Fatalf("open the OPN response: %v", err)
	}
	osc, ok := decodeBody(t, got).(*ua.OpenSecureChannelResponse)
	if !ok {
		t.Fatalf("OPN response is a %T", decodeBody(t, got))
	}
	if len(osc.ServerNonce) < p.NonceLength() {
		t.Fatalf("server nonce of %d bytes", len(osc.ServerNonce))
	}
	t.Logf("%s %v: server nonce of %d bytes", p.Name(), mode, len(osc.ServerNonce))
	sym, err := ex.Symmetric(mode, osc.ServerNonce)
	if err != nil {
		t.Fatal(err)
	}
	return &secureChannel{wireConn: w, id: osc.SecurityToken.ChannelID, token: osc.SecurityToken.TokenID, crypto: sym,
		lastSeq: binary.LittleEndian.Uint32(got)}
}

// call sends one request in one MSG chunk and reads the response, which
// may come in several chunks.
func (c *secureChannel) call(req ua.Request) any {
	c.t.Helper()
	hdr := le32(le32([]byte("MSGF\x00\x00\x00\x00"), c.id), c.token)
	body := c.message(req)
	if max := c.crypto.MaxBody(8192, len(hdr)); len(body) > max {
		c.t.Fatalf("MSG body of %d bytes, MaxBody %d", len(body), max)
	}
	sealed, err := c.crypto.Seal(append(hdr, body...), len(hdr))
	if err != nil {
		c.t.Fatal(err)
	}
	c.write(sealed)
	var msg []byte
	for chunks := 1; ; chunks++ {
		chunk := c.read()
		if string(chunk[:3]) != "MSG" {
			c.t.Fatalf("response chunk %q", chunk[:4])
		}
		var got []byte
		var err error
		if b, ok := c.crypto.(SequenceBound); ok {
			got, err = b.OpenAfter(chunk, 16, c.lastSeq)
		} else {
			got, err = c.crypto.Open(chunk, 16)
		}
		if err == nil {
			c.lastSeq = binary.LittleEndian.Uint32(got)
		}
		if err != nil {
			c.t.Fatalf("open response chunk %d (%d bytes): %v", chunks, len(chunk), err)
		}
		if msg == nil {
			msg = got
		} else {
			msg = append(msg, got[sequenceHeaderLen:]...)
		}
		if chunk[3] == 'F' {
			c.t.Logf("response in %d chunks, %d bytes", chunks, len(msg))
			return decodeBody(c.t, msg)
		}
	}
}

// getEndpoints over a secured channel; the response is tens of kilobytes
// of certificates, so it also crosses the server's chunking.
func (c *secureChannel) getEndpoints(endpoint string) []*ua.EndpointDescription {
	c.t.Helper()
	resp, ok := c.call(&ua.GetEndpointsRequest{RequestHeader: requestHeader(), EndpointURL: endpoint}).(*ua.GetEndpointsResponse)
	if !ok {
		c.t.Fatal("GetEndpoints answered with another service")
	}
	if resp.ResponseHeader.ServiceResult != ua.StatusOK {
		c.t.Fatalf("GetEndpoints: %v", resp.ResponseHeader.ServiceResult)
	}
	return resp.Endpoints
}

func serverCertificate(t *testing.T, endpoint, policyURI string) []byte {
	t.Helper()
	c := openChannel(t, endpoint, None, ua.MessageSecurityModeNone, nil, nil)
	for _, ep := range c.getEndpoints(endpoint) {
		if ep.SecurityPolicyURI == policyURI {
			return ep.ServerCertificate
		}
	}
	t.Fatalf("no endpoint for %s", policyURI)
	return nil
}

func interop(t *testing.T, endpoint string, policies []Policy, clientBits int, user, password string) {
	t.Run("None/username", func(t *testing.T) {
		// The password travels under the user token policy's own policy
		// with the certificate GetEndpoints gave, over a channel without
		// security.
		c := openChannel(t, endpoint, None, ua.MessageSecurityModeNone, nil, nil)
		for _, ep := range c.getEndpoints(endpoint) {
			if ep.SecurityPolicyURI == None.URI() {
				c.session(None, keyPair(t, keyName("client", clientBits)), ep, ua.UserTokenTypeUserName, user, password, ua.StatusOK)
				return
			}
		}
		t.Fatal("no None endpoint")
	})
	for _, p := range policies {
		cert := serverCertificate(t, endpoint, p.URI())
		for _, mode := range []ua.MessageSecurityMode{sign, encrypt} {
			t.Run(fmt.Sprintf("%s/%v/client-%d", p.Name(), mode, clientBits), func(t *testing.T) {
				client := keyPair(t, keyName("client", clientBits))
				c := openChannel(t, endpoint, p, mode, client, cert)
				eps := c.getEndpoints(endpoint)
				if len(eps) == 0 {
					t.Fatal("no endpoints")
				}
				// A second request: sequence numbers and the same keys again.
				if again := c.getEndpoints(endpoint); len(again) != len(eps) {
					t.Fatalf("%d endpoints, then %d", len(eps), len(again))
				}
				var ep *ua.EndpointDescription
				for _, e := range eps {
					if e.SecurityPolicyURI == p.URI() && e.SecurityMode == mode {
						ep = e
					}
				}
				if ep == nil {
					t.Fatalf("no endpoint %s %v", p.Name(), mode)
				}
				for _, identity := range []ua.UserTokenType{ua.UserTokenTypeUserName, ua.UserTokenTypeCertificate} {
					c.session(p, client, ep, identity, user, password, ua.StatusOK)
				}
				if p == Basic256Sha256 && mode == encrypt {
					c.session(p, client, ep, ua.UserTokenTypeUserName, user, password+"x", ua.StatusBadUserAccessDenied)
				}
			})
		}
	}
}

// session creates and activates a session: it checks the server's
// signature with Verify, signs with Sign, and encrypts the password with
// EncryptSecret or signs an X.509 user token, under the policy the
// endpoint's user token policy names. want is ActivateSession's result.
func (c *secureChannel) session(p Policy, client *KeyPair, ep *ua.EndpointDescription, identity ua.UserTokenType, user, password string, want ua.StatusCode) {
	t := c.t
	t.Helper()
	leaf, err := leafCertificate(client.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	clientNonce := make([]byte, 32) // node-opcua refuses a nonce it has seen
	rand.Read(clientNonce)
	resp := c.call(&ua.CreateSessionRequest{
		RequestHeader: requestHeader(),
		ClientDescription: &ua.ApplicationDescription{
			ApplicationURI:  leaf.URIs[0].String(),
			ProductURI:      "urn:tagbridge:secpolicy-test",
			ApplicationName: ua.NewLocalizedText("secpolicy interop test"),
			ApplicationType: ua.ApplicationTypeClient,
		},
		EndpointURL:             ep.EndpointURL,
		SessionName:             "secpolicy interop",
		ClientNonce:             clientNonce,
		ClientCertificate:       client.Certificate,
		RequestedSessionTimeout: 60000,
	})
	cs, ok := resp.(*ua.CreateSessionResponse)
	if !ok {
		t.Fatalf("create session: %T %+v", resp, *resp.(*ua.ServiceFault).ResponseHeader)
	}
	if p != None {
		serverCert, err := leafCertificate(cs.ServerCertificate)
		if err != nil {
			t.Fatal(err)
		}
		if cs.ServerSignature.Algorithm != p.SignatureAlgorithm() {
			t.Errorf("server signs with %q, policy says %q", cs.ServerSignature.Algorithm, p.SignatureAlgorithm())
		}
		if err := p.Verify(serverCert, append(bytes.Clone(client.Certificate), clientNonce...), cs.ServerSignature.Signature); err != nil {
			t.Fatalf("server signature: %v", err)
		}
	}
	proof := append(bytes.Clone(cs.ServerCertificate), cs.ServerNonce...)
	clientSig, err := p.Sign(client.Key, proof)
	if err != nil {
		t.Fatal(err)
	}

	var utp *ua.UserTokenPolicy
	for _, u := range ep.UserIdentityTokens {
		if u.TokenType == identity {
			utp = u
		}
	}
	if utp == nil {
		t.Fatalf("endpoint offers no %v token", identity)
	}
	tokenPolicy := p
	if utp.SecurityPolicyURI != "" {
		if tokenPolicy, err = ByURI(utp.SecurityPolicyURI); err != nil {
			t.Fatal(err)
		}
	}
	var token any
	tokenSig := &ua.SignatureData{} // gopcua encodes a nil struct pointer as nothing
	switch identity {
	case ua.UserTokenTypeUserName:
		epCert, err := leafCertificate(ep.ServerCertificate)
		if err != nil {
			t.Fatal(err)
		}
		secret, alg, err := tokenPolicy.EncryptSecret(epCert, []byte(password), cs.ServerNonce)
		if err != nil {
			t.Fatal(err)
		}
		token = &ua.UserNameIdentityToken{PolicyID: utp.PolicyID, UserName: user, Password: secret, EncryptionAlgorithm: alg}
	case ua.UserTokenTypeCertificate:
		u := keyPair(t, "user-2048")
		sig, err := tokenPolicy.Sign(u.Key, proof)
		if err != nil {
			t.Fatal(err)
		}
		token = &ua.X509IdentityToken{PolicyID: utp.PolicyID, CertificateData: u.Certificate}
		tokenSig = &ua.SignatureData{Algorithm: tokenPolicy.SignatureAlgorithm(), Signature: sig}
	}
	resp = c.call(&ua.ActivateSessionRequest{
		RequestHeader:      sessionHeader(cs.AuthenticationToken),
		ClientSignature:    &ua.SignatureData{Algorithm: p.SignatureAlgorithm(), Signature: clientSig},
		UserIdentityToken:  ua.NewExtensionObject(token),
		UserTokenSignature: tokenSig,
	})
	if f, ok := resp.(*ua.ServiceFault); ok && f.ResponseHeader.ServiceResult == want {
		t.Logf("%v token under %s: %v (ServiceFault)", identity, tokenPolicy.Name(), want)
		return
	}
	as, ok := resp.(*ua.ActivateSessionResponse)
	if !ok {
		t.Fatalf("ActivateSession answered with %T %+v", resp, *resp.(*ua.ServiceFault).ResponseHeader)
	}
	if got := as.ResponseHeader.ServiceResult; got != want {
		t.Fatalf("activate session with a %v token (policy %s): %v, want %v", identity, tokenPolicy.Name(), got, want)
	}
	t.Logf("%v token under %s: %v", identity, tokenPolicy.Name(), want)
}

var allRSA = []Policy{Basic128Rsa15, Basic256, Basic256Sha256, Aes128Sha256RsaOaep, Aes256Sha256RsaPss}

func TestInteropOpen62541(t *testing.T) {
	srv := o62proc.Start(t, o62proc.Options{Policies: []string{"None", "rsa", "Basic256", "Basic128Rsa15"}})
	interop(t, srv.Endpoint, allRSA, 2048, "integrations", "integrations-pw")
	t.Run("4096-bit keys", func(t *testing.T) {
		// ExtraPaddingSize both ways.
		big := o62proc.Start(t, o62proc.Options{Policies: []string{"None", "rsa"}, KeySize: 4096})
		interop(t, big.Endpoint, []Policy{Basic256Sha256, Aes128Sha256RsaOaep, Aes256Sha256RsaPss}, 4096, "integrations", "integrations-pw")
		interop(t, big.Endpoint, []Policy{Aes256Sha256RsaPss}, 2048, "integrations", "integrations-pw")
	})
}

func TestInteropNodeOPCUA(t *testing.T) {
	peer := peerproc.Start(t, peerproc.Options{
		Policies:    []string{"None", "Basic128Rsa15", "Basic256", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"},
		Modes:       []string{"None", "Sign", "SignAndEncrypt"},
		Users:       map[string]string{"operator": "operator-pw"},
		X509Users:   true,
		MaxSessions: 64, // the test leaves its sessions open
	})
	interop(t, peer.Endpoint, allRSA, 2048, "operator", "operator-pw")
}
