package certs

import (
	"crypto/x509"
	"fmt"
	"strings"
)

// VerifyHostname checks that host (a name or an IP address, as in the
// configured endpoint URL) is among the certificate's DNS or IP SANs
// (OPC UA Part 4, 5.5.2). The error names both sides.
func VerifyHostname(cert *x509.Certificate, host string) error {
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if err := cert.VerifyHostname(host); err == nil {
		return nil
	}
	return fail(ErrHostname, "server certificate %q is for %s, not %q", cert.Subject.CommonName, sanList(cert), host)
}

// VerifyApplicationURI checks that uri, the server's ApplicationURI from its
// endpoint description, is the certificate's URI SAN.
func VerifyApplicationURI(cert *x509.Certificate, uri string) error {
	var have []string
	for _, u := range cert.URIs {
		if u.String() == uri {
			return nil
		}
		have = append(have, fmt.Sprintf("%q", u.String()))
	}
	if len(have) == 0 {
		return fail(ErrApplicationURI, "server certificate %q has no ApplicationURI, the server says %q", cert.Subject.CommonName, uri)
	}
	return fail(ErrApplicationURI, "server certificate %q has ApplicationURI %s, the server says %q", cert.Subject.CommonName, strings.Join(have, ", "), uri)
}

func sanList(cert *x509.Certificate) string {
	var names []string
	for _, n := range cert.DNSNames {
		names = append(names, "DNS:"+n)
	}
	for _, ip := range cert.IPAddresses {
		names = append(names, "IP:"+ip.String())
	}
	if len(names) == 0 {
		return "no host name (no DNS or IP subject alternative names)"
	}
	return strings.Join(names, ", ")
}
