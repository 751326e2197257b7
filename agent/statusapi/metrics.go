package statusapi

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/collectors/opcua"
)

// states are the values of tagbridge_plc_state's state label.
var states = []string{
	collectors.StateConnecting,
	collectors.StateStreaming,
	collectors.StateRecovering,
	collectors.StateDisconnected,
	collectors.StateStopped,
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("tagbridge_"+name, help, labels, nil)
}

var (
	descUp       = desc("healthy", "1 when every PLC entry streams and the broker is connected (what /healthz says).")
	descPLCUp    = desc("plc_up", "1 while the PLC entry streams.", "plc")
	descPLCState = desc("plc_state", "1 for the PLC entry's current state.", "plc", "state")
	descPLCInfo  = desc("plc_info", "Endpoint and security in use; always 1.", "plc", "endpoint", "policy", "mode", "server_fingerprint")
	descChannel  = desc("plc_secure_channel_id", "Secure channel id in use (0: none).", "plc")
	descToken    = desc("plc_token_id", "Secure channel token id in use (0: none).", "plc")
	descRenewals = desc("plc_token_renewals_total", "Secure channel token renewals.", "plc")
	descRenewErr = desc("plc_token_renewal_failures_total", "Failed secure channel token renewals.", "plc")
	descRenewAt  = desc("plc_last_token_renewal_timestamp_seconds", "When the token was last renewed (0: never).", "plc")
	descReconn   = desc("plc_reconnects_total", "Sessions established after the first.", "plc")
	descRecover  = desc("plc_recoveries_total", "Sessions reactivated on a new channel without a gap.", "plc")
	descErrAt    = desc("plc_last_error_timestamp_seconds", "When the latest error happened (0: none).", "plc")
	descTags     = desc("plc_tags", "Tags the server accepted (result ok) and refused (failed).", "plc", "result")
	descValues   = desc("plc_values_total", "Values collected.", "plc")
	descClock    = desc("plc_clock_offset_seconds", "The PLC's clock minus the agent's.", "plc")
	descSince    = desc("plc_state_since_timestamp_seconds", "When the PLC entry entered its state.", "plc")

	descConnected = desc("broker_connected", "1 while connected to the broker and caught up.")
	descInFlight  = desc("broker_in_flight", "Publishes awaiting the broker's acknowledgement.")
	descSpoolB    = desc("spool_bytes", "Bytes the values not yet acknowledged by the broker take in the spool, record framing included (not the files' size): 0 once everything is delivered.")
	descSpoolV    = desc("spool_values", "Values in the spool not yet acknowledged by the broker.")
	descSpoolMax  = desc("spool_max_bytes", "The spool's bound (mqtt.spool.max_bytes): beyond it the oldest values are dropped.")
	descAttempts  = desc("broker_connection_attempts_total", "Connections to the broker tried, failed ones included.")
	descBrokerRe  = desc("broker_reconnects_total", "Connections to the broker established after the first.")
	descLatency   = desc("publish_latency_seconds", "Time from the agent taking a value to the broker acknowledging it (QoS 0: handing it to the connection).")
	descDropped   = desc("dropped_values_total", "Values deleted from the spool unsent (spool full or corrupt, or set aside in the dead-letter file), by PLC entry ("+UnknownPLC+": not known).", "plc")
	descPublished = desc("published_values_total", "Values acknowledged by the broker, by PLC entry ("+UnknownPLC+": not known).", "plc")
	descFailed    = desc("failed_values_total", "Values lost before reaching the broker's session, by PLC entry ("+UnknownPLC+": not known).", "plc")
	descResent    = desc("resent_values_total", "Values sent again after a reconnect or restart (at least once delivery).")

	descCommands = desc("commands_total", "Commands taken from MQTT, by result status (Good, a Bad status from the PLC, or tagbridge's own refusal).", "result")

	descStatusRefused = desc("status_connections_refused_total", "Connections to the status server closed on accept: too many open at once.")
)

// UnknownPLC is the plc label of values whose PLC entry is not known:
// spooled before a restart under a topic not seen since, or unreadable in
// the spool (publish.UnknownPLC).
const UnknownPLC = "(unknown)"

// PublishCounts are one PLC entry's values published, failed and dropped.
type PublishCounts struct {
	Published uint64 `json:"published"`
	Failed    uint64 `json:"failed"`
	Dropped   uint64 `json:"dropped"`
}

// metrics turns a snapshot into metrics at scrape time.
type metrics struct{ s *Server }

func (m metrics) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(m, ch) }

func (m metrics) Collect(ch chan<- prometheus.Metric) {
	st := m.s.Snapshot()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge(descUp, bool01(st.Healthy))
	if st.Commands != nil {
		for result, n := range st.Commands.Results {
			counter(descCommands, float64(n), result)
		}
	}
	for _, p := range st.PLCs {
		gauge(descPLCUp, bool01(p.State == collectors.StateStreaming), p.PLC)
		for _, s := range states {
			gauge(descPLCState, bool01(p.State == s), p.PLC, s)
		}
		link := opcua.LinkOf(p) // the security and channel metrics are OPC UA's
		gauge(descPLCInfo, 1, p.PLC, p.Endpoint, link.Policy, link.Mode, link.ServerFingerprint)
		gauge(descChannel, float64(link.ChannelID), p.PLC)
		gauge(descToken, float64(link.TokenID), p.PLC)
		counter(descRenewals, float64(link.TokenRenewals), p.PLC)
		counter(descRenewErr, float64(link.TokenRenewalFailures), p.PLC)
		gauge(descRenewAt, unix(link.LastRenewal), p.PLC)
		counter(descReconn, float64(p.Reconnects), p.PLC)
		counter(descRecover, float64(p.Recoveries), p.PLC)
		gauge(descErrAt, unix(p.LastErrorAt), p.PLC)
		gauge(descTags, float64(p.TagsOK), p.PLC, "ok")
		gauge(descTags, float64(p.TagsFailed), p.PLC, "failed")
		counter(descValues, float64(p.Values), p.PLC)
		gauge(descClock, p.ClockOffset.Seconds(), p.PLC)
		gauge(descSince, unix(p.Since), p.PLC)
		gauge(descLastValue, unix(p.LastValueAt), p.PLC)
		counter(descConnectFailures, float64(p.ConnectFailures), p.PLC)
		for _, f := range p.FailedTags {
			gauge(descTagFailed, 1, p.PLC, f.Tag, f.Status)
		}
	}
	b := st.Broker
	gauge(descConnected, bool01(b.Connected))
	gauge(descInFlight, float64(b.InFlight))
	gauge(descSpoolB, float64(b.SpoolBytes))
	gauge(descSpoolV, float64(b.SpoolValues))
	gauge(descSpoolMax, float64(b.SpoolMaxBytes))
	counter(descAttempts, float64(b.ConnectAttempts))
	counter(descBrokerRe, float64(b.Reconnects))
	if h := b.PublishLatency; h.Buckets != nil {
		ch <- prometheus.MustNewConstHistogram(descLatency, h.Count, h.Sum, h.Buckets)
	}
	for plc, c := range b.ByPLC {
		counter(descDropped, float64(c.Dropped), plc)
		counter(descPublished, float64(c.Published), plc)
		counter(descFailed, float64(c.Failed), plc)
	}
	counter(descResent, float64(b.Resent))
	counter(descStatusRefused, float64(m.s.ln.refused.Load()))
	collectCertificates(ch, st.Certificates)
	m.collectBuild(ch)
	collectBacklog(ch, st.Broker)
}

func bool01(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func unix(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}
