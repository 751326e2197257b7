package certs_test

import (
	"errors"
	"fmt"

	"github.com/tagbridge/tagbridge/certs"
)

// How an OPC UA session uses the package before it opens a secure channel
// (compiled, not run: it needs a PLC's endpoint description).
func Example() {
	// At start, after config validation.
	_, clientDER, clientKey, err := certs.LoadKeyPair("/etc/tagbridge/certs/client-cert.pem", "/etc/tagbridge/certs/client-key.pem")
	if err != nil {
		return
	}
	_, _ = clientDER, clientKey // opcua.Certificate(clientDER), opcua.PrivateKey(clientKey)
	store, err := certs.OpenStore("/var/lib/tagbridge/pki")
	if err != nil {
		return
	}

	// At every connection attempt, with the chosen endpoint's certificate.
	var serverDER []byte       // EndpointDescription.ServerCertificate
	var host, serverURI string // the configured endpoint's host; EndpointDescription.Server.ApplicationURI
	res, err := store.Verify(serverDER, certs.VerifyOptions{Trust: certs.TrustFull, AutoAccept: certs.AutoAcceptOn, Peer: "press1"})
	switch {
	case errors.Is(err, certs.ErrChanged):
		fmt.Println("possible man in the middle:", err) // log and retry later
		return
	case err != nil:
		fmt.Println(err) // names the rejected file and the mv command that trusts it
		return
	}
	if err := certs.VerifyHostname(res.Certificate, host); err != nil {
		fmt.Println(err) // an error, or a warning with verify_hostname: false
	}
	if err := certs.VerifyApplicationURI(res.Certificate, serverURI); err != nil {
		fmt.Println(err)
	}
	// After the secure channel and the session succeeded with it.
	if err := store.Commit(res); err != nil {
		fmt.Println(err)
		return
	}
	if n := res.Notice(); n != "" {
		fmt.Println(n) // trusted on first use, or replaced with auto_accept: force
	}
}
