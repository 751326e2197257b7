package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tagbridge/tagbridge/config"
	"github.com/tagbridge/tagbridge/internal/testkit"
	"github.com/tagbridge/tagbridge/scripts/plcsim/simproc"

	"github.com/tagbridge/tagbridge/internal/testutil"
)

// The agent's status topics follow each PLC session: connecting, then
// streaming, disconnected with the reason while the PLC is down, streaming
// again after it is back; retained, so a late subscriber sees the latest.
func TestStatusTopicsFollowSessions(t *testing.T) {
	broker := testkit.StartBroker(t)
	plc := simproc.Start(t, "-tags", "3", "-interval", "100ms")
	yml := fmt.Sprintf(`agent: {id: st, spool_dir: %s}
mqtt: {url: %s, qos: 1}
plcs:
  - name: press1
    endpoint: %s
    publishing_interval: 50ms
    reconnect: {min: 200ms, max: 500ms}
%s`, t.TempDir(), broker.URL(), plc.Endpoint, testutil.Indent(simproc.Tags(t, 3), "    "))
	file := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(file, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Agent.Version = "test-version"
	msgs := testkit.SubscribeAll(t, broker.URL(), "tagbridge/st/+/status", 1)
	agentMsgs := testkit.SubscribeAll(t, broker.URL(), "tagbridge/st/status", 1)
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() { done <- Run(ctx, cfg, zerolog.Nop()) }()

	next := func(ch <-chan testkit.Message, want ...string) map[string]any {
		t.Helper()
		deadline := time.After(20 * time.Second)
		var seen []string
		for {
			select {
			case m := <-ch:
				var st map[string]any
				if err := json.Unmarshal(m.Payload, &st); err != nil {
					t.Fatalf("%s: %v: %s", m.Topic, err, m.Payload)
				}
				for _, w := range want {
					if st["state"] == w {
						return st
					}
				}
				seen = append(seen, string(m.Payload))
			case <-deadline:
				t.Fatalf("no %q status within 20 s; saw %q", want, seen)
			}
		}
	}
	if st := next(agentMsgs, "online"); st["version"] != "test-version" {
		t.Errorf("online message: %v", st)
	}
	next(msgs, "streaming")
	plc.Kill()
	// Down: recovering while the session may still be reactivated, then
	// disconnected; either says why.
	if st := next(msgs, "recovering", "disconnected"); st["reason"] == "" {
		t.Errorf("disconnected without a reason: %v", st)
	}
	plc.Restart()
	next(msgs, "streaming")

	late := testkit.SubscribeAll(t, broker.URL(), "tagbridge/st/press1/status", 1)
	if m := <-late; !m.Retained || !strings.Contains(string(m.Payload), `"state":"streaming"`) {
		t.Errorf("late subscriber got %+v %s", m, m.Payload)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	next(agentMsgs, "offline")
	next(msgs, "stopped")
}
