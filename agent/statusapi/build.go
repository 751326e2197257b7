package statusapi

import (
	"runtime"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ReloadSource is a Source that knows how the latest configuration load
// went: failed is true when the latest reload was refused; successAt is
// when a configuration was last loaded (zero: at start).
type ReloadSource interface {
	LastReload() (failed bool, successAt time.Time)
}

var (
	descBuildInfo = desc("build_info", "The running binary: version, VCS revision and Go version; always 1.", "version", "revision", "goversion")
	descReloadOK  = desc("config_last_reload_successful", "1 when the latest configuration load (at start or on SIGHUP) succeeded, 0 when a reload was refused.")
	descReloadAt  = desc("config_last_reload_success_timestamp_seconds", "When a configuration was last loaded successfully.")
)

// SetVersion sets the version build_info reports (the revision and the Go
// version come from the binary).
func (s *Server) SetVersion(v string) { s.version = v }

func revision() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, st := range info.Settings {
			if st.Key == "vcs.revision" {
				return st.Value
			}
		}
	}
	return "unknown"
}

// collectBuild exports build_info and the reload state.
func (m metrics) collectBuild(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descBuildInfo, prometheus.GaugeValue, 1, m.s.version, revision(), runtime.Version())
	failed, at := false, time.Time{}
	if rs, ok := m.s.src.(ReloadSource); ok {
		failed, at = rs.LastReload()
	}
	if at.IsZero() {
		at = m.s.started
	}
	ch <- prometheus.MustNewConstMetric(descReloadOK, prometheus.GaugeValue, bool01(!failed))
	ch <- prometheus.MustNewConstMetric(descReloadAt, prometheus.GaugeValue, unix(at))
}

var descLastValue = desc("plc_last_value_timestamp_seconds", "When the PLC entry's latest value was collected (0: none yet).", "plc")

var descTagFailed = desc("tag_failed", "1 for each tag the PLC refuses, with the status it gave (e.g. BadNodeIdUnknown).", "plc", "tag", "status")

var descConnectFailures = desc("plc_connect_failures_total", "Connection attempts to the PLC that failed before it streamed (refused, timed out, security or certificate rejected).", "plc")
