package opcua

import (
	"strings"
	"testing"
	"time"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/scripts/opcua-peer/peerproc"
)

// Alarms from the node-opcua peer: LevelHigh, active before the session
// started, arrives through the ConditionRefresh; Pump is seen raised,
// acknowledged and cleared, each as an event sample with the selected
// fields in order.
func TestSessionAlarms(t *testing.T) {
	p := peerproc.Start(t, peerproc.Options{Tags: 2, Policies: []string{"None"}, Modes: []string{"None"}, Args: []string{"-alarms", "-alarm-cycle", "1500ms"}})
	tags := `tags:
  - {name: counter, node: "ns=1;s=Int32.0001"}
events:
  - {name: alarms, event_type: "i=2915", where: "Severity >= 100"}
`
	r := startSession(t, plcConfig(t, p.Endpoint, tags))
	field := func(s collectors.Sample, name string) any {
		st, _ := s.Value.(collectors.Structure)
		for _, f := range st.Fields {
			if f.Name == name {
				return f.Value
			}
		}
		return nil
	}
	seen := func(cond string, match func(collectors.Sample) bool) bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, s := range r.samples["alarms"] {
			if match(s) {
				return true
			}
		}
		return false
	}
	name := func(s collectors.Sample) any { return field(s, "ConditionName") }
	waitUntil(t, "LevelHigh through ConditionRefresh", 30*time.Second, func() bool {
		return seen("level", func(s collectors.Sample) bool { return name(s) == "LevelHigh" && field(s, "ActiveState/Id") == true })
	})
	waitUntil(t, "Pump raised, acknowledged and cleared", 30*time.Second, func() bool {
		raised := seen("raised", func(s collectors.Sample) bool {
			return name(s) == "Pump" && field(s, "ActiveState/Id") == true && field(s, "AckedState/Id") == false
		})
		acked := seen("acked", func(s collectors.Sample) bool {
			return name(s) == "Pump" && field(s, "ActiveState/Id") == true && field(s, "AckedState/Id") == true
		})
		cleared := seen("cleared", func(s collectors.Sample) bool { return name(s) == "Pump" && field(s, "ActiveState/Id") == false })
		return raised && acked && cleared
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.samples["alarms"][0]
	st := s.Value.(collectors.Structure)
	want := []string{"EventId", "EventType", "SourceNode", "SourceName", "Time", "ReceiveTime", "Severity", "Message",
		"ConditionName", "ActiveState/Id", "AckedState/Id", "ConfirmedState/Id", "Retain", "ConditionId"}
	if got := fieldNames(st); len(got) != len(want) {
		t.Errorf("event fields %v, want %v", got, want)
	}
	if src, _ := field(s, "SourceName").(string); s.Type != "Event" || s.SourceTime.IsZero() || st.TypeID != "i=2915" || !strings.Contains(src, "Tank") ||
		field(s, "ConditionId") != "ns=1;s=Tank.LevelHigh" && field(s, "ConditionId") != "ns=1;s=Tank.Pump" {
		t.Errorf("event sample %+v", s)
	}
	for _, s := range r.samples["alarms"] {
		if sev, _ := field(s, "Severity").(uint16); sev < 100 {
			t.Errorf("event of severity %v passed the where clause", field(s, "Severity"))
		}
	}
}
