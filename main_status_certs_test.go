package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/tagbridge/tagbridge/agent/statusapi"
	"github.com/tagbridge/tagbridge/certs"
)

func TestPrintCertificates(t *testing.T) {
	now := time.Date(2027, 3, 1, 12, 0, 0, 0, time.Local)
	s := statusapi.Status{Time: now, Certificates: []statusapi.Certificate{
		{PLC: "press1", Expiry: certs.Expiry{Role: "agent", Subject: "tagbridge line1", NotAfter: now.AddDate(0, 0, 700)}},
		{PLC: "press1", Expiry: certs.Expiry{Role: "server", Subject: "press1", NotAfter: now.AddDate(0, 0, 12)}},
		{PLC: "oven2", Expiry: certs.Expiry{Role: "crl", Subject: "Plant CA", NotAfter: now.AddDate(0, 0, -2)}},
	}}
	var b bytes.Buffer
	printCertificates(&b, s)
	want := `
certificates (earliest expiry first):
PLC     ROLE    SUBJECT          EXPIRES
oven2   crl     Plant CA         2027-02-27 EXPIRED 2 days ago
press1  server  press1           2027-03-13 SOON: in 12 days
press1  agent   tagbridge line1  2029-01-29 in 700 days
`
	if b.String() != want {
		t.Errorf("printCertificates:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	printCertificates(&b, statusapi.Status{Time: now})
	if strings.TrimSpace(b.String()) != "" {
		t.Errorf("no certificates: printed %q, want nothing", b.String())
	}
}
