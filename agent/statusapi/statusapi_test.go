package statusapi

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/config"
	"github.com/tagbridge/tagbridge/internal/testkit"
)

const token = "s3cret-status-token-0123456789"

// fixed is a Source whose answer a test sets. The agent's tests run the
// real one, against plcsim and Mosquitto.
type fixed struct {
	mu     sync.Mutex
	plcs   []collectors.PLCState
	broker Broker
}

func (f *fixed) PLCs() []collectors.PLCState {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.plcs)
}

func (f *fixed) Broker() Broker {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.broker
}

func healthySource() *fixed {
	return &fixed{
		plcs: []collectors.PLCState{
			{PLC: "press1", State: collectors.StateStreaming, Endpoint: "opc.tcp://127.0.0.1:4840", TagsOK: 3, Values: 42},
			{PLC: "oven2", State: collectors.StateStreaming, Endpoint: "opc.tcp://127.0.0.1:4841", TagsOK: 1, TagsFailed: 1},
		},
		broker: Broker{Connected: true},
	}
}

// serve runs a Server on addr until stop is called or the test ends, and
// returns it, its log, and stop, which returns Run's result.
func serve(t *testing.T, addr string, src Source) (*Server, *testkit.Log, func() error) {
	t.Helper()
	logs := &testkit.Log{}
	s, err := New(addr, config.Secret(token), "ipc01", src, zerolog.New(logs).Level(zerolog.DebugLevel))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(5 * time.Second):
				t.Error("Run did not return within 5 s of cancellation")
			}
		})
		return runErr
	}
	t.Cleanup(func() { stop() })
	return s, logs, stop
}

// get sends GET path with the given Authorization header ("" for none).
func get(t *testing.T, client *http.Client, base, path, auth string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(body)
}

func TestAuth(t *testing.T) {
	s, logs, _ := serve(t, "127.0.0.1:0", healthySource())
	base := "http://" + s.Addr()
	for _, path := range []string{"/healthz", "/status", "/metrics"} {
		for _, c := range []struct {
			name, auth string
			want       int
		}{
			{"no header", "", http.StatusUnauthorized},
			{"wrong token", "Bearer " + token + "x", http.StatusUnauthorized},
			{"prefix of the token", "Bearer " + token[:10], http.StatusUnauthorized},
			{"basic", "Basic " + token, http.StatusUnauthorized},
			{"token", "Bearer " + token, http.StatusOK},
		} {
			code, h, body := get(t, http.DefaultClient, base, path, c.auth)
			if code != c.want {
				t.Errorf("%s %s: %d, want %d: %s", path, c.name, code, c.want, body)
			}
			if code == http.StatusUnauthorized && h.Get("WWW-Authenticate") == "" {
				t.Errorf("%s %s: 401 without WWW-Authenticate", path, c.name)
			}
			if code == http.StatusUnauthorized && strings.Contains(body, "ipc01") {
				t.Errorf("%s %s: 401 shows the status: %s", path, c.name, body)
			}
		}
	}
	if code, _, _ := get(t, http.DefaultClient, base, "/nothing", "Bearer "+token); code != http.StatusNotFound {
		t.Errorf("/nothing: %d, want 404", code)
	}
	if !strings.Contains(logs.String(), "bad or missing token") {
		t.Errorf("refused requests not logged at debug:\n%s", logs)
	}
	if strings.Contains(logs.String(), token[:10]) {
		t.Errorf("the log shows the token:\n%s", logs)
	}
}

func TestNewRefusesNoToken(t *testing.T) {
	if _, err := New("127.0.0.1:0", "", "ipc01", healthySource(), zerolog.Nop()); err == nil {
		t.Fatal("New without a token succeeded")
	}
}

func TestHealthAndStatus(t *testing.T) {
	src := healthySource()
	s, _, _ := serve(t, "127.0.0.1:0", src)
	base, auth := "http://"+s.Addr(), "Bearer "+token

	code, h, body := get(t, http.DefaultClient, base, "/healthz", auth)
	if code != http.StatusOK || body != "ok\n" || !strings.HasPrefix(h.Get("Content-Type"), "text/plain") {
		t.Errorf("healthy /healthz: %d %q %q", code, h.Get("Content-Type"), body)
	}

	src.mu.Lock()
	src.plcs[1].State, src.plcs[1].Reason = collectors.StateDisconnected, "dial tcp 127.0.0.1:4841: connection refused"
	src.broker.Connected = false
	src.mu.Unlock()
	code, _, body = get(t, http.DefaultClient, base, "/healthz", auth)
	want := "plc oven2: disconnected: dial tcp 127.0.0.1:4841: connection refused\nbroker: not connected\n"
	if code != http.StatusServiceUnavailable || body != want {
		t.Errorf("/healthz: %d %q, want 503 %q", code, body, want)
	}

	code, h, body = get(t, http.DefaultClient, base, "/status", auth)
	if code != http.StatusOK || h.Get("Content-Type") != "application/json" {
		t.Fatalf("/status: %d %q", code, h.Get("Content-Type"))
	}
	var st Status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("/status: %v\n%s", err, body)
	}
	if st.Agent != "ipc01" || st.Healthy || len(st.Problems) != 2 || len(st.PLCs) != 2 ||
		st.PLCs[0].PLC != "press1" || st.PLCs[0].Values != 42 || st.PLCs[1].TagsFailed != 1 || st.Broker.Connected {
		t.Errorf("/status:\n%s", body)
	}
}

// Values dropped from the spool make the agent unhealthy for a while.
func TestHealthDropped(t *testing.T) {
	src := healthySource()
	s, _, _ := serve(t, "127.0.0.1:0", src)
	start := time.Now()
	if st := s.Snapshot(); !st.Healthy {
		t.Fatalf("unhealthy at start: %v", st.Problems)
	}
	src.mu.Lock()
	src.broker.Dropped = 500
	src.mu.Unlock()
	want := "broker: values are being dropped from the spool (500 since start)"
	if st := s.Snapshot(); st.Healthy || !slices.Equal(st.Problems, []string{want}) {
		t.Errorf("after drops: healthy %v, problems %q; want %q", st.Healthy, st.Problems, want)
	}
	// Still within the window on the next look, without new drops.
	if n := s.droppingSince(500, start.Add(dropWindow/2)); n != 500 {
		t.Errorf("half a window later: %d, want 500", n)
	}
	if n := s.droppingSince(500, time.Now().Add(dropWindow+time.Second)); n != 0 {
		t.Errorf("a window later without new drops: %d, want 0", n)
	}
}

func TestProblems(t *testing.T) {
	up := Broker{Connected: true}
	for _, c := range []struct {
		name   string
		plcs   []collectors.PLCState
		broker Broker
		recent uint64
		want   []string
	}{
		{"all well", []collectors.PLCState{{PLC: "a", State: "streaming"}}, up, 0, nil},
		{"no PLCs", nil, up, 0, nil},
		{"connecting", []collectors.PLCState{{PLC: "a", State: "connecting"}}, up, 0, []string{"plc a: connecting"}},
		{"recovering", []collectors.PLCState{{PLC: "a", State: "recovering", Reason: "channel lost"}}, up, 0, []string{"plc a: recovering: channel lost"}},
		{"broker down", []collectors.PLCState{{PLC: "a", State: "streaming"}}, Broker{}, 0, []string{"broker: not connected"}},
		{"dropping", nil, up, 7, []string{"broker: values are being dropped from the spool (7 since start)"}},
		{"dropped long ago", nil, Broker{Connected: true, Dropped: 7}, 0, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := Problems(c.plcs, c.broker, c.recent); !slices.Equal(got, c.want) {
				t.Errorf("Problems = %q, want %q", got, c.want)
			}
		})
	}
}

func TestMetricsLint(t *testing.T) {
	s, err := New("127.0.0.1:0", config.Secret(token), "ipc01", healthySource(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.ln.Close()
	problems, err := testutil.CollectAndLint(metrics{s})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
	if n := testutil.CollectAndCount(metrics{s}, "tagbridge_plc_state"); n != 2*len(states) {
		t.Errorf("%d tagbridge_plc_state series, want %d", n, 2*len(states))
	}
}

func TestUnixSocket(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "status.sock")

	// A socket left behind by an agent that was killed.
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("stale socket not left behind: %v", err)
	}

	_, _, stop := serve(t, path, healthySource())
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %v, want a socket with 0660", fi.Mode())
	}
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		},
	}}
	defer client.CloseIdleConnections()
	if code, _, body := get(t, client, "http://tagbridge", "/healthz", "Bearer "+token); code != http.StatusOK {
		t.Errorf("/healthz over the socket: %d %s", code, body)
	}
	if code, _, _ := get(t, client, "http://tagbridge", "/status", ""); code != http.StatusUnauthorized {
		t.Errorf("/status over the socket without token: %d, want 401", code)
	}

	// A second agent must not take over a live socket.
	if _, err := New(path, config.Secret(token), "other", healthySource(), zerolog.Nop()); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("New on a live socket: %v, want an in-use error", err)
	}
	// Nor remove a file that is not a socket.
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(plain, config.Secret(token), "other", healthySource(), zerolog.Nop()); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("New on a regular file: %v, want a not-a-socket error", err)
	}
	if _, err := os.Stat(plain); err != nil {
		t.Errorf("the regular file is gone: %v", err)
	}

	client.CloseIdleConnections()
	if err := stop(); err != nil {
		t.Errorf("Run: %v", err)
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("socket still there after Run returned: %v", err)
	}
}

// Local users without a token cannot exhaust the agent's descriptors: at
// most maxConns connections are open at once, the rest are closed on
// accept, and connections that send no request are closed after
// headerTimeout; then a client with the token is served again.
func TestConnectionCap(t *testing.T) {
	s, logs, _ := serve(t, "127.0.0.1:0", healthySource())
	const flood = 4 * maxConns
	var conns []net.Conn
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for range flood {
		c, err := net.Dial("tcp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.ln.refused.Load() < flood-maxConns && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := s.ln.refused.Load(); got < flood-maxConns {
		t.Fatalf("%d of %d connections refused, want at least %d", got, flood, flood-maxConns)
	}
	if peak := s.ln.peak.Load(); peak > maxConns {
		t.Fatalf("%d connections open at once, want at most %d", peak, maxConns)
	}
	// The idle ones are closed once headerTimeout has passed.
	start := time.Now()
	for s.ln.open.Load() > 0 && time.Since(start) < headerTimeout+3*time.Second {
		time.Sleep(20 * time.Millisecond)
	}
	if n := s.ln.open.Load(); n > 0 {
		t.Fatalf("%d silent connections still open %v after the flood", n, time.Since(start))
	}
	t.Logf("peak %d open, %d refused, idle ones closed within %v", s.ln.peak.Load(), s.ln.refused.Load(), time.Since(start).Round(10*time.Millisecond))
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	if code, _, body := get(t, client, "http://"+s.Addr(), "/healthz", "Bearer "+token); code != http.StatusOK {
		t.Errorf("/healthz after the flood: %d %s", code, body)
	}
	if n := strings.Count(logs.String(), "status connections at their limit"); n != 1 {
		t.Errorf("%d warnings about the limit for one flood, want 1:\n%s", n, logs)
	}
	_, _, metrics := get(t, client, "http://"+s.Addr(), "/metrics", "Bearer "+token)
	if want := fmt.Sprintf("tagbridge_status_connections_refused_total %d\n", s.ln.refused.Load()); !strings.Contains(metrics, want) {
		t.Errorf("metrics lack %q", want)
	}
}

// A request without the token is answered with 401 and its connection is
// closed at once: it cannot be kept open for more tries.
func TestUnauthorizedCloses(t *testing.T) {
	s, _, _ := serve(t, "127.0.0.1:0", healthySource())
	c, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "GET /status HTTP/1.1\r\nHost: tagbridge\r\nConnection: keep-alive\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !resp.Close {
		t.Fatalf("status %d, close %v; want 401 and Connection: close", resp.StatusCode, resp.Close)
	}
	start := time.Now()
	if n, err := br.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("after the 401: read %d bytes, %v; want EOF", n, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("connection closed %v after the 401, want at once", d)
	}
}

// Headers are bounded: a client sending more than maxHeaderBytes gets 431
// and is disconnected, without the server reading on.
func TestHeaderBound(t *testing.T) {
	s, _, _ := serve(t, "127.0.0.1:0", healthySource())
	c, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	big := "GET /status HTTP/1.1\r\nHost: tagbridge\r\nX-Pad: " + strings.Repeat("a", 4*maxHeaderBytes) + "\r\n\r\n"
	go io.WriteString(c, big) // the server may stop reading before the end
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("status %d, want 431", resp.StatusCode)
	}
}

// net/http's own errors go to the status server's logger, not to the
// standard logger that main labels as the OPC UA library's.
func TestHTTPErrorLog(t *testing.T) {
	s, logs, _ := serve(t, "127.0.0.1:0", healthySource())
	if s.srv.ErrorLog == nil {
		t.Fatal("http.Server.ErrorLog not set: its errors would go to the standard logger")
	}
	s.srv.ErrorLog.Printf("http: superfluous response.WriteHeader call\n")
	var line map[string]any
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if strings.Contains(l, "superfluous") {
			if err := json.Unmarshal([]byte(l), &line); err != nil {
				t.Fatal(err)
			}
		}
	}
	if line["level"] != "warn" || line["message"] != "http: superfluous response.WriteHeader call" {
		t.Errorf("logged %v", line)
	}
}

// TestBrokerMetrics: the broker's connection counters, the spool's
// bound and held bytes, the publish latency histogram and the values
// published, failed and dropped by PLC entry are exported as the source
// reports them, and the per-PLC rate gauge, which
// rate(tagbridge_plc_values_total) gives, is not.
func TestBrokerMetrics(t *testing.T) {
	src := healthySource()
	src.broker = Broker{Connected: true, SpoolBytes: 4096, SpoolMaxBytes: 1 << 20, ConnectAttempts: 5, Reconnects: 2,
		PublishLatency: Histogram{Buckets: map[float64]uint64{0.1: 3, 1: 7}, Count: 8, Sum: 4.5},
		ByPLC:          map[string]PublishCounts{"press1": {Published: 10, Failed: 1, Dropped: 2}, UnknownPLC: {Dropped: 3}}}
	s, err := New("127.0.0.1:0", config.Secret(token), "ipc01", src, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.ln.Close()
	want := `
# HELP tagbridge_broker_connection_attempts_total Connections to the broker tried, failed ones included.
# TYPE tagbridge_broker_connection_attempts_total counter
tagbridge_broker_connection_attempts_total 5
# HELP tagbridge_broker_reconnects_total Connections to the broker established after the first.
# TYPE tagbridge_broker_reconnects_total counter
tagbridge_broker_reconnects_total 2
# HELP tagbridge_publish_latency_seconds Time from the agent taking a value to the broker acknowledging it (QoS 0: handing it to the connection).
# TYPE tagbridge_publish_latency_seconds histogram
tagbridge_publish_latency_seconds_bucket{le="0.1"} 3
tagbridge_publish_latency_seconds_bucket{le="1"} 7
tagbridge_publish_latency_seconds_bucket{le="+Inf"} 8
tagbridge_publish_latency_seconds_sum 4.5
tagbridge_publish_latency_seconds_count 8
# HELP tagbridge_spool_max_bytes The spool's bound (mqtt.spool.max_bytes): beyond it the oldest values are dropped.
# TYPE tagbridge_spool_max_bytes gauge
tagbridge_spool_max_bytes 1.048576e+06
# HELP tagbridge_spool_bytes Bytes the values not yet acknowledged by the broker take in the spool, record framing included (not the files' size): 0 once everything is delivered.
# TYPE tagbridge_spool_bytes gauge
tagbridge_spool_bytes 4096
# HELP tagbridge_published_values_total Values acknowledged by the broker, by PLC entry ((unknown): not known).
# TYPE tagbridge_published_values_total counter
tagbridge_published_values_total{plc="(unknown)"} 0
tagbridge_published_values_total{plc="press1"} 10
# HELP tagbridge_failed_values_total Values lost before reaching the broker's session, by PLC entry ((unknown): not known).
# TYPE tagbridge_failed_values_total counter
tagbridge_failed_values_total{plc="(unknown)"} 0
tagbridge_failed_values_total{plc="press1"} 1
# HELP tagbridge_dropped_values_total Values deleted from the spool unsent (spool full or corrupt, or set aside in the dead-letter file), by PLC entry ((unknown): not known).
# TYPE tagbridge_dropped_values_total counter
tagbridge_dropped_values_total{plc="(unknown)"} 3
tagbridge_dropped_values_total{plc="press1"} 2
`
	names := []string{"tagbridge_broker_connection_attempts_total", "tagbridge_broker_reconnects_total", "tagbridge_spool_max_bytes", "tagbridge_publish_latency_seconds",
		"tagbridge_spool_bytes", "tagbridge_published_values_total", "tagbridge_failed_values_total", "tagbridge_dropped_values_total"}
	if err := testutil.CollectAndCompare(metrics{s}, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(metrics{s}, "tagbridge_plc_values_per_second"); n != 0 {
		t.Errorf("%d tagbridge_plc_values_per_second series, want none", n)
	}
}
