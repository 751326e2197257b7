package certs_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/tagbridge/tagbridge/certs"
)

// How an OPC UA session uses the package before it opens a secure channel,
// here with a generated certificate standing in for the PLC's.
func Example() {
	dir, err := os.MkdirTemp("", "certs-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	// The PLC's certificate, as its EndpointDescription.ServerCertificate carries it.
	serverPEM, _, err := certs.Generate(certs.Options{AgentID: "press1", Hostname: "press1.plant.example"})
	if err != nil {
		fmt.Println(err)
		return
	}
	cert, serverDER, err := certs.ParseCertificate(serverPEM)
	if err != nil {
		fmt.Println(err)
		return
	}
	serverURI, _ := certs.ApplicationURI(cert) // EndpointDescription.Server.ApplicationURI

	// At start, after config validation.
	store, err := certs.OpenStore(filepath.Join(dir, "pki"))
	if err != nil {
		fmt.Println(err)
		return
	}

	// At every connection attempt, with the chosen endpoint's certificate.
	for attempt := 1; attempt <= 2; attempt++ {
		res, err := store.Verify(serverDER, certs.VerifyOptions{AutoAccept: certs.AutoAcceptOn, Peer: "press1"})
		switch {
		case errors.Is(err, certs.ErrChanged):
			fmt.Println("possible man in the middle:", err) // log and retry later
			return
		case err != nil:
			fmt.Println(err) // names the rejected file and the mv command that trusts it
			return
		}
		fmt.Println("attempt", attempt, "trusted on first use, not yet stored:", res.Pending())
		fmt.Println("host name:", certs.VerifyHostname(res.Certificate, "press1.plant.example"))
		fmt.Println("application URI:", certs.VerifyApplicationURI(res.Certificate, serverURI))
		// After the secure channel and the session succeeded with it.
		if err := store.Commit(res); err != nil {
			fmt.Println(err)
			return
		}
	}
	// Output:
	// attempt 1 trusted on first use, not yet stored: true
	// host name: <nil>
	// application URI: <nil>
	// attempt 2 trusted on first use, not yet stored: false
	// host name: <nil>
	// application URI: <nil>
}
