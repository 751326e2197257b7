package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/rs/zerolog"

	"github.com/tagbridge/tagbridge/agent/statusapi"
	"github.com/tagbridge/tagbridge/collectors/opcua"
	"github.com/tagbridge/tagbridge/config"
	"github.com/tagbridge/tagbridge/internal/testkit"
	"github.com/tagbridge/tagbridge/scripts/plcsim/simproc"
)

const statusToken = "agent-status-token-5f0e1d2c3b4a"

// statusClient asks the agent's status listener at addr.
type statusClient struct {
	t    *testing.T
	base string
}

func (c statusClient) get(path, token string) (int, string) {
	c.t.Helper()
	req, err := http.NewRequestWithContext(c.t.Context(), http.MethodGet, c.base+path, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// metrics scrapes /metrics and parses it as Prometheus does.
func (c statusClient) metrics() map[string]*dto.MetricFamily {
	c.t.Helper()
	code, body := c.get("/metrics", statusToken)
	if code != http.StatusOK {
		c.t.Fatalf("/metrics: %d %s", code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		c.t.Fatalf("/metrics does not parse: %v\n%s", err, body)
	}
	return fams
}

// value returns the value of the series of name whose labels include
// labels (name=value pairs), and whether there is one.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		match := true
		for i := 0; i+1 < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				match = false
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		}
	}
	return 0, false
}

// The status listener of a real agent, against plcsim and Mosquitto:
// health follows the broker and the PLC going away and coming back, the
// status and the metrics show the same, and nothing answers without the
// token.
func TestStatusListener(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	const tags = 6
	broker := testkit.StartBroker(t)
	plc := simproc.Start(t, "-tags", fmt.Sprint(tags), "-interval", "100ms")
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "status-token")
	if err := os.WriteFile(tokenFile, []byte(statusToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := testkit.Addr(t)
	var yml strings.Builder
	fmt.Fprintf(&yml, "agent: {id: st, spool_dir: %s, status_listen: %q, status_token_file: %s}\n", t.TempDir(), addr, tokenFile)
	fmt.Fprintf(&yml, "mqtt: {url: %s}\nplcs:\n  - name: press1\n    endpoint: %s\n    publishing_interval: 50ms\n    reconnect: {min: 100ms, max: 500ms}\n", broker.URL(), plc.Endpoint)
	for _, line := range strings.Split(strings.TrimRight(simproc.Tags(t, tags), "\n"), "\n") {
		fmt.Fprintf(&yml, "    %s\n", line)
	}
	file := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(file, []byte(yml.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatalf("config:\n%v\n%s", err, yml.String())
	}

	logs := &testkit.Log{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent log:\n%s", logs)
		}
	})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	ag := New(cfg, zerolog.New(logs).Level(zerolog.DebugLevel))
	go func() { done <- ag.Run(ctx) }()
	c := statusClient{t: t, base: "http://" + addr}

	health := func(wantCode int, wantBody string) {
		t.Helper()
		var code int
		var body string
		testkit.WaitUntil(t, fmt.Sprintf("/healthz %d %q", wantCode, wantBody), 30*time.Second, func() bool {
			code, body = c.get("/healthz", statusToken)
			return code == wantCode && strings.Contains(body, wantBody)
		})
	}
	health(http.StatusOK, "ok\n")

	for _, path := range []string{"/healthz", "/status", "/metrics"} {
		if code, body := c.get(path, ""); code != http.StatusUnauthorized {
			t.Errorf("%s without token: %d %s", path, code, body)
		}
		if code, body := c.get(path, "not-"+statusToken); code != http.StatusUnauthorized {
			t.Errorf("%s with a wrong token: %d %s", path, code, body)
		}
	}

	// /status: the PLC streams all its tags, values flow, the broker is up.
	var st statusapi.Status
	testkit.WaitUntil(t, "values counted in /status", 10*time.Second, func() bool {
		code, body := c.get("/status", statusToken)
		if code != http.StatusOK {
			t.Fatalf("/status: %d %s", code, body)
		}
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			t.Fatalf("/status: %v\n%s", err, body)
		}
		return len(st.PLCs) == 1 && st.PLCs[0].Values > 0 && st.Broker.Published > 0 && st.Broker.ByPLC["press1"].Published > 0
	})
	p := st.PLCs[0]
	if st.Agent != "st" || !st.Healthy || p.PLC != "press1" || p.State != "streaming" || p.Endpoint != plc.Endpoint ||
		p.TagsOK != tags || p.TagsFailed != 0 || opcua.LinkOf(p).Policy != "None" || !st.Broker.Connected {
		t.Errorf("/status: %+v", st)
	}

	// /metrics says the same.
	fams := c.metrics()
	for _, m := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"tagbridge_healthy", nil, 1},
		{"tagbridge_plc_up", []string{"plc", "press1"}, 1},
		{"tagbridge_plc_state", []string{"plc", "press1", "state", "streaming"}, 1},
		{"tagbridge_plc_state", []string{"plc", "press1", "state", "disconnected"}, 0},
		{"tagbridge_plc_tags", []string{"plc", "press1", "result", "ok"}, tags},
		{"tagbridge_plc_tags", []string{"plc", "press1", "result", "failed"}, 0},
		{"tagbridge_broker_connected", nil, 1},
		{"tagbridge_dropped_values_total", []string{"plc", "press1"}, 0},
		{"tagbridge_failed_values_total", []string{"plc", "press1"}, 0},
	} {
		if got, ok := value(fams, m.name, m.labels...); !ok || got != m.want {
			t.Errorf("%s%v = %v (present %v), want %v", m.name, m.labels, got, ok, m.want)
		}
	}
	if got, _ := value(fams, "tagbridge_plc_values_total", "plc", "press1"); got < 1 {
		t.Errorf("tagbridge_plc_values_total = %v, want values", got)
	}
	if got, _ := value(fams, "tagbridge_published_values_total", "plc", "press1"); got < 1 {
		t.Errorf("tagbridge_published_values_total{plc=\"press1\"} = %v, want values", got)
	}
	if got, ok := value(fams, "tagbridge_plc_info", "plc", "press1", "endpoint", plc.Endpoint, "policy", "None"); !ok || got != 1 {
		t.Errorf("tagbridge_plc_info for %s with policy None: %v %v", plc.Endpoint, got, ok)
	}
	if fams["go_goroutines"] == nil || fams["process_resident_memory_bytes"] == nil {
		t.Error("no Go or process metrics")
	}

	// The broker goes away and comes back.
	broker.Stop()
	health(http.StatusServiceUnavailable, "broker: not connected\n")
	if got, _ := value(c.metrics(), "tagbridge_broker_connected"); got != 0 {
		t.Errorf("tagbridge_broker_connected = %v with the broker stopped", got)
	}
	broker.Restart()
	health(http.StatusOK, "ok\n")

	// So does the PLC.
	plc.Kill()
	health(http.StatusServiceUnavailable, "plc press1: ") // recovering, then disconnected
	if got, _ := value(c.metrics(), "tagbridge_plc_up", "plc", "press1"); got != 0 {
		t.Errorf("tagbridge_plc_up = %v with the PLC down", got)
	}
	plc.Restart("-tags", fmt.Sprint(tags), "-interval", "100ms")
	health(http.StatusOK, "ok\n")
	if got, _ := value(c.metrics(), "tagbridge_plc_reconnects_total", "plc", "press1"); got < 1 {
		t.Errorf("tagbridge_plc_reconnects_total = %v after the PLC came back", got)
	}

	// A reload keeps the status settings of the start, and says so.
	otherToken := filepath.Join(dir, "other-token")
	if err := os.WriteFile(otherToken, []byte("another-token-0123456789abcdef"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte(strings.Replace(yml.String(), tokenFile, otherToken, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg2, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := ag.Reload(cfg2); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if !strings.Contains(logs.String(), "status_token_file take effect at the next start") {
		t.Error("no warning that the status settings did not change")
	}
	if code, body := c.get("/healthz", statusToken); code != http.StatusOK {
		t.Errorf("/healthz with the token of the start, after the reload: %d %s", code, body)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("agent did not stop within 15 s")
	}
	if conn, err := net.Dial("tcp", addr); err == nil {
		conn.Close()
		t.Error("the status listener still accepts connections after Run returned")
	}
	if strings.Contains(logs.String(), statusToken) {
		t.Error("the agent's log shows the status token")
	}
}

// A listener that cannot be opened stops the agent at start, naming it.
func TestStatusListenerBusy(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg := &config.Config{
		Agent: config.Agent{ID: "st", SpoolDir: t.TempDir(), StatusListen: busy.Addr().String(), StatusToken: statusToken},
		MQTT:  config.MQTT{URL: "tcp://127.0.0.1:1", ClientID: "st", QoS: 1, Topic: config.DefaultTopic},
	}
	err = Run(t.Context(), cfg, zerolog.Nop())
	if err == nil || !strings.Contains(err.Error(), "status: listen on "+busy.Addr().String()) {
		t.Fatalf("Run with a busy status port: %v, want a listen error naming it", err)
	}
}
