package opcua

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/collectors/opcua/uaclient"
	"github.com/tagbridge/tagbridge/config"
)

// eventHandle and above are the client handles of event monitored items
// (below heartbeatHandle): eventHandle+i is the session's i-th stream.
const eventHandle = 1 << 30

// eventRef is an event stream and the PLC entry it belongs to.
type eventRef struct {
	plc string
	config.EventStream
}

// eventsOf are the event streams of a session's PLC entries.
func eventsOf(plcs []config.PLC) []eventRef {
	var out []eventRef
	for _, p := range plcs {
		for _, e := range p.Events {
			out = append(out, eventRef{plc: p.Name, EventStream: e})
		}
	}
	return out
}

// Refresh events (Part 9, 5.5.7): they bracket a ConditionRefresh's
// replay and are not published.
const (
	refreshStartEventType = 2787
	refreshEndEventType   = 2788
)

// subscribeEvents creates the event monitored items of the session's
// streams in a subscription of their own, then asks for a ConditionRefresh
// so that conditions already active (at start, or during an outage) are
// reported again. It runs after every subscription (re)creation. Failures
// are logged: values flow without events.
func (s *Session) subscribeEvents(ctx context.Context, c *uaclient.Client, st *feed) {
	if len(s.events) == 0 {
		return
	}
	subID, err := st.Create(ctx, c, s.plc.PublishingInterval.Duration(), maxNotificationsPerPublish)
	if err != nil {
		s.log.Warn().Err(err).Msg("event subscription not created; no events from this PLC until the next reconnect")
		return
	}
	req := &ua.CreateMonitoredItemsRequest{SubscriptionID: subID, TimestampsToReturn: ua.TimestampsToReturnBoth}
	refresh := false
	for i, e := range s.events {
		filter, err := eventFilter(e.EventStream, c.Namespaces())
		if err != nil {
			s.log.Warn().Err(err).Str("events", e.Name).Msg("event stream not subscribed")
			continue
		}
		notifier, err := resolveNodeID(e.Notifier, c.Namespaces())
		if err != nil {
			s.log.Warn().Err(err).Str("events", e.Name).Msg("event stream not subscribed")
			continue
		}
		refresh = refresh || e.IsConditionType()
		req.ItemsToCreate = append(req.ItemsToCreate, &ua.MonitoredItemCreateRequest{
			ItemToMonitor:  &ua.ReadValueID{NodeID: notifier, AttributeID: ua.AttributeIDEventNotifier, DataEncoding: &ua.QualifiedName{}},
			MonitoringMode: ua.MonitoringModeReporting,
			RequestedParameters: &ua.MonitoringParameters{
				ClientHandle:  uint32(eventHandle + i),
				QueueSize:     1000, // events are not values: none may be overwritten
				DiscardOldest: true,
				Filter:        ua.NewExtensionObject(filter),
			},
		})
	}
	if len(req.ItemsToCreate) == 0 {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	res, err := call[*ua.CreateMonitoredItemsResponse](rctx, c, req)
	if err != nil {
		s.log.Warn().Err(err).Msg("event monitored items not created; no events from this PLC until the next reconnect")
		return
	}
	for i, r := range res.Results {
		if r != nil && r.StatusCode != ua.StatusOK && i < len(req.ItemsToCreate) {
			h := req.ItemsToCreate[i].RequestedParameters.ClientHandle - eventHandle
			s.log.Warn().Str("events", s.events[h].Name).Str("status", statusName(r.StatusCode)).Msg("the PLC refused an event stream")
		}
	}
	if refresh {
		s.conditionRefresh(rctx, c, subID)
	}
}

// conditionRefresh calls ConditionType.ConditionRefresh (Part 9, 5.5.7)
// for the event subscription; a server that refuses it only costs the
// replay of conditions active before now.
func (s *Session) conditionRefresh(ctx context.Context, c *uaclient.Client, subID uint32) {
	res, err := call[*ua.CallResponse](ctx, c, &ua.CallRequest{MethodsToCall: []*ua.CallMethodRequest{{
		ObjectID:       ua.NewNumericNodeID(0, id.ConditionType),
		MethodID:       ua.NewNumericNodeID(0, id.ConditionType_ConditionRefresh),
		InputArguments: []*ua.Variant{ua.MustVariant(subID)},
	}}})
	if err == nil && len(res.Results) == 1 && res.Results[0] != nil && res.Results[0].StatusCode != ua.StatusOK {
		err = res.Results[0].StatusCode
	}
	if err != nil {
		s.log.Warn().Err(err).Msg("ConditionRefresh failed: conditions active before now are not reported until they change")
		return
	}
	s.log.Debug().Uint32("subscription", subID).Msg("ConditionRefresh requested")
}

// handleEvents turns event notifications into samples: one per event, the
// stream's name as tag, the selected fields as a Structure of the event's
// type, Time as source and ReceiveTime as server time.
func (s *Session) handleEvents(ctx context.Context, n *ua.EventNotificationList, out chan<- collectors.Batch) {
	var batch collectors.Batch
	for _, ev := range n.Events {
		if ev == nil || ev.ClientHandle < eventHandle || int(ev.ClientHandle-eventHandle) >= len(s.events) {
			continue
		}
		e := s.events[ev.ClientHandle-eventHandle]
		smp, ok := eventSample(e, ev.EventFields)
		if !ok {
			s.log.Debug().Str("events", e.Name).Msg("ConditionRefresh bracket event")
			continue
		}
		batch = append(batch, smp)
	}
	if len(batch) == 0 {
		return
	}
	s.states.Collected(batch)
	select {
	case out <- batch:
	case <-ctx.Done():
	}
}

// eventSample is the sample of one event; ok is false for the refresh
// bracket events.
func eventSample(e eventRef, fields []*ua.Variant) (collectors.Sample, bool) {
	st := collectors.Structure{Fields: make([]collectors.Field, 0, len(e.Select))}
	smp := collectors.Sample{PLC: e.plc, Tag: e.Name, Node: e.Notifier.String(), Type: collectors.TypeEvent}
	field := func(i int) *ua.Variant {
		if i < len(fields) {
			return fields[i]
		}
		return nil
	}
	// After the selected fields come EventType, when not selected, and
	// the ConditionId of condition events (eventFilter).
	extra := len(e.Select)
	typeAt := slices.Index(e.Select, "EventType")
	if typeAt < 0 {
		typeAt, extra = extra, extra+1
	}
	if id, ok := field(typeAt).Value().(*ua.NodeID); ok {
		if n := id.IntID(); id.Namespace() == 0 && (n == refreshStartEventType || n == refreshEndEventType) {
			return smp, false
		}
		st.TypeID = nodeIDString(id)
	}
	for i, name := range e.Select {
		val, _ := convertValue(field(i))
		switch name {
		case "Time":
			smp.SourceTime, _ = val.(time.Time)
		case "ReceiveTime":
			smp.ServerTime, _ = val.(time.Time)
		}
		st.Fields = append(st.Fields, collectors.Field{Name: name, Value: val})
	}
	if e.IsConditionType() {
		if val, _ := convertValue(field(extra)); val != nil {
			st.Fields = append(st.Fields, collectors.Field{Name: "ConditionId", Value: val})
		}
	}
	smp.Value = st
	return smp, true
}

// eventFilter is the EventFilter of a stream: its fields from its event
// type (then EventType if not selected, and the ConditionId of condition
// events), and its where, with "type = <event_type>" unless it has a type.
func eventFilter(e config.EventStream, namespaces []string) (*ua.EventFilter, error) {
	typ, err := resolveNodeID(e.EventType, namespaces)
	if err != nil {
		return nil, fmt.Errorf("event_type: %w", err)
	}
	f := &ua.EventFilter{WhereClause: &ua.ContentFilter{}}
	for _, path := range e.Select {
		f.SelectClauses = append(f.SelectClauses, fieldOperand(typ, path))
	}
	if !slices.Contains(e.Select, "EventType") { // to tell the refresh bracket events, not published
		f.SelectClauses = append(f.SelectClauses, fieldOperand(typ, "EventType"))
	}
	if e.IsConditionType() {
		f.SelectClauses = append(f.SelectClauses, &ua.SimpleAttributeOperand{
			TypeDefinitionID: ua.NewNumericNodeID(0, id.ConditionType), AttributeID: ua.AttributeIDNodeID,
		})
	}
	clauses, err := config.ParseWhere(e.Where)
	if err != nil {
		return nil, err
	}
	if e.EventType.Raw != config.BaseEventType && !slices.ContainsFunc(clauses, func(c config.Clause) bool { return c.Field == "type" }) {
		// Only events of the stream's type: a notifier reports others too
		// (audit events of an acknowledgement, say).
		clauses = append(clauses, config.Clause{Field: "type", Op: "=", Value: e.EventType})
	}
	var elems []*ua.ContentFilterElement
	for i, c := range clauses {
		el, err := clauseElement(typ, c, namespaces)
		if err != nil {
			return nil, err
		}
		if i < len(clauses)-1 {
			// And(this, the rest): this at 2i+1, the rest's And at 2i+2.
			elems = append(elems, &ua.ContentFilterElement{FilterOperator: ua.FilterOperatorAnd, FilterOperands: []*ua.ExtensionObject{
				ua.NewExtensionObject(&ua.ElementOperand{Index: uint32(len(elems) + 1)}),
				ua.NewExtensionObject(&ua.ElementOperand{Index: uint32(len(elems) + 2)}),
			}}, el)
			continue
		}
		elems = append(elems, el)
	}
	f.WhereClause.Elements = elems
	return f, nil
}

// fieldOperand selects a field by its browse path from the event type:
// "ActiveState/Id", a level with another namespace as "2:Level".
func fieldOperand(typ *ua.NodeID, path string) *ua.SimpleAttributeOperand {
	op := &ua.SimpleAttributeOperand{TypeDefinitionID: typ, AttributeID: ua.AttributeIDValue}
	for _, name := range strings.Split(path, "/") {
		q := &ua.QualifiedName{Name: name}
		if ns, rest, ok := strings.Cut(name, ":"); ok {
			if n, err := strconv.ParseUint(ns, 10, 16); err == nil {
				q = &ua.QualifiedName{NamespaceIndex: uint16(n), Name: rest}
			}
		}
		op.BrowsePath = append(op.BrowsePath, q)
	}
	return op
}

var whereOps = map[string]ua.FilterOperator{
	"=": ua.FilterOperatorEquals, "<": ua.FilterOperatorLessThan,
	"<=": ua.FilterOperatorLessThanOrEqual, ">": ua.FilterOperatorGreaterThan, ">=": ua.FilterOperatorGreaterThanOrEqual,
}

func clauseElement(typ *ua.NodeID, c config.Clause, namespaces []string) (*ua.ContentFilterElement, error) {
	if c.Field == "type" {
		id, err := resolveNodeID(c.Value.(config.NodeID), namespaces)
		if err != nil {
			return nil, fmt.Errorf("where: type: %w", err)
		}
		return &ua.ContentFilterElement{FilterOperator: ua.FilterOperatorOfType, FilterOperands: []*ua.ExtensionObject{
			ua.NewExtensionObject(&ua.LiteralOperand{Value: ua.MustVariant(id)}),
		}}, nil
	}
	var lit *ua.Variant
	switch v := c.Value.(type) {
	case int64:
		if v >= -1<<31 && v < 1<<31 {
			lit = ua.MustVariant(int32(v))
		} else {
			lit = ua.MustVariant(v)
		}
	case float64:
		lit = ua.MustVariant(v)
	case string:
		lit = ua.MustVariant(v)
	case bool:
		lit = ua.MustVariant(v)
	default:
		return nil, fmt.Errorf("where: %s: value of type %T", c.Field, c.Value)
	}
	operands := []*ua.ExtensionObject{ua.NewExtensionObject(fieldOperand(typ, c.Field)), ua.NewExtensionObject(&ua.LiteralOperand{Value: lit})}
	return &ua.ContentFilterElement{FilterOperator: whereOps[c.Op], FilterOperands: operands}, nil
}
