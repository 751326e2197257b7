// Package soak holds the long fault runs that are too slow for CI: the
// tagbridge binary against node-opcua with 3 s secure channel tokens (with
// and without the server's clock 2 hours behind), and a 30 s broker outage
// at 10,000 values/s. Run them with scripts/soak/run; without TAGBRIDGE_SOAK
// set they are skipped. Each prints one line starting with "SOAK" with the
// counter values delivered, the values missing in gaps and the duplicates,
// and fails on a gap.
package soak

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tagbridge/tagbridge/certs"
	"github.com/tagbridge/tagbridge/internal/testkit"
	"github.com/tagbridge/tagbridge/scripts/opcua-peer/peerproc"
	"github.com/tagbridge/tagbridge/scripts/plcsim/simproc"

	"github.com/tagbridge/tagbridge/internal/testutil"
)

// duration is how long a soak runs: TAGBRIDGE_SOAK when it is a duration,
// else def. Unset, the soak is skipped.
func duration(t *testing.T, def time.Duration) time.Duration {
	t.Helper()
	v := os.Getenv("TAGBRIDGE_SOAK")
	if v == "" {
		t.Skip("soak run: set TAGBRIDGE_SOAK (1, or a duration), or use scripts/soak/run")
	}
	if d, err := time.ParseDuration(v); err == nil {
		return d
	}
	return def
}

var binary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "soak-*")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "tagbridge")
	_, self, _, _ := runtime.Caller(0)
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = filepath.Join(filepath.Dir(self), "..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build tagbridge: %v\n%s", err, out)
	}
	return bin, nil
})

// agent is the tagbridge binary running with a configuration.
type agent struct {
	cmd    *exec.Cmd
	logs   *buffer
	exited chan struct{}
}

type buffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func startAgent(t *testing.T, yml string) *agent {
	t.Helper()
	bin, err := binary()
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(conf, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	a := &agent{cmd: exec.Command(bin, "run", "-c", conf), logs: &buffer{}, exited: make(chan struct{})}
	a.cmd.Stderr = a.logs
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { a.cmd.Wait(); close(a.exited) }()
	t.Cleanup(func() {
		a.cmd.Process.Kill()
		<-a.exited
		if t.Failed() {
			t.Logf("tagbridge log (last 64 KiB):\n%s", tail(a.logs.String(), 64<<10))
		}
	})
	return a
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// stop sends SIGTERM and waits for the orderly stop.
func (a *agent) stop(t *testing.T) {
	t.Helper()
	a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.exited:
	case <-time.After(20 * time.Second):
		t.Error("tagbridge did not stop within 20 s of SIGTERM")
	}
}

// running fails the test if the agent has exited.
func (a *agent) running(t *testing.T) {
	t.Helper()
	select {
	case <-a.exited:
		t.Fatalf("tagbridge exited: %v", a.cmd.ProcessState)
	default:
	}
}

// counters tallies the Int32 counters arriving, per topic.
type counters struct {
	mu   sync.Mutex
	seen map[string]map[int64]int
	msgs int
	errs []string
}

func subscribe(t *testing.T, url, topic string) *counters {
	c := &counters{seen: map[string]map[int64]int{}}
	msgs := testkit.Subscribe(t, url, topic, 1)
	go func() {
		for m := range msgs {
			c.add(m)
		}
	}()
	return c
}

func (c *counters) add(m testkit.Message) {
	// The payload's keys come in a fixed order; decoding only what is
	// needed keeps the subscriber up with 10,000 values/s.
	var p struct {
		Type  string          `json:"type"`
		Value json.RawMessage `json:"value"`
	}
	err := json.Unmarshal(m.Payload, &p)
	var v int64
	if err == nil && p.Type == "Int32" {
		err = json.Unmarshal(p.Value, &v)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.msgs++
	switch {
	case err != nil:
		if len(c.errs) < 10 {
			c.errs = append(c.errs, fmt.Sprintf("%s: %q: %v", m.Topic, m.Payload, err))
		}
	case p.Type == "Int32":
		if c.seen[m.Topic] == nil {
			c.seen[m.Topic] = map[int64]int{}
		}
		c.seen[m.Topic][v]++
	}
}

// summary of the counters: distinct values, values missing between each
// counter's first and last (gaps), duplicates.
type summary struct {
	counters, values, missing, gaps, dups int
	worst                                 string   // the largest gap
	list                                  []string // the first gaps, by counter
}

func (c *counters) summary() summary {
	c.mu.Lock()
	defer c.mu.Unlock()
	var s summary
	worst := int64(0)
	for topic, seen := range c.seen {
		s.counters++
		vals := make([]int64, 0, len(seen))
		for v, n := range seen {
			vals = append(vals, v)
			s.dups += n - 1
		}
		slices.Sort(vals)
		s.values += len(vals)
		for i := 1; i < len(vals); i++ {
			if d := vals[i] - vals[i-1] - 1; d > 0 {
				s.gaps++
				s.missing += int(d)
				s.list = append(s.list, fmt.Sprintf("%s: %d after %d", topic[strings.LastIndex(topic, "/")+1:], vals[i], vals[i-1]))
				if d > worst {
					worst = d
					s.worst = fmt.Sprintf("%s: %d missing after %d", topic, d, vals[i-1])
				}
			}
		}
	}
	return s
}

func (c *counters) total() (msgs, values int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, seen := range c.seen {
		values += len(seen)
	}
	return c.msgs, values
}

// mqttSide is what the agent logged of its broker side when it stopped:
// values published (acknowledged) and failed, to compare with what the
// subscriber got and tell the MQTT side's losses from the OPC UA side's.
func (a *agent) mqttSide() string {
	var last struct {
		Published *uint64 `json:"published"`
		Failed    uint64  `json:"failed"`
	}
	for line := range strings.Lines(a.logs.String()) {
		var l struct {
			Published *uint64 `json:"published"`
			Failed    uint64  `json:"failed"`
		}
		if json.Unmarshal([]byte(line), &l) == nil && l.Published != nil {
			last = l
		}
	}
	if last.Published == nil {
		return "the agent logged no published count"
	}
	return fmt.Sprintf("the agent published %d, failed %d", *last.Published, last.Failed)
}

// report logs the SOAK line and fails on gaps or bad payloads.
func report(t *testing.T, name string, c *counters, extra string) {
	t.Helper()
	s := c.summary()
	c.mu.Lock()
	for _, e := range c.errs {
		t.Error(e)
	}
	c.mu.Unlock()
	line := fmt.Sprintf("SOAK %s: %d counter values on %d counters, %d missing in %d gaps, %d duplicates; %s",
		name, s.values, s.counters, s.missing, s.gaps, s.dups, extra)
	fmt.Println(line) // for scripts/soak/run, also without -v
	if s.gaps > 0 {
		slices.Sort(s.list)
		t.Errorf("%s: %d values missing in %d gaps; largest: %s; the first: %s", name, s.missing, s.gaps, s.worst, strings.Join(s.list[:min(len(s.list), 20)], ", "))
	}
}

// quiet waits until no message has arrived for a second, after the agent
// stopped, and returns the number of messages.
func (c *counters) quiet(t *testing.T) int {
	t.Helper()
	last, _ := c.total()
	testkit.WaitUntil(t, "the subscriber to go quiet", 30*time.Second, func() bool {
		time.Sleep(time.Second)
		n, _ := c.total()
		defer func() { last = n }()
		return n == last
	})
	return last
}

// secureTokens runs the agent against node-opcua with 3 s tokens for d,
// the peer's clock shifted by offset.
func secureTokens(t *testing.T, name string, d, offset time.Duration) {
	const tags = 40
	peer := peerproc.Start(t, peerproc.Options{Tags: tags, Policies: []string{"Basic256Sha256"}, Modes: []string{"SignAndEncrypt"},
		TokenLifetime: 3 * time.Second, MinTokenLifetime: time.Second, ClockOffset: offset})
	broker := testkit.StartBroker(t)
	dir := t.TempDir()
	certFile, keyFile := testkit.KeyPairFiles(t, dir, certs.Options{AgentID: "soak", Hostname: "localhost"})
	got := subscribe(t, broker.URL(), "tagbridge/soak/#")
	a := startAgent(t, fmt.Sprintf(`agent: {id: soak, allowed_cert_dirs: [%[1]s], pki_dir: %[1]s/pki, spool_dir: %[1]s/spool}
mqtt: {url: %[2]s, qos: 1}
plcs:
  - name: peer
    endpoint: %[3]s
    publishing_interval: 20ms
    sampling_interval: 0s
    token_lifetime: 3s
    reconnect: {min: 1s, max: 10s}
    security: {policy: Basic256Sha256, mode: SignAndEncrypt, certificate_file: %[4]s, key_file: %[5]s, trust: fingerprint, auto_accept: true}
%[6]s`, dir, broker.URL(), peer.Endpoint, certFile, keyFile, testutil.Indent(simproc.Tags(t, tags), "    ")))

	testkit.WaitUntil(t, "every counter", 60*time.Second, func() bool {
		got.mu.Lock()
		defer got.mu.Unlock()
		return len(got.seen) == tags/4
	})
	start := time.Now()
	// The soak itself: values must keep flowing across the renewals.
	for end := start.Add(d); time.Now().Before(end); {
		time.Sleep(time.Second)
		a.running(t)
	}
	a.stop(t)
	got.quiet(t)
	renewals := strings.Count(peer.Log(), "Renew requested")
	sessions := strings.Count(a.logs.String(), "plc session established")
	msgs, _ := got.total()
	report(t, name, got, fmt.Sprintf("%v with 3 s tokens, server clock %v; %d token renewals seen by the peer, %d session(s) established; %s, the subscriber got %d",
		d.Round(time.Second), offset, renewals, sessions, a.mqttSide(), msgs))
}

// TestSoakShortTokens: 3 s secure channel tokens for 2 minutes: no gap.
func TestSoakShortTokens(t *testing.T) {
	secureTokens(t, "tokens-3s", duration(t, 2*time.Minute), 0)
}

// TestSoakClockBehind: the server's clock 2 hours behind, 3 s tokens: no gap.
func TestSoakClockBehind(t *testing.T) {
	secureTokens(t, "clock-2h-behind", duration(t, 2*time.Minute), -2*time.Hour)
}

// TestSoakBrokerOutage stops the broker for 30 s while 10,000 values/s flow
// (1,000 tags every 100 ms): nothing is lost.
func TestSoakBrokerOutage(t *testing.T) {
	outage := duration(t, 30*time.Second)
	const tags = 1000
	broker := testkit.StartBroker(t)
	plc := simproc.Start(t, "-tags", fmt.Sprint(tags), "-interval", "100ms")
	got := subscribe(t, broker.URL(), "tagbridge/soak/#")
	a := startAgent(t, fmt.Sprintf(`agent: {id: soak, spool_dir: %s}
mqtt: {url: %s, qos: 1}
plcs:
  - name: plc
    endpoint: %s
    publishing_interval: 20ms
    sampling_interval: 0s
    reconnect: {min: 1s, max: 10s}
%s`, t.TempDir(), broker.URL(), plc.Endpoint, testutil.Indent(simproc.Tags(t, tags), "    ")))

	testkit.WaitUntil(t, "every counter", 60*time.Second, func() bool {
		got.mu.Lock()
		defer got.mu.Unlock()
		return len(got.seen) == tags/4
	})
	time.Sleep(3 * time.Second) // warm up before the fault
	_, before := got.total()
	broker.Stop()
	stopped := time.Now()
	time.Sleep(outage)
	a.running(t)
	broker.Restart()
	restarted := time.Now()
	// Caught up: the counters deliver again at the PLC's rate, with the
	// whole outage's values in between.
	want := before + int(time.Since(stopped)/(100*time.Millisecond))*tags/4
	testkit.WaitUntil(t, "the backlog", 5*time.Minute, func() bool { _, n := got.total(); return n >= want })
	caughtUp := time.Since(restarted)
	time.Sleep(3 * time.Second) // and live again
	a.stop(t)
	msgs := got.quiet(t)
	report(t, "broker-outage", got, fmt.Sprintf("broker down %v at %d values/s; backlog delivered %v after the restart; %s, the subscriber got %d",
		restarted.Sub(stopped).Round(time.Millisecond), tags*10, caughtUp.Round(time.Millisecond), a.mqttSide(), msgs))
}
