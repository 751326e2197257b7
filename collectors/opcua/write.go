package opcua

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/collectors/opcua/uaclient"
	"github.com/tagbridge/tagbridge/collectors/opcua/uasc"
	"github.com/tagbridge/tagbridge/collectors/opcua/uastatus"
	"github.com/tagbridge/tagbridge/command"
	"github.com/tagbridge/tagbridge/config"
)

// subscriptionReadBack bounds the wait for the subscription to deliver a
// written value, beyond the tag's publishing interval.
const subscriptionReadBack = 2 * time.Second

// writeLink gives commands the session's current client, and caches each
// tag's declared type for the life of one connection.
type writeLink struct {
	mu      sync.Mutex
	c       *uaclient.Client // nil while the PLC is down
	types   map[uint32]nodeType
	waiters map[string][]chan collectors.Sample // by PLC entry and tag (waitKey)
	waiting atomic.Int32                        // len(waiters): the value path looks at this alone

	entries map[string]config.PLC // PLC entries by name: read-back mode, methods
}

// nodeType is what a tag's node holds: a built-in type, scalar or array.
type nodeType struct {
	builtin string // e.g. "Int32"; "" for a type that is not writable here
	rank    int32  // ValueRank: -1 scalar, 1 array, ...
	length  uint32 // fixed array length from ArrayDimensions; 0: any

	dataType *ua.NodeID // the DataType: a structure's is learned (writestruct.go)
	dims     []uint32   // ArrayDimensions of a matrix; 0: any length
}

// attach gives commands a new client (nil: the PLC is down); the type
// cache starts again, as a reconnect may find a new PLC program.
func (l *writeLink) attach(c *uaclient.Client) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.c = c
	l.types = nil
}

func (l *writeLink) client() *uaclient.Client {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.c
}

func waitKey(plc, tag string) string { return plc + "\x00" + tag }

// delivered hands a batch's samples to the commands waiting for their
// read-back; without a waiter it costs one atomic load.
func (l *writeLink) delivered(batch collectors.Batch) {
	if l.waiting.Load() == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, smp := range batch {
		for _, ch := range l.waiters[waitKey(smp.PLC, smp.Tag)] {
			select {
			case ch <- smp:
			default:
			}
		}
	}
}

func (l *writeLink) wait(plc, tag string) (<-chan collectors.Sample, func()) {
	key := waitKey(plc, tag)
	ch := make(chan collectors.Sample, 16)
	l.mu.Lock()
	if l.waiters == nil {
		l.waiters = map[string][]chan collectors.Sample{}
	}
	l.waiters[key] = append(l.waiters[key], ch)
	l.waiting.Store(int32(len(l.waiters)))
	l.mu.Unlock()
	return ch, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		ws := l.waiters[key]
		for i, w := range ws {
			if w == ch {
				l.waiters[key] = append(ws[:i], ws[i+1:]...)
				break
			}
		}
		if len(l.waiters[key]) == 0 {
			delete(l.waiters, key)
		}
		l.waiting.Store(int32(len(l.waiters)))
	}
}

// handleOf finds a tag of a PLC entry; commands call it beside the
// session's goroutine, which a reload's retag changes the tags on.
func (s *Session) handleOf(plc, tag string) (uint32, tagRef, bool) {
	s.tagsMu.RLock()
	defer s.tagsMu.RUnlock()
	for h, t := range s.tags {
		if t.plc == plc && t.Name == tag {
			return uint32(h), t, true
		}
	}
	return 0, tagRef{}, false
}

// Write writes value to a tag, converted to the node's declared type, and
// confirms it as the PLC entry's read_back says. A PLC that is down is
// refused at once; so is a value that does not fit the node.
func (s *Session) Write(ctx context.Context, plc, tag string, value any, named string) (command.Outcome, error) {
	h, ref, ok := s.handleOf(plc, tag)
	if !ok || !ref.Writable {
		return command.Outcome{}, command.Refuse(command.NotAllowed, "tag %q of plc %q is not writable", tag, plc)
	}
	c := s.link.client()
	if c == nil {
		return command.Outcome{}, command.Refuse(command.PLCDown, "plc %q is not connected", plc)
	}
	node, err := resolveNodeID(ref.Node, c.Namespaces())
	if err != nil {
		return command.Outcome{}, command.Refuse(command.NotAllowed, "tag %q: %s", tag, err)
	}
	nt, err := s.link.nodeType(ctx, c, h, node)
	if err != nil {
		return outcomeOf(err)
	}
	if named != "" && strings.TrimSuffix(named, "[]") != nt.builtin && nt.builtin != "" {
		if _, ok := numericBits[nt.builtin]; !ok {
			return command.Outcome{}, command.Refuse(command.WrongType, "value sent as %s; the node holds %s", named, nt.builtin)
		}
	}
	v, want, err := s.writeVariant(ctx, c, value, nt)
	if err != nil {
		return command.Outcome{}, err
	}
	mode := s.link.entries[plc].Commands.ReadBack
	var delivered <-chan collectors.Sample
	if mode == config.ReadBackSubscription {
		ch, stop := s.link.wait(plc, tag)
		defer stop()
		delivered = ch
	}
	wctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	res, err := call[*ua.WriteResponse](wctx, c, &ua.WriteRequest{NodesToWrite: []*ua.WriteValue{{
		NodeID:      node,
		AttributeID: ua.AttributeIDValue,
		Value:       &ua.DataValue{EncodingMask: ua.DataValueValue, Value: v},
	}}})
	if err != nil {
		return outcomeOf(err)
	}
	if len(res.Results) != 1 {
		return command.Outcome{}, fmt.Errorf("write: server returned %d results for 1 node", len(res.Results))
	}
	out := command.Outcome{Status: statusOf(res.Results[0])}
	if uastatus.IsBad(res.Results[0]) {
		return out, nil
	}
	switch mode {
	case config.ReadBackRead:
		rctx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		dv, err := read(rctx, c, []*ua.ReadValueID{{NodeID: node, AttributeID: ua.AttributeIDValue}})
		if err != nil {
			return outcomeOf(err)
		}
		s.types.resolve(dv[0].Value, s.log)
		out.Value, _ = convertValue(dv[0].Value)
		out.ReadBack = config.ReadBackRead
		if uastatus.IsBad(dv[0].Status) {
			out.Status, out.Value, out.ReadBack = statusOf(dv[0].Status), nil, ""
		}
	case config.ReadBackSubscription:
		wait := time.NewTimer(ref.PublishingInterval.Duration() + subscriptionReadBack)
		defer wait.Stop()
		for out.ReadBack == "" {
			select {
			case smp := <-delivered:
				if v := smp.Any(); reflect.DeepEqual(v, want) {
					out.Value, out.ReadBack = v, config.ReadBackSubscription
				}
			case <-wait.C:
				out.Status = statusOf(ua.StatusUncertainNoCommunicationLastUsableValue)
				return out, nil
			case <-ctx.Done():
				return out, ctx.Err()
			}
		}
	}
	return out, nil
}

// Call calls an allowed method of a PLC entry with args converted to the
// method's configured argument types.
func (s *Session) Call(ctx context.Context, plc, method string, args []any) (command.Outcome, error) {
	var m config.Method
	found := false
	for _, cand := range s.link.entries[plc].Commands.Methods {
		if cand.Name == method {
			m, found = cand, true
		}
	}
	if !found {
		return command.Outcome{}, command.Refuse(command.NotAllowed, "method %q of plc %q is not allowed", method, plc)
	}
	if len(args) != len(m.Args) {
		return command.Outcome{}, command.Refuse(command.WrongType, "method %q takes %d arguments, got %d", method, len(m.Args), len(args))
	}
	c := s.link.client()
	if c == nil {
		return command.Outcome{}, command.Refuse(command.PLCDown, "plc %q is not connected", plc)
	}
	obj, err := resolveNodeID(m.Object, c.Namespaces())
	if err != nil {
		return command.Outcome{}, command.Refuse(command.NotAllowed, "method %q object: %s", method, err)
	}
	meth, err := resolveNodeID(m.Method, c.Namespaces())
	if err != nil {
		return command.Outcome{}, command.Refuse(command.NotAllowed, "method %q: %s", method, err)
	}
	in := make([]*ua.Variant, len(args))
	for i, a := range args {
		typ, isArray := strings.CutSuffix(m.Args[i], "[]")
		rank := int32(-1)
		if isArray {
			rank = 1
		}
		v, err := toVariant(a, nodeType{builtin: typ, rank: rank})
		if err != nil {
			r := err.(*command.Refusal)
			return command.Outcome{}, command.Refuse(r.Status, "argument %d: %s", i, r.Reason)
		}
		in[i] = v
	}
	cctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	res, err := call[*ua.CallResponse](cctx, c, &ua.CallRequest{MethodsToCall: []*ua.CallMethodRequest{{
		ObjectID: obj, MethodID: meth, InputArguments: in,
	}}})
	if err != nil {
		return outcomeOf(err)
	}
	if len(res.Results) != 1 || res.Results[0] == nil {
		return command.Outcome{}, fmt.Errorf("call: server returned %d results for 1 method", len(res.Results))
	}
	r := res.Results[0]
	out := command.Outcome{Status: statusOf(r.StatusCode)}
	for _, v := range r.OutputArguments {
		x, _ := convertValue(v)
		out.Outputs = append(out.Outputs, x)
	}
	if out.Outputs == nil && !uastatus.IsBad(r.StatusCode) {
		out.Outputs = []any{}
	}
	return out, nil
}

func statusOf(c ua.StatusCode) command.Status {
	return command.Status{Name: uastatus.Name(c), Code: uint32(c)}
}

// outcomeOf sorts a failed request: a status the PLC answered is its
// outcome; a lost channel leaves the outcome unknown.
func outcomeOf(err error) (command.Outcome, error) {
	var code ua.StatusCode
	if errors.As(err, &code) && !errors.Is(err, uasc.ErrChannelClosed) && !isSessionError(code) {
		return command.Outcome{Status: statusOf(code)}, nil
	}
	return command.Outcome{}, err
}

// nodeType reads a tag's DataType, ValueRank and ArrayDimensions once per
// connection.
func (l *writeLink) nodeType(ctx context.Context, c sender, h uint32, node *ua.NodeID) (nodeType, error) {
	l.mu.Lock()
	nt, ok := l.types[h]
	l.mu.Unlock()
	if ok {
		return nt, nil
	}
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	res, err := read(rctx, c, []*ua.ReadValueID{
		{NodeID: node, AttributeID: ua.AttributeIDDataType},
		{NodeID: node, AttributeID: ua.AttributeIDValueRank},
		{NodeID: node, AttributeID: ua.AttributeIDArrayDimensions},
	})
	if err != nil {
		return nt, err
	}
	if st := res[0].Status; st != ua.StatusOK {
		return nt, &uastatus.Error{Step: "read data type", Code: st}
	}
	dt, _ := res[0].Value.Value().(*ua.NodeID)
	if dt != nil {
		if t := declaredType(dt, false); t != collectors.TypeNull {
			nt.builtin = t.String()
		}
		nt.dataType = dt
	}
	nt.rank = -1
	if r, ok := res[1].Value.Value().(int32); ok && res[1].Status == ua.StatusOK {
		nt.rank = r
	}
	if dims, ok := res[2].Value.Value().([]uint32); ok && len(dims) == 1 && res[2].Status == ua.StatusOK {
		nt.length = dims[0]
	}
	if dims, ok := res[2].Value.Value().([]uint32); ok && res[2].Status == ua.StatusOK {
		nt.dims = dims
	}
	l.mu.Lock()
	if l.c == c {
		if l.types == nil {
			l.types = map[uint32]nodeType{}
		}
		l.types[h] = nt
	}
	l.mu.Unlock()
	return nt, nil
}
