package publish

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/rs/zerolog"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/config"
	"github.com/tagbridge/tagbridge/internal/testkit"
	"github.com/tagbridge/tagbridge/payload"
)

const wait = 20 * time.Second

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// start runs p until the test ends; the returned channel gives Run's result.
func start(t *testing.T, p *Publisher, in <-chan collectors.Event) <-chan error {
	done := make(chan error, 1)
	go func() { done <- p.Run(t.Context(), in) }()
	return done
}

func result(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(wait):
		t.Fatalf("Run did not return within %v", wait)
		return nil
	}
}

func receive(t *testing.T, msgs <-chan testkit.Message, n int) []testkit.Message {
	t.Helper()
	got := make([]testkit.Message, 0, n)
	timeout := time.After(wait)
	for len(got) < n {
		select {
		case m := <-msgs:
			got = append(got, m)
		case <-timeout:
			t.Fatalf("received %d of %d messages within %v", len(got), n, wait)
		}
	}
	return got
}

// newPublisher makes a Publisher, with a spool of its own unless cfg names one.
func newPublisher(t *testing.T, cfg *config.Config, log zerolog.Logger) *Publisher {
	t.Helper()
	if cfg.Agent.SpoolDir == "" {
		cfg.Agent.SpoolDir = t.TempDir()
	}
	p, err := New(cfg, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPublishQoS(t *testing.T) {
	ts := time.Date(2026, 11, 22, 10, 15, 30, 123456000, time.UTC)
	samples := []collectors.Sample{
		{PLC: "press1", Tag: "temperature", Node: "ns=2;s=Line1.Temp", Value: 21.5, Type: collectors.TypeDouble, SourceTime: ts, ServerTime: ts.Add(time.Millisecond)},
		{PLC: "press1", Tag: "pressure", Node: "ns=2;s=Line1.P", Value: int64(-3), Type: collectors.TypeInt64, SourceTime: ts},
		{PLC: "press1", Tag: "temperature", Node: "ns=2;s=Line1.Temp", Value: math.NaN(), Type: collectors.TypeDouble, StatusCode: 0x808B0000},
		{PLC: "press1", Tag: "temperature", Node: "ns=2;s=Line1.Temp", Value: "ü \"quoted\"", Type: collectors.TypeString},
		{PLC: "press1", Tag: "temperature", Node: "ns=2;s=Line1.Temp", Value: []any{true, []byte{1, 2}}, Type: collectors.TypeVariant},
		// Not in the config: published on mqtt.topic, names made safe.
		{PLC: "ghost", Tag: "x+y/z", Node: "i=85", Value: uint32(7), Type: collectors.TypeUInt32},
	}
	wantTopics := []string{
		"tagbridge/a1/press1/temperature",
		"plant/press1/p/pressure",
		"tagbridge/a1/press1/temperature",
		"tagbridge/a1/press1/temperature",
		"tagbridge/a1/press1/temperature",
		"tagbridge/a1/ghost/x_y_z",
	}
	for _, qos := range []int{0, 1, 2} {
		t.Run(fmt.Sprintf("qos%d", qos), func(t *testing.T) {
			b := testkit.StartBroker(t)
			msgs := testkit.Subscribe(t, b.URL(), "#", byte(qos))
			log, _ := testkit.NewLogger(t, "publisher")
			p := newPublisher(t, testkit.Config(b.URL(), qos), log)
			in := make(chan collectors.Event)
			done := start(t, p, in)
			for _, s := range samples {
				in <- collectors.Event{Batch: collectors.Batch{s}}
			}
			close(in)
			if err := result(t, done); err != nil {
				t.Fatalf("Run: %v", err)
			}
			// Run returned only once the broker had everything.
			if st := p.Stats(); st.Published != uint64(len(samples)) || st.Failed != 0 {
				t.Errorf("Stats after Run = %+v, want %d published", st, len(samples))
			}
			for i, m := range receive(t, msgs, len(samples)) {
				if want := payload.AppendJSON(nil, &samples[i]); m.Topic != wantTopics[i] || !sameJSON(m.Payload, want) || m.Retained {
					t.Errorf("message %d:\n got %s %s retained=%v\nwant %s %s", i, m.Topic, m.Payload, m.Retained, wantTopics[i], want)
				}
			}
		})
	}
}

func TestPublishRetain(t *testing.T) {
	for _, retain := range []bool{true, false} {
		t.Run(fmt.Sprintf("retain=%v", retain), func(t *testing.T) {
			b := testkit.StartBroker(t)
			log, _ := testkit.NewLogger(t, "publisher")
			cfg := testkit.Config(b.URL(), 1)
			cfg.MQTT.Retain = retain
			p := newPublisher(t, cfg, log)
			in := make(chan collectors.Event, 1)
			s := collectors.Sample{PLC: "press1", Tag: "temperature", Value: 1.5, Type: collectors.TypeDouble}
			in <- collectors.Event{Batch: collectors.Batch{s}}
			close(in)
			if err := result(t, start(t, p, in)); err != nil {
				t.Fatalf("Run: %v", err)
			}
			// A retained marker, published after the value: on subscribing,
			// the broker sends every retained message before live ones.
			sendRaw(t, b.URL(), "marker", true)
			msgs := testkit.Subscribe(t, b.URL(), "#", 1)
			sendRaw(t, b.URL(), "live", false)
			var got []string
			for len(got) == 0 || !strings.HasPrefix(got[len(got)-1], "live ") {
				m := receive(t, msgs, 1)[0]
				got = append(got, fmt.Sprintf("%s retained=%v", m.Topic, m.Retained))
				if m.Topic == "tagbridge/a1/press1/temperature" && !sameJSON(m.Payload, payload.AppendJSON(nil, &s)) {
					t.Errorf("payload %s", m.Payload)
				}
			}
			want := []string{"marker retained=true", "live retained=false"}
			if retain {
				want = append([]string{"tagbridge/a1/press1/temperature retained=true"}, want...)
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") && !(retain && sameSet(got, want)) {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

// sameSet allows retained messages to come in any order.
func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[string]int{}
	for _, s := range a {
		seen[s]++
	}
	for _, s := range b {
		seen[s]--
	}
	for _, n := range seen {
		if n != 0 {
			return false
		}
	}
	return true
}

// sendRaw publishes with a plain paho client, at QoS 1.
func sendRaw(t *testing.T, url, topic string, retain bool) {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID(testkit.ClientID("raw-")))
	if tok := c.Connect(); !tok.WaitTimeout(wait) || tok.Error() != nil {
		t.Fatalf("raw connect: %v", tok.Error())
	}
	defer c.Disconnect(100)
	if tok := c.Publish(topic, 1, retain, "x"); !tok.WaitTimeout(wait) || tok.Error() != nil {
		t.Fatalf("raw publish: %v", tok.Error())
	}
}

// sameJSON compares two AppendJSON messages, apart from a "time" that is
// the agent's clock (a sample without timestamps): it differs per call.
func sameJSON(a, b []byte) bool {
	agentTime := regexp.MustCompile(`,"time":"[^"]*"}$`)
	if bytes.Contains(a, []byte(`"source_time"`)) || bytes.Contains(a, []byte(`"server_time"`)) {
		return bytes.Equal(a, b)
	}
	return bytes.Equal(agentTime.ReplaceAll(a, []byte("}")), agentTime.ReplaceAll(b, []byte("}")))
}

func seqSample(i int) collectors.Sample {
	return collectors.Sample{PLC: "press1", Tag: "temperature", Value: int64(i), Type: collectors.TypeInt64}
}

func seqOf(t *testing.T, m testkit.Message) int {
	t.Helper()
	const key = `"value":`
	i := bytes.Index(m.Payload, []byte(key))
	if i < 0 {
		t.Fatalf("no value in %s", m.Payload)
	}
	rest := m.Payload[i+len(key):]
	// Int64 values are JSON strings (see AppendJSON).
	n, err := strconv.Atoi(strings.Trim(string(rest[:bytes.IndexByte(rest, ',')]), `"`))
	if err != nil {
		t.Fatalf("value in %s: %v", m.Payload, err)
	}
	return n
}

func TestPublishOrder(t *testing.T) {
	const n = 10000
	b := testkit.StartBroker(t)
	msgs := testkit.Subscribe(t, b.URL(), "tagbridge/#", 1)
	log, _ := testkit.NewLogger(t, "publisher")
	p := newPublisher(t, testkit.Config(b.URL(), 1), log)
	in := make(chan collectors.Event, 256)
	done := start(t, p, in)
	go func() {
		for i := range n {
			in <- collectors.Event{Batch: collectors.Batch{seqSample(i)}}
		}
		close(in)
	}()
	for i, m := range receive(t, msgs, n) {
		if got := seqOf(t, m); got != i {
			t.Fatalf("message %d carries %d", i, got)
		}
	}
	if err := result(t, done); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if st := p.Stats(); st.Published != n {
		t.Errorf("Stats = %+v, want %d published", st, n)
	}
}

func TestPublishPassword(t *testing.T) {
	b := testkit.StartBroker(t, testkit.WithUser("tagbridge", "s3cret"))
	url := strings.Replace(b.URL(), "tcp://", "tcp://tagbridge:s3cret@", 1)

	t.Run("right", func(t *testing.T) {
		msgs := testkit.Subscribe(t, url, "#", 1)
		log, _ := testkit.NewLogger(t, "publisher")
		cfg := testkit.Config(b.URL(), 1)
		cfg.MQTT.Username, cfg.MQTT.Password = "tagbridge", "s3cret"
		p := newPublisher(t, cfg, log)
		in := make(chan collectors.Event, 1)
		in <- collectors.Event{Batch: collectors.Batch{seqSample(1)}}
		close(in)
		if err := result(t, start(t, p, in)); err != nil {
			t.Fatalf("Run: %v", err)
		}
		if m := receive(t, msgs, 1)[0]; seqOf(t, m) != 1 {
			t.Errorf("got %s", m.Payload)
		}
	})

	t.Run("wrong", func(t *testing.T) {
		log, logs := testkit.NewLogger(t, "publisher")
		cfg := testkit.Config(b.URL(), 1)
		cfg.MQTT.Username, cfg.MQTT.Password = "tagbridge", "wr0ng-pa55"
		p := newPublisher(t, cfg, log)
		in := make(chan collectors.Event, 1)
		in <- collectors.Event{Batch: collectors.Batch{seqSample(1)}}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- p.Run(ctx, in) }()
		logs.WaitFor(t, wait, `"level":"warn"`, "broker refused the credentials", "not Authorized")
		if p.Stats().Connected {
			t.Error("connected with a wrong password")
		}
		cancel() // the hard stop leaves the message in the spool
		if err := result(t, done); err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
		if st := p.Stats(); st.Spooled != 1 {
			t.Errorf("Stats = %+v, want 1 spooled", st)
		}
		if strings.Contains(logs.String(), "wr0ng-pa55") {
			t.Error("password in the log")
		}
		if n := strings.Count(logs.String(), "broker refused the credentials"); n != 1 {
			t.Errorf("connect failure logged %d times, want once", n)
		}
	})
}

// TestPublishOutage stops the broker mid-stream: what is sent meanwhile
// arrives after it restarts, in order.
func TestPublishOutage(t *testing.T) {
	b := testkit.StartBroker(t)
	msgs := testkit.Subscribe(t, b.URL(), "tagbridge/#", 1)
	log, logs := testkit.NewLogger(t, "publisher")
	p := newPublisher(t, testkit.Config(b.URL(), 1), log)
	in := make(chan collectors.Event, 2000) // room for all sent during the outage
	done := start(t, p, in)
	next := 0
	send := func(n int) {
		for range n {
			in <- collectors.Event{Batch: collectors.Batch{seqSample(next)}}
			next++
		}
	}

	send(100)
	got := receive(t, msgs, 100)
	// Stop while messages are in flight, then keep sending.
	send(900)
	b.Stop()
	logs.WaitFor(t, wait, "connection to broker lost")
	send(200)
	// A few seconds down: restart once the second attempt has begun; the
	// third comes 2 s later.
	logs.WaitFor(t, wait, "cannot connect to broker", "connection refused")
	logs.WaitFor(t, wait, `"attempt":1`, `"reconnect":true`)
	if st := p.Stats(); st.Connected || st.ConnectAttempts < 2 || st.Reconnects != 0 {
		t.Errorf("broker down: Stats = %+v, want not connected, at least 2 attempts, no reconnect yet", st)
	}
	b.Restart()
	send(100)
	close(in)
	if err := result(t, done); err != nil {
		t.Fatalf("Run: %v", err)
	}

	// Messages in flight when the broker went away may come twice (QoS 1);
	// none is missing and none overtakes an earlier one.
	seen := map[int]bool{}
	last, dups := -1, 0
	var order []int
	defer func() {
		if t.Failed() {
			t.Logf("arrival runs: %s", runs(order))
		}
	}()
	check := func(m testkit.Message) {
		n := seqOf(t, m)
		order = append(order, n)
		if seen[n] {
			dups++
			return
		}
		if n != last+1 {
			t.Errorf("%d arrived after %d", n, last)
		}
		seen[n], last = true, n
	}
	for _, m := range got {
		check(m)
	}
	timeout := time.After(wait)
	for len(seen) < next {
		select {
		case m := <-msgs:
			check(m)
		case <-timeout:
			t.Fatalf("received up to %d of %d within %v", last, next-1, wait)
		}
	}
	if st := p.Stats(); st.Published != uint64(next) || st.Failed != 0 {
		t.Errorf("Stats = %+v, want %d published", st, next)
	}
	// The start, at least one refused attempt, the reconnect.
	if st := p.Stats(); st.ConnectAttempts < 3 || st.Reconnects != 1 {
		t.Errorf("Stats = %+v, want at least 3 connection attempts and 1 reconnect", st)
	}
	// Every value is measured once; the 200 sent during the outage
	// waited for the broker's restart.
	if h := p.Stats().PublishLatency; h.Count != uint64(next) || h.Buckets[0.1] > uint64(next-200) || h.Sum <= 0 {
		t.Errorf("publish latency %+v, want %d values measured, at least 200 over 0.1 s", h, next)
	}
	t.Logf("%d messages in order, %d duplicates", next, dups)
}

// TestPublishBrokerDownAtStart: Run keeps trying, holds what it is given,
// and delivers it once the broker is up.
func TestPublishBrokerDownAtStart(t *testing.T) {
	for _, qos := range []int{0, 1} {
		t.Run(fmt.Sprintf("qos%d", qos), func(t *testing.T) {
			b := testkit.StartBroker(t)
			// The subscriber's session outlives the broker's restart.
			msgs := testkit.Subscribe(t, b.URL(), "#", 1)
			b.Stop()
			log, logs := testkit.NewLogger(t, "publisher")
			p := newPublisher(t, testkit.Config(b.URL(), qos), log)
			in := make(chan collectors.Event, 10)
			done := start(t, p, in)
			for i := range 10 {
				in <- collectors.Event{Batch: collectors.Batch{seqSample(i)}}
			}
			close(in)
			logs.WaitFor(t, wait, "cannot connect to broker", "connection refused")
			b.Restart()
			if err := result(t, done); err != nil {
				t.Fatalf("Run: %v", err)
			}
			if st := p.Stats(); st.Published != 10 || st.Failed != 0 {
				t.Errorf("Stats = %+v, want 10 published", st)
			}
			// A connection refused at start is no reconnect.
			if st := p.Stats(); st.ConnectAttempts < 2 || st.Reconnects != 0 || st.SpoolMaxBytes != config.DefaultSpoolMaxBytes {
				t.Errorf("Stats = %+v, want at least 2 connection attempts, no reconnect, spool bound %d", st, config.DefaultSpoolMaxBytes)
			}
			if qos == 0 {
				return // the broker does not queue QoS 0 for a subscriber still reconnecting
			}
			for i, m := range receive(t, msgs, 10) {
				if n := seqOf(t, m); n != i {
					t.Errorf("message %d carries %d", i, n)
				}
			}
		})
	}
}

// TestPublishHardStop: with no broker, cancelling ctx returns at once.
func TestPublishHardStop(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "tcp://" + l.Addr().String()
	l.Close() // nothing listens there now
	log, logs := testkit.NewLogger(t, "publisher")
	p := newPublisher(t, testkit.Config(url, 1), log)
	in := make(chan collectors.Event)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, in) }()
	logs.WaitFor(t, wait, "cannot connect to broker")
	cancel()
	if err := result(t, done); err != nil {
		t.Errorf("Run = %v, want nil: nothing was pending", err)
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name   string
		change func(*config.Config)
		want   string
	}{
		{"qos", func(c *config.Config) { c.MQTT.QoS = 3 }, "qos 3: must be 0, 1 or 2"},
		{"scheme", func(c *config.Config) { c.MQTT.URL = "http://u:pw@h:1" }, `url "http://u:xxxxx@h:1": scheme must be tcp, ssl, ws or wss`},
		{"client id", func(c *config.Config) { c.MQTT.ClientID = "" }, "client_id must be set"},
		{"wildcard", func(c *config.Config) { c.PLCs[0].Tags[1].Topic = "a/+/{tag}" }, `plc "press1" tag "pressure": topic "a/+/{tag}": renders to "a/+/pressure": wildcards + and # are not allowed when publishing`},
		{"empty", func(c *config.Config) { c.MQTT.Topic = "{plc}"; c.PLCs[0].Name = "" }, `plc "" tag "temperature": topic "{plc}": renders empty`},
		{"ca file", func(c *config.Config) { c.MQTT.URL = "ssl://h:8883"; c.MQTT.TLS.CAFile = "/nonexistent/ca.pem" }, "tls: ca_file: lstat /nonexistent: no such file or directory"},
		{"key pair", func(c *config.Config) { c.MQTT.URL = "wss://h:443"; c.MQTT.TLS.CertFile = "/nonexistent/c.pem" }, "tls: cert_file: lstat /nonexistent: no such file or directory"},
		{"outside the allowed directories", func(c *config.Config) { c.MQTT.URL = "ssl://h:8883"; c.MQTT.TLS.CAFile = "/etc/ca.pem" },
			"tls: ca_file: /etc/ca.pem is not in an allowed directory (/nonexistent)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testkit.Config("tcp://127.0.0.1:1883", 1)
			cfg.Agent.AllowedCertDirs = []string{"/nonexistent"}
			tt.change(cfg)
			_, err := New(cfg, zerolog.Nop(), nil)
			if err == nil || err.Error() != tt.want {
				t.Errorf("New = %v\nwant %s", err, tt.want)
			}
		})
	}
}

// runs condenses a sequence: 0-99 100 105-200.
func runs(seq []int) string {
	var b strings.Builder
	for i := 0; i < len(seq); {
		j := i
		for j+1 < len(seq) && seq[j+1] == seq[j]+1 {
			j++
		}
		if j > i {
			fmt.Fprintf(&b, "%d-%d ", seq[i], seq[j])
		} else {
			fmt.Fprintf(&b, "%d ", seq[i])
		}
		i = j + 1
	}
	return b.String()
}

// TestNewSpoolDir: a spool directory that cannot be created, or that another
// agent uses, stops New with an error naming it.
func TestNewSpoolDir(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testkit.Config("tcp://127.0.0.1:1883", 1)
	cfg.Agent.SpoolDir = filepath.Join(file, "spool")
	_, err := New(cfg, zerolog.Nop(), nil)
	if want := "spool directory " + cfg.Agent.SpoolDir + ": mkdir " + file + ": not a directory"; err == nil || err.Error() != want {
		t.Errorf("New = %v\nwant %s", err, want)
	}

	cfg.Agent.SpoolDir = t.TempDir()
	p := newPublisher(t, cfg, zerolog.Nop())
	defer p.spool.Close()
	_, err = New(cfg, zerolog.Nop(), nil)
	if want := "spool directory " + cfg.Agent.SpoolDir + ": in use by another process"; err == nil || err.Error() != want {
		t.Errorf("second New = %v\nwant %s", err, want)
	}
}
