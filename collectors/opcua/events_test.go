package opcua

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/config"
)

// checkAlarms checks the alarms of the node-opcua peer's -alarms, as the
// session r saw them on its stream "alarms" (event_type i=2915, where
// "Severity >= 100"): LevelHigh, active before the session started, arrives
// through the ConditionRefresh; Pump is seen raised, acknowledged and
// cleared, each as an event sample with the selected fields in order, and
// nothing but AlarmConditionType events pass. TestSessionDecodesStructures
// ByDefinition runs it, sharing its peer.
func checkAlarms(t *testing.T, r *runSession) {
	t.Helper()
	field := func(s collectors.Sample, name string) any {
		st, _ := s.Value.(collectors.Structure)
		for _, f := range st.Fields {
			if f.Name == name {
				return f.Value
			}
		}
		return nil
	}
	seen := func(match func(collectors.Sample) bool) bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return slices.ContainsFunc(r.samples["alarms"], match)
	}
	name := func(s collectors.Sample) any { return field(s, "ConditionName") }
	waitUntil(t, "LevelHigh through ConditionRefresh", 30*time.Second, func() bool {
		return seen(func(s collectors.Sample) bool { return name(s) == "LevelHigh" && field(s, "ActiveState/Id") == true })
	})
	waitUntil(t, "Pump raised, acknowledged and cleared", 30*time.Second, func() bool {
		raised := seen(func(s collectors.Sample) bool {
			return name(s) == "Pump" && field(s, "ActiveState/Id") == true && field(s, "AckedState/Id") == false
		})
		acked := seen(func(s collectors.Sample) bool {
			return name(s) == "Pump" && field(s, "ActiveState/Id") == true && field(s, "AckedState/Id") == true
		})
		cleared := seen(func(s collectors.Sample) bool { return name(s) == "Pump" && field(s, "ActiveState/Id") == false })
		return raised && acked && cleared
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.samples["alarms"][0]
	st := s.Value.(collectors.Structure)
	want := []string{"EventId", "EventType", "SourceNode", "SourceName", "Time", "ReceiveTime", "Severity", "Message",
		"ConditionName", "ActiveState/Id", "AckedState/Id", "ConfirmedState/Id", "Retain", "ConditionId"}
	if got := fieldNames(st); !slices.Equal(got, want) {
		t.Errorf("event fields %v, want %v", got, want)
	}
	if src, _ := field(s, "SourceName").(string); s.Type != collectors.TypeEvent || s.SourceTime.IsZero() || st.TypeID != "i=2915" || !strings.Contains(src, "Tank") ||
		field(s, "ConditionId") != "ns=1;s=Tank.LevelHigh" && field(s, "ConditionId") != "ns=1;s=Tank.Pump" {
		t.Errorf("event sample %+v", s)
	}
	for _, s := range r.samples["alarms"] {
		if sev, _ := field(s, "Severity").(uint16); sev < 100 {
			t.Errorf("event of severity %v passed the where clause", field(s, "Severity"))
		}
		if st, _ := s.Value.(collectors.Structure); st.TypeID != "i=2915" {
			t.Errorf("event of type %s, want only AlarmConditionType (i=2915)", st.TypeID)
		}
	}
}

// The refresh bracket events are recognised by their type also when the
// stream does not select EventType, which then is asked for after the
// selected fields and before the ConditionId.
func TestEventSample(t *testing.T) {
	e := eventRef{plc: "p", EventStream: config.EventStream{Name: "alarms", Select: []string{"Severity", "Time"}}}
	e.EventType, _ = config.ParseNodeID("i=2915")
	e.Notifier, _ = config.ParseNodeID("i=2253")
	ts := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	f, err := eventFilter(e.EventStream, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(f.SelectClauses); n != 4 || f.SelectClauses[2].BrowsePath[0].Name != "EventType" || f.SelectClauses[3].AttributeID != ua.AttributeIDNodeID {
		t.Fatalf("select clauses %d: %+v", n, f.SelectClauses)
	}
	if _, ok := eventSample(e, []*ua.Variant{ua.MustVariant(uint16(0)), ua.MustVariant(ts), ua.MustVariant(ua.NewNumericNodeID(0, refreshStartEventType)), ua.MustVariant(nil)}); ok {
		t.Error("RefreshStartEvent published")
	}
	s, ok := eventSample(e, []*ua.Variant{ua.MustVariant(uint16(700)), ua.MustVariant(ts), ua.MustVariant(ua.NewNumericNodeID(0, 2915)), ua.MustVariant(ua.NewStringNodeID(1, "Tank.LevelHigh"))})
	st, _ := s.Value.(collectors.Structure)
	if !ok || st.TypeID != "i=2915" || !s.SourceTime.Equal(ts) || len(st.Fields) != 3 || st.Fields[0].Value != uint16(700) || st.Fields[2] != (collectors.Field{Name: "ConditionId", Value: "ns=1;s=Tank.LevelHigh"}) {
		t.Errorf("event sample %+v", s)
	}
}

// A where of three comparisons becomes And(c1, And(c2, c3)) with the
// operands pointing at their elements.
func TestEventFilterWhere(t *testing.T) {
	e := config.EventStream{Name: "a", Select: []string{"Severity"}, Where: "Severity >= 500 and SourceName = 'Tank' and type = i=2915"}
	e.EventType, _ = config.ParseNodeID("i=2041")
	f, err := eventFilter(e, nil)
	if err != nil {
		t.Fatal(err)
	}
	var ops []ua.FilterOperator
	for _, el := range f.WhereClause.Elements {
		ops = append(ops, el.FilterOperator)
	}
	want := []ua.FilterOperator{ua.FilterOperatorAnd, ua.FilterOperatorGreaterThanOrEqual, ua.FilterOperatorAnd, ua.FilterOperatorEquals, ua.FilterOperatorOfType}
	if !slices.Equal(ops, want) {
		t.Fatalf("elements %v, want %v", ops, want)
	}
	for _, i := range []int{0, 2} {
		a := f.WhereClause.Elements[i].FilterOperands[0].Value.(*ua.ElementOperand).Index
		b := f.WhereClause.Elements[i].FilterOperands[1].Value.(*ua.ElementOperand).Index
		if a != uint32(i+1) || b != uint32(i+2) {
			t.Errorf("And at %d points at %d and %d", i, a, b)
		}
	}
	if _, err := ua.Encode(f); err != nil {
		t.Errorf("encode the filter: %v", err)
	}
}
