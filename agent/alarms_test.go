package agent

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tagbridge/tagbridge/config"
	"github.com/tagbridge/tagbridge/internal/testkit"
	"github.com/tagbridge/tagbridge/scripts/opcua-peer/peerproc"
)

// TestAcknowledgeAlarmFromMQTT acknowledges the node-opcua peer's LevelHigh
// alarm (active and unacknowledged from the start) through the command
// path: the allow-listed method is AcknowledgeableConditionType's
// Acknowledge (i=9111) on the condition, with the EventId taken from the
// published event and a comment; the next event of LevelHigh then carries
// AckedState true.
func TestAcknowledgeAlarmFromMQTT(t *testing.T) {
	broker := testkit.StartBroker(t)
	peer := peerproc.Start(t, peerproc.Options{Tags: 1, Policies: []string{"None"}, Modes: []string{"None"},
		Args: []string{"-alarms", "-alarm-cycle", "60s"}})
	yaml := fmt.Sprintf(`agent: {id: e2e, spool_dir: %s}
mqtt: {url: %s, client_id: %s, payload: json}
plcs:
  - name: tank
    endpoint: %s
    publishing_interval: 50ms
    reconnect: {min: 100ms, max: 500ms}
    events:
      - {name: alarms, event_type: "i=2915", select: [EventId, ConditionName, AckedState/Id]}
    commands:
      methods:
        - {name: ack_level, object: "ns=1;s=Tank.LevelHigh", method: "i=9111", args: [ByteString, LocalizedText]}
    tags:
      - {name: counter, node: "ns=1;s=Int32.0000"}
`, t.TempDir(), broker.URL(), testkit.ClientID("tagbridge-e2e-"), peer.Endpoint)
	cfg, err := config.Parse("e2e.yaml", []byte(yaml))
	if err != nil {
		t.Fatalf("%v\n%s", err, yaml)
	}
	events := testkit.Subscribe(t, broker.URL(), "tagbridge/e2e/tank/alarms", 1)
	hmi := newCommander(t, broker.URL())
	log, _ := testkit.NewLogger(t, "agent")
	runAgent(t, cfg, log)

	// levelHigh waits for the next LevelHigh event and returns its fields.
	levelHigh := func(what string) map[string]any {
		t.Helper()
		deadline := time.After(20 * time.Second)
		for {
			select {
			case m := <-events:
				var e struct{ Value map[string]any }
				if err := json.Unmarshal(m.Payload, &e); err != nil {
					t.Fatalf("event is not JSON: %s", m.Payload)
				}
				if e.Value["ConditionName"] == "LevelHigh" {
					return e.Value
				}
			case <-deadline:
				t.Fatalf("no LevelHigh event %s within 20 s", what)
			}
		}
	}
	ev := levelHigh("through ConditionRefresh")
	id, _ := ev["EventId"].(string)
	if ev["AckedState/Id"] != false || id == "" {
		t.Fatalf("LevelHigh at start: %v; want unacknowledged with an EventId", ev)
	}
	raw, _ := hmi.exchange("tagbridge/e2e/tank/ack_level/call", `{"id":"ack1","args":["`+id+`","seen from MQTT"]}`, "ack1")
	if want := `{"id":"ack1","status":"Good","status_code":0}`; raw != want {
		t.Fatalf("acknowledge: %s, want %s", raw, want)
	}
	if ev := levelHigh("after the acknowledgement"); ev["AckedState/Id"] != true {
		t.Errorf("LevelHigh after Acknowledge: %v; want AckedState true", ev)
	}
	// A second acknowledgement of the same event is the PLC's refusal.
	raw, _ = hmi.exchange("tagbridge/e2e/tank/ack_level/call", `{"id":"ack2","args":["`+id+`","again"]}`, "ack2")
	if !strings.Contains(raw, `"status":"Bad`) {
		t.Errorf("second acknowledge: %s, want a Bad status from the PLC", raw)
	}
}
