package publish

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/internal/testkit"
	"github.com/tagbridge/tagbridge/publish/brokertest"
	"github.com/tagbridge/tagbridge/scripts/plcsim/simproc"
	"github.com/tagbridge/tagbridge/spool"
)

// arrivals collects per-topic counter values as they arrive, and checks
// that each new value is the one after the previous: duplicates (at least
// once) are allowed, gaps and reordering are not.
type arrivals struct {
	mu      sync.Mutex
	seen    map[string]map[int64]bool
	last    map[string]int64
	n, dups int
	errs    []string
	changed chan struct{}

	mark     int       // when n reaches mark,
	markedAt time.Time // the time is noted here
}

func newArrivals() *arrivals {
	return &arrivals{seen: map[string]map[int64]bool{}, last: map[string]int64{}, changed: make(chan struct{})}
}

func (a *arrivals) add(topic string, v int64, strict bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	defer func() { close(a.changed); a.changed = make(chan struct{}) }()
	if a.seen[topic] == nil {
		a.seen[topic] = map[int64]bool{}
	}
	if a.seen[topic][v] {
		a.dups++
		return
	}
	if last, ok := a.last[topic]; ok && strict && v != last+1 && len(a.errs) < 20 {
		a.errs = append(a.errs, fmt.Sprintf("%s: %d arrived after %d", topic, v, last))
	}
	a.seen[topic][v] = true
	a.last[topic] = max(v, a.last[topic])
	a.n++
	if a.n == a.mark {
		a.markedAt = time.Now()
	}
}

// waitUntil waits until cond holds, re-checking whenever values arrive.
func (a *arrivals) waitUntil(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	timeout := time.After(d)
	for {
		a.mu.Lock()
		ok, changed := cond(), a.changed
		a.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-changed:
		case <-timeout:
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
	}
}

func (a *arrivals) consume(t *testing.T, msgs <-chan brokertest.Message, strict bool) {
	go func() {
		for m := range msgs {
			v, ok, err := counterValue(m.Payload)
			if err != nil {
				a.mu.Lock()
				a.errs = append(a.errs, fmt.Sprintf("%s: %q: %v", m.Topic, m.Payload, err))
				a.mu.Unlock()
				continue
			}
			if ok {
				a.add(m.Topic, v, strict)
			}
		}
	}()
}

// counterValue returns the value of an Int32 or Int64 payload; ok is false
// for other types.
func counterValue(payload []byte) (v int64, ok bool, err error) {
	var p struct {
		Type  string          `json:"type"`
		Value json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(payload, &p); err != nil {
		return 0, false, err
	}
	if p.Type != "Int32" && p.Type != "Int64" {
		return 0, false, nil
	}
	if p.Type == "Int64" { // a JSON string (see AppendJSON)
		var str string
		if err := json.Unmarshal(p.Value, &str); err != nil {
			return 0, false, err
		}
		v, err = strconv.ParseInt(str, 10, 64)
		return v, err == nil, err
	}
	err = json.Unmarshal(p.Value, &v)
	return v, err == nil, err
}

// TestSpoolBrokerOutage stops the broker for 10 s (TAGBRIDGE_OUTAGE, e.g.
// 30s, for longer) while 1,000 values/s flow on 10 topics: nothing is lost,
// and on every topic the values arrive in order.
func TestSpoolBrokerOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("outage test")
	}
	outage := 10 * time.Second
	if s := os.Getenv("TAGBRIDGE_OUTAGE"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("TAGBRIDGE_OUTAGE: %v", err)
		}
		outage = d
	}
	const tags, perTick, tick = 10, 10, 10 * time.Millisecond // 1,000 values/s
	b := brokertest.Start(t)
	got := newArrivals()
	got.consume(t, brokertest.Subscribe(t, b.URL(), "tagbridge/#", 1), true)

	log, _ := newLog(t)
	cfg := testkit.Config(b.URL(), 1)
	p := newPublisher(t, cfg, log.Level(zerolog.InfoLevel))
	in := make(chan collectors.Event, 64)
	done := start(t, p, in)

	// The feeder stands for the OPC UA side: it must never wait long.
	var sent [tags]int64
	var slowest [3]time.Duration // before, during and after the outage
	phase := 0
	feed := func(d time.Duration) {
		tk := time.NewTicker(tick)
		defer tk.Stop()
		for end := time.Now().Add(d); time.Now().Before(end); {
			<-tk.C
			t0 := time.Now()
			for i := range perTick {
				tag := i % tags
				in <- collectors.Event{Batch: collectors.Batch{{PLC: "press1", Tag: fmt.Sprintf("c%02d", tag), Value: sent[tag], Type: "Int64", Status: "Good"}}}
				sent[tag]++
			}
			slowest[phase] = max(slowest[phase], time.Since(t0))
		}
	}
	total := func() (n int) {
		for _, s := range sent {
			n += int(s)
		}
		return n
	}

	feed(2 * time.Second)
	got.waitUntil(t, "the values before the outage", wait, func() bool { return got.n >= total() })
	b.Stop()
	stoppedAt := time.Now()
	phase = 1
	feed(outage)
	st := p.Stats()
	peak := st.Spooled
	if st.Spooled == 0 || st.Connected {
		t.Errorf("during the outage: Stats = %+v, want values spooled, not connected", st)
	}
	got.mu.Lock()
	got.mark = total() // the backlog
	got.mu.Unlock()
	b.Restart()
	restartedAt := time.Now()
	down := restartedAt.Sub(stoppedAt)
	// paho's backoff takes a few seconds to try again; values keep coming.
	phase = 2
	for !p.Stats().Connected {
		if time.Since(restartedAt) > time.Minute {
			t.Fatal("not connected a minute after the broker restarted")
		}
		feed(100 * time.Millisecond)
	}
	connectedAt := time.Now()
	feed(2 * time.Second)
	close(in)
	if err := result(t, done); err != nil {
		t.Fatalf("Run: %v", err)
	}
	n := total()
	got.waitUntil(t, fmt.Sprintf("all %d values", n), 2*wait, func() bool { return got.n >= n })

	got.mu.Lock()
	defer got.mu.Unlock()
	for _, e := range got.errs {
		t.Error(e)
	}
	for i, s := range sent {
		topic := fmt.Sprintf("tagbridge/a1/press1/c%02d", i)
		if len(got.seen[topic]) != int(s) {
			t.Errorf("%s: %d distinct values, want %d", topic, len(got.seen[topic]), s)
		}
	}
	st = p.Stats()
	if st.Spooled != 0 || st.Dropped != 0 || st.Failed != 0 {
		t.Errorf("after Run: Stats = %+v, want nothing spooled, dropped or failed", st)
	}
	drain := got.markedAt.Sub(connectedAt)
	t.Logf("broker down %v: %d values on %d topics, all in order, %d duplicates (Stats.Resent %d); %d values spooled when the broker came back, reconnected after %v, all received %v later (%.0f values/s, new values flowing meanwhile); feeder's slowest tick before, during, after the outage %v",
		down.Round(time.Millisecond), n, tags, got.dups, st.Resent, peak, connectedAt.Sub(restartedAt).Round(time.Millisecond), drain.Round(time.Millisecond), float64(peak)/drain.Seconds(), slowest)
}

// waitStats polls p's Stats until cond holds.
func waitStats(t *testing.T, p *Publisher, what string, d time.Duration, cond func(Stats) bool) Stats {
	t.Helper()
	deadline := time.Now().Add(d)
	tk := time.NewTicker(10 * time.Millisecond)
	defer tk.Stop()
	for {
		st := p.Stats()
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("Stats = %+v after %v, want %s", st, d, what)
		}
		<-tk.C
	}
}

// TestSpoolFullPublisher: with the broker down and a small spool, Run keeps
// taking values, drops the oldest and counts them; the rest arrives in order.
func TestSpoolFullPublisher(t *testing.T) {
	b := brokertest.Start(t)
	got := newArrivals()
	got.consume(t, brokertest.Subscribe(t, b.URL(), "tagbridge/#", 1), false)
	b.Stop()

	log, logs := newLog(t)
	cfg := testkit.Config(b.URL(), 1)
	cfg.MQTT.Spool.MaxBytes = 64 << 10
	p := newPublisher(t, cfg, log)
	in := make(chan collectors.Event)
	done := start(t, p, in)
	const n = 5000
	for i := range n {
		in <- collectors.Event{Batch: collectors.Batch{seqSample(i)}} // an unbuffered channel: Run takes each one
	}
	logs.waitFor(t, `"level":"error"`, "spool full")
	st := waitStats(t, p, fmt.Sprintf("spooled + dropped = %d", n), wait, func(st Stats) bool { return st.Spooled+st.Dropped == n })
	if st.Dropped == 0 || st.SpoolBytes > 64<<10 {
		t.Fatalf("Stats = %+v, want some dropped, the spool within 64 KiB", st)
	}
	kept := int(st.Spooled)
	b.Restart()
	close(in)
	if err := result(t, done); err != nil {
		t.Fatalf("Run: %v", err)
	}
	topic := "tagbridge/a1/press1/temperature"
	got.waitUntil(t, "the kept values", wait, func() bool { return len(got.seen[topic]) >= kept })
	got.mu.Lock()
	defer got.mu.Unlock()
	for v := n - kept; v < n; v++ {
		if !got.seen[topic][int64(v)] {
			t.Errorf("value %d missing", v)
			break
		}
	}
	if c := strings.Count(logs.String(), "spool full"); c != 1 {
		t.Errorf("spool full logged %d times, want once", c)
	}
	if st := p.Stats(); st.Dropped != uint64(n-kept) {
		t.Errorf("Stats = %+v, want %d dropped", st, n-kept)
	}
}

// TestSpoolRestartPublisher: values spooled while the broker was down are
// sent by the next Publisher on the same spool.
func TestSpoolRestartPublisher(t *testing.T) {
	b := brokertest.Start(t)
	msgs := brokertest.Subscribe(t, b.URL(), "tagbridge/#", 1)
	b.Stop()
	dir := t.TempDir()

	log, logs := newLog(t)
	cfg := testkit.Config(b.URL(), 1)
	cfg.Agent.SpoolDir = dir
	p := newPublisher(t, cfg, log)
	in := make(chan collectors.Event) // each one taken and spooled before the next
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, in) }()
	for i := range 100 {
		in <- collectors.Event{Batch: collectors.Batch{seqSample(i)}}
	}
	logs.waitFor(t, "cannot connect to broker")
	cancel()
	if err := result(t, done); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if st := p.Stats(); st.Spooled != 100 {
		t.Fatalf("Stats = %+v, want 100 spooled", st)
	}

	b.Restart()
	cfg.MQTT.ClientID += "-2"
	p = newPublisher(t, cfg, log)
	in = make(chan collectors.Event)
	close(in)
	if err := result(t, start(t, p, in)); err != nil {
		t.Fatalf("Run: %v", err)
	}
	for i, m := range receive(t, msgs, 100) {
		if n := seqOf(t, m); n != i {
			t.Fatalf("message %d carries %d", i, n)
		}
	}
	if st := p.Stats(); st.Spooled != 0 || st.Published != 100 {
		t.Errorf("Stats = %+v, want 100 published", st)
	}
}

// TestSpoolAgentKilled runs the tagbridge binary against a simulated PLC
// with the broker down, kills it with SIGKILL once it has spooled values,
// and starts it again with the broker up: every counter value the spool
// had accepted arrives.
func TestSpoolAgentKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	bin := filepath.Join(t.TempDir(), "tagbridge")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build tagbridge: %v\n%s", err, out)
	}
	const tags = 40 // 10 Int32 counters, 400 values/s
	plc := simproc.Start(t, "-tags", fmt.Sprint(tags), "-interval", "100ms")
	b := brokertest.Start(t)
	got := newArrivals()
	got.consume(t, brokertest.Subscribe(t, b.URL(), "tagbridge/kill9/plc/#", 1), false)
	b.Stop()

	spool := t.TempDir()
	var yml strings.Builder
	fmt.Fprintf(&yml, "agent: {id: kill9, spool_dir: %s}\nmqtt: {url: %s, qos: 1, spool: {sync_interval: 50ms}}\nplcs:\n", spool, b.URL())
	fmt.Fprintf(&yml, "  - name: plc\n    endpoint: %s\n    publishing_interval: 20ms\n    sampling_interval: 0s\n    reconnect: {min: 200ms, max: 1s}\n", plc.Endpoint)
	for line := range strings.Lines(simproc.Tags(t, tags)) {
		fmt.Fprintf(&yml, "    %s", line)
	}
	conf := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(conf, []byte(yml.String()), 0o600); err != nil {
		t.Fatal(err)
	}

	agent := startAgent(t, bin, conf)
	// About 3 s of values: 400 values/s of some 250 bytes.
	waitSpool(t, spool, 300_000)
	agent.kill()

	accepted := spooledCounters(t, spool)
	total := 0
	for topic, vals := range accepted {
		for i := 1; i < len(vals); i++ {
			if vals[i] != vals[i-1]+1 {
				t.Fatalf("%s: spooled %d after %d", topic, vals[i], vals[i-1])
			}
		}
		total += len(vals)
	}
	if len(accepted) != tags/4 || total < 100 {
		t.Fatalf("spool holds %d values on %d counters, want some on each of %d", total, len(accepted), tags/4)
	}

	b.Restart()
	agent = startAgent(t, bin, conf)
	got.waitUntil(t, "every spooled value", 2*wait, func() bool {
		for topic, vals := range accepted {
			if !got.seen[topic][vals[len(vals)-1]] {
				return false
			}
		}
		return true
	})
	agent.stop(t)

	got.mu.Lock()
	defer got.mu.Unlock()
	missing := 0
	for topic, vals := range accepted {
		for _, v := range vals {
			if !got.seen[topic][v] {
				if missing++; missing < 10 {
					t.Errorf("%s: spooled value %d never arrived", topic, v)
				}
			}
		}
	}
	t.Logf("%d values spooled before kill -9 on %d counters, %d missing after the restart; %d duplicates", total, len(accepted), missing, got.dups)
}

type agentProc struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	exited chan struct{}
}

func startAgent(t *testing.T, bin, conf string) *agentProc {
	t.Helper()
	a := &agentProc{cmd: exec.Command(bin, "run", "-c", conf), stderr: &bytes.Buffer{}, exited: make(chan struct{})}
	var mu sync.Mutex
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	a.cmd.Stderr = pw
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			mu.Lock()
			a.stderr.WriteString(sc.Text() + "\n")
			mu.Unlock()
		}
		a.cmd.Wait()
		close(a.exited)
	}()
	t.Cleanup(func() {
		a.kill()
		if t.Failed() {
			mu.Lock()
			t.Logf("tagbridge log:\n%s", a.stderr.String())
			mu.Unlock()
		}
	})
	return a
}

func (a *agentProc) kill() {
	select {
	case <-a.exited:
		return
	default:
	}
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

// waitSpool waits until the spool's segments hold at least n bytes.
func waitSpool(t *testing.T, dir string, n int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	tk := time.NewTicker(50 * time.Millisecond)
	defer tk.Stop()
	for {
		var size int64
		segs, err := filepath.Glob(filepath.Join(dir, "*.seg"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range segs {
			if fi, err := os.Stat(f); err == nil {
				size += fi.Size()
			}
		}
		if size >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("spool holds %d bytes after 30 s, want %d", size, n)
		}
		<-tk.C
	}
}

// spooledCounters reads the spool the way the agent will on its restart and
// returns the Int32 counter values in it, per topic in spool order.
func spooledCounters(t *testing.T, dir string) map[string][]int64 {
	t.Helper()
	s, err := spool.Open(dir, 1<<30, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Abandon() // read only: no cursor written
	out := map[string][]int64{}
	for {
		topic, payload, seq, ok := s.Peek()
		if !ok {
			return out
		}
		v, ok, err := counterValue(payload)
		if err != nil {
			t.Fatalf("spooled %s %q: %v", topic, payload, err)
		}
		if ok {
			out[topic] = append(out[topic], v)
		}
		s.Advance(seq)
	}
}
