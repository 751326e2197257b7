package statusapi

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/tagbridge/tagbridge/config"
)

type reloading struct {
	*fixed
	failed bool
	at     time.Time
}

func (r reloading) LastReload() (bool, time.Time) { return r.failed, r.at }

func TestBuildInfoAndReload(t *testing.T) {
	at := time.Unix(1798761600, 0)
	for _, c := range []struct {
		name   string
		src    Source
		ok, ts string
	}{
		{"refused", reloading{healthySource(), true, at}, "0", "1.7987616e+09"},
		{"applied", reloading{healthySource(), false, at}, "1", "1.7987616e+09"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := New("127.0.0.1:0", config.Secret(token), "ipc01", c.src, zerolog.Nop())
			if err != nil {
				t.Fatal(err)
			}
			defer s.ln.Close()
			s.SetVersion("1.2.3")
			want := `
# HELP tagbridge_build_info The running binary: version, VCS revision and Go version; always 1.
# TYPE tagbridge_build_info gauge
tagbridge_build_info{goversion="` + runtime.Version() + `",revision="` + revision() + `",version="1.2.3"} 1
# HELP tagbridge_config_last_reload_success_timestamp_seconds When a configuration was last loaded successfully.
# TYPE tagbridge_config_last_reload_success_timestamp_seconds gauge
tagbridge_config_last_reload_success_timestamp_seconds ` + c.ts + `
# HELP tagbridge_config_last_reload_successful 1 when the latest configuration load (at start or on SIGHUP) succeeded, 0 when a reload was refused.
# TYPE tagbridge_config_last_reload_successful gauge
tagbridge_config_last_reload_successful ` + c.ok + `
`
			if err := testutil.CollectAndCompare(metrics{s}, strings.NewReader(want), "tagbridge_build_info", "tagbridge_config_last_reload_successful", "tagbridge_config_last_reload_success_timestamp_seconds"); err != nil {
				t.Error(err)
			}
		})
	}
	// Without a reload yet: successful, at the server's start.
	s, err := New("127.0.0.1:0", config.Secret(token), "ipc01", healthySource(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.ln.Close()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(metrics{s})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got float64
	for _, mf := range mfs {
		if mf.GetName() == "tagbridge_config_last_reload_success_timestamp_seconds" {
			got = mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	if got < float64(s.started.Unix())-1 || got > float64(time.Now().Unix())+1 {
		t.Errorf("reload timestamp at start: %v, want the server's start %v", got, s.started)
	}
}

func TestLastValueMetric(t *testing.T) {
	src := healthySource()
	src.plcs[0].LastValueAt = time.Unix(1798761600, 0)
	s, err := New("127.0.0.1:0", config.Secret(token), "ipc01", src, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.ln.Close()
	want := `
# HELP tagbridge_plc_last_value_timestamp_seconds When the PLC entry's latest value was collected (0: none yet).
# TYPE tagbridge_plc_last_value_timestamp_seconds gauge
tagbridge_plc_last_value_timestamp_seconds{plc="oven2"} 0
tagbridge_plc_last_value_timestamp_seconds{plc="press1"} 1.7987616e+09
`
	if err := testutil.CollectAndCompare(metrics{s}, strings.NewReader(want), "tagbridge_plc_last_value_timestamp_seconds"); err != nil {
		t.Error(err)
	}
}
