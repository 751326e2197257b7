package config

import (
	"fmt"
	"strings"
)

// EventStream is one event subscription of a PLC (plcs[].events): the
// events of EventType and its subtypes that Notifier reports, with the
// fields Select names, those that match Where. Each event is published on
// the stream's topic like a value of a tag named Name.
type EventStream struct {
	Name      string   `yaml:"name"`
	Notifier  NodeID   `yaml:"notifier"`   // default i=2253, the Server object
	EventType NodeID   `yaml:"event_type"` // default i=2041 BaseEventType; i=2915 AlarmConditionType
	Select    []string `yaml:"select"`     // browse paths from the event type, "ActiveState/Id"
	Where     string   `yaml:"where"`      // e.g. "Severity >= 500 and SourceName = 'Tank1'"
	Topic     string   `yaml:"topic"`      // its own topic template; empty: mqtt.topic
}

// Default event fields (Part 5 BaseEventType, and ConditionType and
// AlarmConditionType for condition events).
var (
	DefaultEventFields     = []string{"EventId", "EventType", "SourceNode", "SourceName", "Time", "ReceiveTime", "Severity", "Message"}
	DefaultConditionFields = []string{"ConditionName", "ActiveState/Id", "AckedState/Id", "ConfirmedState/Id", "Retain"}
)

// BaseEventType is the default event type.
const BaseEventType = "i=2041"

// IsConditionType tells whether the stream asks for condition events (any
// event type but BaseEventType), which get the condition fields and a
// ConditionRefresh.
func (e EventStream) IsConditionType() bool { return e.EventType.Raw != BaseEventType }

func (p *PLC) applyEventDefaults() {
	for i := range p.Events {
		e := &p.Events[i]
		if e.Notifier.Raw == "" {
			e.Notifier, _ = ParseNodeID("i=2253")
		}
		if e.EventType.Raw == "" {
			e.EventType, _ = ParseNodeID(BaseEventType)
		}
		if len(e.Select) == 0 {
			e.Select = append([]string(nil), DefaultEventFields...)
			if e.IsConditionType() {
				e.Select = append(e.Select, DefaultConditionFields...)
			}
		}
	}
}

func (v *validator) events(path string, p *PLC) {
	names := map[string]bool{}
	for _, t := range p.Tags {
		names[t.Name] = true
	}
	for i, e := range p.Events {
		ep := fmt.Sprintf("%s.events[%d]", path, i)
		switch {
		case e.Name == "":
			v.add(ep+".name", "required (the event stream's topic level)")
		case names[e.Name]:
			v.add(ep+".name", "%q is also the name of a tag or event stream", e.Name)
		default:
			v.topicLevel(ep+".name", e.Name)
		}
		names[e.Name] = true
		for j, f := range e.Select {
			if f == "" {
				v.add(fmt.Sprintf("%s.select[%d]", ep, j), "must not be empty")
			}
		}
		if _, err := ParseWhere(e.Where); err != nil {
			v.add(ep+".where", "%s", strings.TrimPrefix(err.Error(), "where: "))
		}
	}
}
