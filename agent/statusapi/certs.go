package statusapi

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tagbridge/tagbridge/certs"
)

// Certificate is a certificate or CRL a PLC entry depends on, with when
// it runs out.
type Certificate struct {
	PLC string `json:"plc"`
	certs.Expiry
}

// CertificateSource is a Source that also lists the certificates in use:
// the agent's own, the user's, the PLC's and the trust store's CAs and CRLs.
type CertificateSource interface {
	Certificates() []Certificate
}

// ExpiryWarning is how long before a certificate runs out it is worth a
// warning in the log and in tagbridge status.
const ExpiryWarning = 30 * 24 * time.Hour

var descCertExpiry = desc("certificate_expiry_timestamp_seconds",
	"When the earliest certificate of the role runs out (a CRL: its next update), per PLC entry. Roles: agent, user, server, trusted, ca, crl.", "plc", "role")

// collectCertificates exports the earliest expiry per PLC entry and role.
func collectCertificates(ch chan<- prometheus.Metric, list []Certificate) {
	type key struct{ plc, role string }
	earliest := map[key]time.Time{}
	var order []key
	for _, c := range list {
		k := key{c.PLC, c.Role}
		t, seen := earliest[k]
		if !seen {
			order = append(order, k)
		}
		if !seen || c.NotAfter.Before(t) {
			earliest[k] = c.NotAfter
		}
	}
	for _, k := range order {
		ch <- prometheus.MustNewConstMetric(descCertExpiry, prometheus.GaugeValue, unix(earliest[k]), k.plc, k.role)
	}
}
