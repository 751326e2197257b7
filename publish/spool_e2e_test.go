package publish

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/internal/testkit"
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
	testkit.WaitLocked(t, what, d, &a.mu, &a.changed, cond)
}

func (a *arrivals) consume(t *testing.T, msgs <-chan testkit.Message, strict bool) {
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
	b := testkit.StartBroker(t)
	got := newArrivals()
	got.consume(t, testkit.Subscribe(t, b.URL(), "tagbridge/#", 1), true)

	log, _ := testkit.NewLogger(t, "publisher")
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
				in <- collectors.Event{Batch: collectors.Batch{{PLC: "press1", Tag: fmt.Sprintf("c%02d", tag), Value: sent[tag], Type: collectors.TypeInt64}}}
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
	b := testkit.StartBroker(t)
	got := newArrivals()
	got.consume(t, testkit.Subscribe(t, b.URL(), "tagbridge/#", 1), false)
	b.Stop()

	log, logs := testkit.NewLogger(t, "publisher")
	cfg := testkit.Config(b.URL(), 1)
	cfg.MQTT.Spool.MaxBytes = 64 << 10
	p := newPublisher(t, cfg, log)
	in := make(chan collectors.Event)
	done := start(t, p, in)
	const n = 5000
	for i := range n {
		in <- collectors.Event{Batch: collectors.Batch{seqSample(i)}} // an unbuffered channel: Run takes each one
	}
	logs.WaitFor(t, wait, `"level":"error"`, "spool full")
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
	// The spool named each record it dropped: all press1's.
	if st := p.Stats(); st.PLCs["press1"] != (PLCCounts{Published: st.Published, Dropped: st.Dropped}) || len(st.PLCs) != 1 {
		t.Errorf("by PLC: %v, want press1 with %d published, %d dropped", st.PLCs, st.Published, st.Dropped)
	}
}

// TestSpoolRestartPublisher: values spooled while the broker was down are
// sent by the next Publisher on the same spool.
func TestSpoolRestartPublisher(t *testing.T) {
	b := testkit.StartBroker(t)
	msgs := testkit.Subscribe(t, b.URL(), "tagbridge/#", 1)
	b.Stop()
	dir := t.TempDir()

	log, logs := testkit.NewLogger(t, "publisher")
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
	logs.WaitFor(t, wait, "cannot connect to broker")
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
