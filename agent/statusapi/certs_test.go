package statusapi

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/tagbridge/tagbridge/certs"
	"github.com/tagbridge/tagbridge/config"
)

// withCerts is a Source that also lists certificates.
type withCerts struct {
	*fixed
	list []Certificate
}

func (w withCerts) Certificates() []Certificate { return w.list }

// TestCertificateExpiry: the earliest expiry per PLC entry and role, in
// /metrics and in the status document.
func TestCertificateExpiry(t *testing.T) {
	at := func(days int) time.Time { return time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, days) }
	src := withCerts{healthySource(), []Certificate{
		{PLC: "press1", Expiry: certs.Expiry{Role: "agent", Subject: "tagbridge line1", NotAfter: at(730)}},
		{PLC: "press1", Expiry: certs.Expiry{Role: "ca", Subject: "Plant Root CA", NotAfter: at(3650)}},
		{PLC: "press1", Expiry: certs.Expiry{Role: "ca", Subject: "Plant Issuing CA", NotAfter: at(20)}},
		{PLC: "press1", Expiry: certs.Expiry{Role: "crl", Subject: "Plant Issuing CA", NotAfter: at(7)}},
		{PLC: "oven2", Expiry: certs.Expiry{Role: "server", Subject: "oven2", NotAfter: at(-1)}},
	}}
	s, err := New("127.0.0.1:0", config.Secret(token), "ipc01", src, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.ln.Close()
	want := `
# HELP tagbridge_certificate_expiry_timestamp_seconds When the earliest certificate of the role runs out (a CRL: its next update), per PLC entry. Roles: agent, user, server, trusted, ca, crl.
# TYPE tagbridge_certificate_expiry_timestamp_seconds gauge
tagbridge_certificate_expiry_timestamp_seconds{plc="oven2",role="server"} ` + unixString(at(-1)) + `
tagbridge_certificate_expiry_timestamp_seconds{plc="press1",role="agent"} ` + unixString(at(730)) + `
tagbridge_certificate_expiry_timestamp_seconds{plc="press1",role="ca"} ` + unixString(at(20)) + `
tagbridge_certificate_expiry_timestamp_seconds{plc="press1",role="crl"} ` + unixString(at(7)) + `
`
	if err := testutil.CollectAndCompare(metrics{s}, strings.NewReader(want), "tagbridge_certificate_expiry_timestamp_seconds"); err != nil {
		t.Error(err)
	}
	problems, err := testutil.CollectAndLint(metrics{s})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
	if st := s.Snapshot(); len(st.Certificates) != 5 || st.Certificates[2].Subject != "Plant Issuing CA" {
		t.Errorf("status certificates: %+v, want the five listed", st.Certificates)
	}
}

// unixString is how the exposition format writes whole seconds
// (1.7987616e+09 style for large values).
func unixString(t time.Time) string {
	return strconv.FormatFloat(float64(t.Unix()), 'g', -1, 64)
}
