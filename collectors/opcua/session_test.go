package opcua

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/config"
	"github.com/tagbridge/tagbridge/internal/testkit"
	"github.com/tagbridge/tagbridge/scripts/plcsim/simproc"
)

// plcConfig loads a one-PLC configuration through the real config path.
func plcConfig(t *testing.T, endpoint, tagsYAML string) config.PLC {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "agent: {id: test}\nplcs:\n  - name: sim\n    endpoint: %s\n    publishing_interval: 20ms\n    reconnect: {min: 100ms, max: 500ms}\n", endpoint)
	for _, line := range strings.Split(strings.TrimRight(tagsYAML, "\n"), "\n") {
		fmt.Fprintf(&b, "    %s\n", line)
	}
	cfg, err := config.Parse("test.yaml", []byte(b.String()))
	if err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	return cfg.PLCs[0]
}

// runSession runs a session in the background and collects its samples.
type runSession struct {
	mu      sync.Mutex
	samples map[string][]collectors.Sample
	logs    *testkit.Log
	stop    context.CancelFunc
	done    chan error
	stopped bool
}

func startSession(t *testing.T, plc config.PLC) *runSession {
	t.Helper()
	r, _ := startSessionValue(t, plc)
	return r
}

func startSessionValue(t *testing.T, plc config.PLC) (*runSession, *Session) {
	t.Helper()
	return startSessions(t, []config.PLC{plc})
}

// startSessions runs one session for the given entries (shared when more
// than one).
func startSessions(t *testing.T, plcs []config.PLC) (*runSession, *Session) {
	t.Helper()
	keepStateInTemp(t, plcs)
	r := &runSession{samples: map[string][]collectors.Sample{}, logs: &testkit.Log{}, done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(t.Context())
	r.stop = cancel
	out := make(chan collectors.Batch, 1024)
	go func() {
		for batch := range out {
			r.mu.Lock()
			for _, s := range batch {
				r.samples[s.Tag] = append(r.samples[s.Tag], s)
			}
			r.mu.Unlock()
		}
	}()
	s := NewSharedSession(plcs, zerolog.New(r.logs).Level(zerolog.DebugLevel))
	go func() { r.done <- s.Run(ctx, out); close(out) }()
	t.Cleanup(func() {
		r.shutdown(t)
		if t.Failed() {
			t.Logf("session log:\n%s", r.logs)
		}
	})
	return r, s
}

// shutdown cancels the session and requires it to return promptly; it may
// be called again.
func (r *runSession) shutdown(t *testing.T) {
	t.Helper()
	r.stop()
	if r.stopped {
		return
	}
	select {
	case err := <-r.done:
		r.stopped = true
		if err != nil {
			t.Errorf("Run returned %v", err)
		}
	// Draining and closing take up to 2 s each; the margin is for a
	// loaded machine. The unit gives the whole agent 15 s.
	case <-time.After(10 * time.Second):
		t.Fatal("session did not stop within 10 s of cancellation")
	}
}

func (r *runSession) tagsSeen() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.samples)
}

// waitUntil and freePort are testkit's, under the names this package's
// tests use.
var waitUntil = testkit.WaitUntil

func freePort(t testing.TB) string { return fmt.Sprint(testkit.Port(t)) }

// gopcua's own reconnect gives up on "connection refused"; ours must not.
func TestSessionRetriesRefusedConnectionUntilPLCAppears(t *testing.T) {
	port := freePort(t)
	r, s := startSessionValue(t, plcConfig(t, "opc.tcp://127.0.0.1:"+port, simproc.Tags(t, 8)))
	waitUntil(t, "three refused attempts", 10*time.Second, func() bool {
		return strings.Count(r.logs.String(), "connection refused") >= 3
	})
	if n := s.States().Snapshot()[0].ConnectFailures; n < 3 {
		t.Errorf("%d failed connection attempts counted, want at least the 3 logged", n)
	}
	if r.tagsSeen() != 0 {
		t.Fatal("samples before the PLC exists")
	}
	if n := strings.Count(r.logs.String(), `"level":"warn"`); n != 1 {
		t.Errorf("%d warnings for one unchanged failure, want 1 (then debug):\n%s", n, r.logs)
	}
	simproc.Start(t, "-tags", "8", "-interval", "100ms", "-port", port)
	waitUntil(t, "values from every tag", 15*time.Second, func() bool { return r.tagsSeen() == 8 })
}

func TestSessionStreamsAroundBadTags(t *testing.T) {
	plc := simproc.Start(t, "-tags", "4", "-interval", "100ms")
	// gopcua's server accepts an unknown node and reports BadNodeIdUnknown
	// in its values; an unknown namespace URI is refused on our side.
	tags := simproc.Tags(t, 4) + "  - {name: ghost, node: \"ns=1;s=DoesNotExist\"}\n  - {name: alien, node: \"nsu=urn:nowhere;s=X\"}\n"
	r, s := startSessionValue(t, plcConfig(t, plc.Endpoint, tags))
	waitUntil(t, "values from the four real tags, the ghost and alien's refusal", 15*time.Second, func() bool { return r.tagsSeen() == 6 })
	// The refused tag is named in the status, with the reason.
	if f := s.States().Snapshot()[0].FailedTags; len(f) != 1 || f[0].Tag != "alien" || f[0].Node != "nsu=urn:nowhere;s=X" || f[0].Status != "BadNodeIdUnknown" {
		t.Errorf("failed tags %+v, want alien (nsu=urn:nowhere;s=X) BadNodeIdUnknown", f)
	}
	// Two retry rounds of the rejected tag must not log it again.
	time.Sleep(2*healthInterval + time.Second)
	logs := r.logs.String()
	if n := strings.Count(logs, `alien (`); n != 1 {
		t.Errorf("tag alien logged %d times, want once:\n%s", n, logs)
	}
	if n := countLines(logs, `"level":"warn"`, "tags rejected by server"); n != 1 {
		t.Errorf("%d rejection warnings, want one summary:\n%s", n, logs)
	}
	if n := strings.Count(logs, "plc session established"); n != 1 {
		t.Errorf("session established %d times in a healthy run, want once (watchdog or health check misfired?):\n%s", n, logs)
	}
	if !strings.Contains(logs, `alien (BadNodeIdUnknown: `) || !strings.Contains(logs, "urn:nowhere") {
		t.Errorf("rejection log lacks status or namespace:\n%s", logs)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	// The refusal goes out on the tag's own topic once, not per retry round.
	if alien := r.samples["alien"]; len(alien) != 1 || alien[0].StatusCode.String() != "BadNodeIdUnknown" || alien[0].StatusCode != 0x80340000 || alien[0].Any() != nil {
		t.Errorf("alien samples %+v, want one with status BadNodeIdUnknown and no value", alien)
	}
	ghost := r.samples["ghost"]
	if len(ghost) == 0 || ghost[0].StatusCode.String() != "BadNodeIdUnknown" || ghost[0].Any() != nil {
		t.Errorf("ghost samples %+v, want status BadNodeIdUnknown and no value", ghost)
	}
	for _, tag := range []string{"int32_0001", "double_0000"} {
		if n := len(r.samples[tag]); n < 50 {
			t.Errorf("%s: %d values in over 10 s, want a steady stream", tag, n)
		}
	}
}

// More tags than one CreateMonitoredItems call may carry: plcsim advertises
// MaxMonitoredItemsPerCall 300 (below the default 500 the session uses when
// a server says nothing) and refuses a call with more.
func TestSessionMonitorsLargeTagMapsInBatches(t *testing.T) {
	const n = 1234
	plc := simproc.Start(t, "-tags", fmt.Sprint(n), "-interval", "200ms", "-max-monitored-items-per-call", "300")
	r := startSession(t, plcConfig(t, plc.Endpoint, simproc.Tags(t, n)))
	waitUntil(t, "values from every tag", 30*time.Second, func() bool { return r.tagsSeen() == n })
}

func TestSessionReconnectsAfterPLCRestart(t *testing.T) {
	plc := simproc.Start(t, "-tags", "8", "-interval", "100ms")
	r := startSession(t, plcConfig(t, plc.Endpoint, simproc.Tags(t, 8)))
	waitUntil(t, "first values", 15*time.Second, func() bool { return r.tagsSeen() == 8 })
	plc.Restart("-tags", "8", "-interval", "100ms", "-start", "5000")
	waitUntil(t, "values from the restarted PLC", 15*time.Second, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, ss := range r.samples {
			last := ss[len(ss)-1]
			if v, ok := last.Any().(int32); ok && v >= 5000 {
				return true
			}
		}
		return false
	})
}

// A server that keeps answering requests but stops publishing: the session
// must notice from the missing heartbeat and rebuild itself.
func TestSessionWatchdogRebuildsSilentSession(t *testing.T) {
	plc := simproc.Start(t, "-tags", "4", "-interval", "100ms", "-freeze-after", "3s")
	r := startSession(t, plcConfig(t, plc.Endpoint, simproc.Tags(t, 4)))
	waitUntil(t, "first values", 15*time.Second, func() bool { return r.tagsSeen() == 4 })
	// Frozen at 3 s; the watchdog allows max(10 x 20ms, 5 s) of silence.
	waitUntil(t, "the watchdog to rebuild the session", 20*time.Second, func() bool {
		logs := r.logs.String()
		return strings.Contains(logs, "watchdog: no data and no heartbeat") && strings.Count(logs, "plc session established") >= 2
	})
}

func TestSessionEstimatesPLCClockOffset(t *testing.T) {
	plc := simproc.Start(t, "-tags", "4", "-interval", "100ms", "-clock-offset", "-2h")
	r, s := startSessionValue(t, plcConfig(t, plc.Endpoint, simproc.Tags(t, 4)))
	waitUntil(t, "a clock offset estimate near -2h", 15*time.Second, func() bool {
		off := s.ClockOffset()
		return off < -2*time.Hour+time.Minute && off > -2*time.Hour-time.Minute
	})
	waitUntil(t, "the clock warning", 5*time.Second, func() bool {
		return strings.Contains(r.logs.String(), "PLC clock differs")
	})
	time.Sleep(2 * time.Second) // more heartbeats must not warn again
	if n := strings.Count(r.logs.String(), "PLC clock differs"); n != 1 {
		t.Errorf("clock warning logged %d times, want once", n)
	}
	// Payloads keep the PLC's own timestamps: the simulator's values carry
	// real source times, so only the heartbeat is skewed here.
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ss := range r.samples {
		if ss[0].SourceTime.IsZero() {
			t.Errorf("sample without the PLC's source time: %+v", ss[0])
		}
	}
}

// A structure of a type gopcua does not know arrives with its type id and
// its encoded body.
func TestSessionDeliversUnknownStructureBodies(t *testing.T) {
	plc := simproc.Start(t, "-tags", "4", "-interval", "100ms", "-struct")
	r := startSession(t, plcConfig(t, plc.Endpoint, simproc.Tags(t, 4)+"  - {name: recipe, node: \"ns=1;s=Struct.Sample\"}\n"))
	waitUntil(t, "the structure", 15*time.Second, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.samples["recipe"]) > 0
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.samples["recipe"][0]
	m, ok := s.Any().(map[string]any)
	if !ok || s.Type != collectors.TypeExtensionObject {
		t.Fatalf("value %#v of type %s, want a structure", s.Any(), s.Type)
	}
	// Counter int32 7, then the string "press" with its int32 length.
	want := []byte{7, 0, 0, 0, 5, 0, 0, 0, 'p', 'r', 'e', 's', 's'}
	body, isBytes := m["body"].([]byte) // []byte: the payload encoder writes base64
	if m["type_id"] != "ns=1;i=5001" || m["encoding"] != "binary" || !isBytes || !bytes.Equal(body, want) {
		t.Errorf("structure %#v, want type_id ns=1;i=5001, binary body %v", m, want)
	}
}

// keepStateInTemp moves the sessions' state files (the history gap state,
// by default under /var/lib/tagbridge/spool) into the test's own directory:
// a test run as root must not write into the system's state directory,
// where the package test, running beside it, finds them owned by root.
func keepStateInTemp(t *testing.T, plcs []config.PLC) {
	t.Helper()
	for i := range plcs {
		if !strings.HasPrefix(plcs[i].History.StateDir, os.TempDir()) {
			plcs[i].History.StateDir = t.TempDir()
		}
	}
}
