package certs

import (
	"errors"
	"testing"
)

func TestVerifyHostname(t *testing.T) {
	c := mkCert(t, certSpec{cn: "plc1", dns: []string{"plc1.plant.local", "plc1"}, ips: []string{"10.0.0.5"}}, nil)
	bare := mkCert(t, certSpec{cn: "plc2"}, nil)
	tests := []struct {
		name string
		c    *issued
		host string
		msg  string
	}{
		{name: "DNS", c: c, host: "plc1.plant.local"},
		{name: "DNS case", c: c, host: "PLC1"},
		{name: "IP", c: c, host: "10.0.0.5"},
		{name: "wrong IP", c: c, host: "10.0.0.6", msg: `server certificate "plc1" is for DNS:plc1.plant.local, DNS:plc1, IP:10.0.0.5, not "10.0.0.6"`},
		{name: "wrong name", c: c, host: "plc9", msg: `server certificate "plc1" is for DNS:plc1.plant.local, DNS:plc1, IP:10.0.0.5, not "plc9"`},
		{name: "no SANs", c: bare, host: "plc2", msg: `server certificate "plc2" is for no host name (no DNS or IP subject alternative names), not "plc2"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := VerifyHostname(tc.c.cert, tc.host)
			if tc.msg == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrHostname) || err.Error() != tc.msg {
				t.Fatalf("err = %v\nwant %s", err, tc.msg)
			}
		})
	}
}

func TestVerifyApplicationURI(t *testing.T) {
	c := mkCert(t, certSpec{cn: "plc1", uri: "urn:plc1:siemens:s7"}, nil)
	if err := VerifyApplicationURI(c.cert, "urn:plc1:siemens:s7"); err != nil {
		t.Fatal(err)
	}
	err := VerifyApplicationURI(c.cert, "urn:other")
	want := `server certificate "plc1" has ApplicationURI "urn:plc1:siemens:s7", the server says "urn:other"`
	if !errors.Is(err, ErrApplicationURI) || err.Error() != want {
		t.Fatalf("err = %v\nwant %s", err, want)
	}
	bare := mkCert(t, certSpec{cn: "plc2"}, nil)
	err = VerifyApplicationURI(bare.cert, "urn:x")
	if want := `server certificate "plc2" has no ApplicationURI, the server says "urn:x"`; !errors.Is(err, ErrApplicationURI) || err.Error() != want {
		t.Fatalf("err = %v\nwant %s", err, want)
	}
}
