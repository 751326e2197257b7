package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/ua"
	"github.com/rs/zerolog"

	"github.com/tagbridge/tagbridge/internal/testkit"
	"github.com/tagbridge/tagbridge/scripts/plcsim/simproc"
	"github.com/tagbridge/tagbridge/spool"

	"github.com/tagbridge/tagbridge/internal/testutil"
)

// TestKill9DuringBrokerOutage: values flow to the broker; the broker
// stops; the agent spools, is killed with SIGKILL, starts again while the
// broker is still down and keeps spooling; the broker comes back. Every
// counter arrives complete from its first value up to the last value
// spooled before the kill, and that last value is within a second of
// what the PLC had generated when the agent was killed (values still in the
// agent's memory are lost on a crash; see README, Store and forward).
func TestKill9DuringBrokerOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	// 10 Int32 counters, 200 values/s; changes 200 ms apart, so that a
	// stalled agent under the race detector does not make plcsim merge
	// values (it keeps only an item's latest value between publishes).
	const tags = 40
	plc := simproc.Start(t, "-tags", fmt.Sprint(tags), "-interval", "200ms")
	broker := testkit.StartBroker(t)
	got := &counterSet{seen: map[string]map[int64]int{}, changed: make(chan struct{})}
	go func() {
		for m := range testkit.Subscribe(t, broker.URL(), "tagbridge/kill/#", 1) {
			got.add(t, m)
		}
	}()
	spool := t.TempDir()
	var tagList strings.Builder
	for line := range strings.Lines(simproc.Tags(t, tags)) {
		fmt.Fprintf(&tagList, "    %s", line)
	}
	cfg := writeConfig(t, fmt.Sprintf(`agent: {id: kill, spool_dir: %s}
mqtt: {url: %s, qos: 1, spool: {sync_interval: 50ms}}
plcs:
  - name: plc
    endpoint: %s
    publishing_interval: 20ms
    sampling_interval: 0s
    reconnect: {min: 200ms, max: 1s}
%s`, spool, broker.URL(), plc.Endpoint, tagList.String()))

	agent := runAgent(t, bin, cfg)
	got.waitUntil(t, "every counter streaming", 30*time.Second, func() bool {
		return len(got.seen) == tags/4 && got.minCount() >= 5
	})
	broker.Stop()
	// About 1.5 s of values (200/s of some 250 bytes) pile up in the
	// spool, unacknowledged.
	base := agent.spooledFor(spool)
	got.waitUntil(t, "values spooled in the outage", 10*time.Second, func() bool { return agent.spooledFor(spool) >= base+75_000 })

	plcAtKill := readCounter(t, plc.Endpoint, "ns=1;s=Int32.0001")
	agent.kill()
	spooled := spooledCounters(t, spool)
	if len(spooled) != tags/4 {
		t.Fatalf("the spool holds %d counters, want %d", len(spooled), tags/4)
	}

	// Restarted with the broker still down, it spools on after the old
	// backlog; then the broker comes back.
	agent = runAgent(t, bin, cfg)
	agent.waitLog(t, "plc session established", 30*time.Second)
	broker.Restart()
	got.waitUntil(t, "every spooled value, and newer ones", 60*time.Second, func() bool {
		for topic, vals := range spooled {
			last := vals[len(vals)-1]
			if got.seen[topic][last] == 0 || got.max(topic) < last+10 {
				return false
			}
		}
		return true
	})
	agent.stop(t)

	got.mu.Lock()
	defer got.mu.Unlock()
	for _, e := range got.errs {
		t.Error(e)
	}
	missing, dups, values := 0, 0, 0
	for topic, vals := range spooled {
		first, last := got.min(topic), vals[len(vals)-1]
		for v := first; v <= last; v++ {
			if got.seen[topic][v] == 0 {
				if missing++; missing <= 10 {
					t.Errorf("%s: %d never arrived (delivered from %d; spooled up to %d before the kill)", topic, v, first, last)
				}
			}
		}
		for _, n := range got.seen[topic] {
			dups += n - 1
			values++
		}
	}
	lastSpooled := spooled["tagbridge/kill/plc/int32_0001"]
	unspooled := plcAtKill - lastSpooled[len(lastSpooled)-1]
	if unspooled > 5 {
		t.Errorf("int32_0001: the PLC was at %d when the agent was killed, the spool only at %d", plcAtKill, lastSpooled[len(lastSpooled)-1])
	}
	t.Logf("%d counter values on %d counters, %d missing, %d duplicates; at the kill the spool was %d value(s) behind the PLC's int32_0001",
		values, len(spooled), missing, dups, unspooled)
}

// counterSet counts each Int32 counter value arriving, per topic.
type counterSet struct {
	mu      sync.Mutex
	seen    map[string]map[int64]int
	errs    []string
	changed chan struct{}
}

func (c *counterSet) add(t *testing.T, m testkit.Message) {
	var p struct {
		Type  string          `json:"type"`
		Value json.RawMessage `json:"value"`
	}
	var v int64
	err := json.Unmarshal(m.Payload, &p)
	if err == nil && p.Type == "Int32" {
		err = json.Unmarshal(p.Value, &v)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	defer func() { close(c.changed); c.changed = make(chan struct{}) }()
	switch {
	case err != nil:
		c.errs = append(c.errs, fmt.Sprintf("%s: %q: %v", m.Topic, m.Payload, err))
	case p.Type == "Int32":
		if c.seen[m.Topic] == nil {
			c.seen[m.Topic] = map[int64]int{}
		}
		c.seen[m.Topic][v]++
	}
}

func (c *counterSet) minCount() int {
	n := -1
	for _, s := range c.seen {
		if n < 0 || len(s) < n {
			n = len(s)
		}
	}
	return n
}

func (c *counterSet) min(topic string) int64 {
	m, ok := int64(0), false
	for v := range c.seen[topic] {
		if !ok || v < m {
			m, ok = v, true
		}
	}
	return m
}

func (c *counterSet) max(topic string) int64 {
	m := int64(-1)
	for v := range c.seen[topic] {
		m = max(m, v)
	}
	return m
}

// waitUntil checks cond whenever a value arrives, and every 100 ms.
func (c *counterSet) waitUntil(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	testkit.WaitLocked(t, what, d, &c.mu, &c.changed, cond)
}

// agentProc is the tagbridge binary running.
type agentProc struct {
	cmd    *exec.Cmd
	logs   *testkit.Log
	exited chan struct{}
}

func runAgent(t *testing.T, bin, cfg string) *agentProc {
	t.Helper()
	return startAgentProc(t, exec.Command(bin, "run", "-c", cfg))
}

// startAgentProc starts cmd (the agent, or a shell that execs it) and
// kills it when the test ends, showing the end of its log if the test
// failed.
func startAgentProc(t *testing.T, cmd *exec.Cmd) *agentProc {
	t.Helper()
	a := &agentProc{cmd: cmd, logs: &testkit.Log{}, exited: make(chan struct{})}
	a.cmd.Stderr = a.logs
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { a.cmd.Wait(); close(a.exited) }()
	t.Cleanup(func() {
		a.kill()
		if t.Failed() {
			log := a.logs.String()
			if len(log) > 64<<10 {
				log = "...\n" + log[len(log)-64<<10:]
			}
			t.Logf("tagbridge (pid %d) exit %v, log:\n%s", a.cmd.Process.Pid, a.cmd.ProcessState, log)
		}
	})
	return a
}

func (a *agentProc) kill() {
	a.cmd.Process.Signal(syscall.SIGKILL)
	<-a.exited
}

func (a *agentProc) stop(t *testing.T) {
	t.Helper()
	a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.exited:
	case <-time.After(15 * time.Second):
		t.Error("tagbridge did not stop within 15 s of SIGTERM")
	}
}

func (a *agentProc) waitLog(t *testing.T, s string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !strings.Contains(a.logs.String(), s) {
		select {
		case <-a.exited:
			t.Fatalf("tagbridge exited before logging %q", s)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("tagbridge did not log %q within %v", s, d)
		}
	}
}

// spooledFor returns the bytes in the spool's segment files; it fails
// nothing, so that it can serve in a wait condition.
func (a *agentProc) spooledFor(dir string) int64 {
	files, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	var n int64
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// spooledCounters copies the spool of a killed agent and reads the copy as
// the next start will: the Int32 counter values it holds, per topic in order.
func spooledCounters(t *testing.T, dir string) map[string][]int64 {
	t.Helper()
	cp := t.TempDir()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		testutil.CopyFile(t, filepath.Join(dir, e.Name()), filepath.Join(cp, e.Name()), 0o600)
	}
	s, err := spool.Open(cp, 1<<30, zerolog.Nop())
	if err != nil {
		t.Fatalf("open the killed agent's spool: %v", err)
	}
	defer s.Close()
	out := map[string][]int64{}
	for {
		topic, payload, seq, ok := s.Peek()
		if !ok {
			return out
		}
		var p struct {
			Type  string `json:"type"`
			Value int64  `json:"value"`
		}
		if err := json.Unmarshal(payload, &p); err == nil && p.Type == "Int32" {
			vals := out[topic]
			if n := len(vals); n > 0 && p.Value != vals[n-1]+1 {
				t.Errorf("%s: spooled %d after %d", topic, p.Value, vals[n-1])
			}
			out[topic] = append(vals, p.Value)
		}
		s.Advance(seq)
	}
}

// readCounter reads a counter from the PLC with a client of our own: the
// value it had generated at that moment.
func readCounter(t *testing.T, endpoint, node string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, err := opcua.NewClient(endpoint, opcua.SecurityMode(ua.MessageSecurityModeNone), opcua.AutoReconnect(false))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Connect(ctx); err != nil {
		t.Fatalf("read %s: connect to %s: %v", node, endpoint, err)
	}
	defer c.Close(context.WithoutCancel(ctx))
	resp, err := c.Read(ctx, &ua.ReadRequest{NodesToRead: []*ua.ReadValueID{{NodeID: ua.MustParseNodeID(node), AttributeID: ua.AttributeIDValue}}})
	if err != nil || len(resp.Results) != 1 || resp.Results[0].Status != ua.StatusOK {
		t.Fatalf("read %s from %s: %v %+v", node, endpoint, err, resp)
	}
	v, ok := resp.Results[0].Value.Value().(int32)
	if !ok {
		t.Fatalf("read %s: %T, want int32", node, resp.Results[0].Value.Value())
	}
	return int64(v)
}
