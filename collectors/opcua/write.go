package opcua

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
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
				if reflect.DeepEqual(smp.Value, want) {
					out.Value, out.ReadBack = smp.Value, config.ReadBackSubscription
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

// toVariant converts a command's value to what the node holds, refusing a
// value of the wrong type or shape, or out of the type's range.
func toVariant(value any, nt nodeType) (*ua.Variant, error) {
	if _, ok := writableTypes[nt.builtin]; !ok {
		what := nt.builtin
		if what == "" {
			what = "a structure or a type of the PLC's own"
		}
		return nil, command.Refuse(command.WrongType, "the node holds %s, which is not writable from MQTT", what)
	}
	elems, isArray := arrayOf(value)
	switch {
	case nt.rank >= 2:
		return nil, command.Refuse(command.WrongType, "the node holds a matrix of %s, which is not writable from MQTT", nt.builtin)
	case isArray && nt.rank == -1:
		return nil, command.Refuse(command.WrongType, "an array for a scalar %s node", nt.builtin)
	case !isArray && nt.rank == 1:
		return nil, command.Refuse(command.WrongType, "a scalar for an array of %s", nt.builtin)
	case isArray && nt.length > 0 && uint32(len(elems)) != nt.length:
		return nil, command.Refuse(command.WrongType, "an array of %d elements; the node holds %d", len(elems), nt.length)
	}
	if !isArray {
		x, err := toScalar(value, nt.builtin)
		if err != nil {
			return nil, err
		}
		return ua.NewVariant(x)
	}
	slice := reflect.MakeSlice(reflect.SliceOf(writableTypes[nt.builtin]), len(elems), len(elems))
	for i, e := range elems {
		x, err := toScalar(e, nt.builtin)
		if err != nil {
			r := err.(*command.Refusal)
			return nil, command.Refuse(r.Status, "element %d: %s", i, r.Reason)
		}
		slice.Index(i).Set(reflect.ValueOf(x))
	}
	return ua.NewVariant(slice.Interface())
}

// writableTypes are the built-in types a command can write, with the Go
// type gopcua encodes each from.
var writableTypes = map[string]reflect.Type{
	"Boolean": reflect.TypeFor[bool](), "SByte": reflect.TypeFor[int8](), "Byte": reflect.TypeFor[uint8](),
	"Int16": reflect.TypeFor[int16](), "UInt16": reflect.TypeFor[uint16](), "Int32": reflect.TypeFor[int32](),
	"UInt32": reflect.TypeFor[uint32](), "Int64": reflect.TypeFor[int64](), "UInt64": reflect.TypeFor[uint64](),
	"Float": reflect.TypeFor[float32](), "Double": reflect.TypeFor[float64](), "String": reflect.TypeFor[string](),
	"DateTime": reflect.TypeFor[time.Time](), "ByteString": reflect.TypeFor[[]byte](),
	"LocalizedText": reflect.TypeFor[*ua.LocalizedText](),
}

// numericBits are the integer types with their width and signedness.
var numericBits = map[string]struct {
	bits   int
	signed bool
}{"SByte": {8, true}, "Byte": {8, false}, "Int16": {16, true}, "UInt16": {16, false}, "Int32": {32, true},
	"UInt32": {32, false}, "Int64": {64, true}, "UInt64": {64, false}, "Float": {0, true}, "Double": {0, true}}

func arrayOf(v any) ([]any, bool) {
	switch x := v.(type) {
	case []any:
		return x, true
	case []byte, string, nil:
		return nil, false
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Slice {
		return nil, false
	}
	out := make([]any, rv.Len())
	for i := range out {
		out[i] = rv.Index(i).Interface()
	}
	return out, true
}

// toScalar converts one value to the Go type of a built-in type.
func toScalar(v any, typ string) (any, error) {
	switch typ {
	case "Boolean":
		if b, ok := v.(bool); ok {
			return b, nil
		}
	case "String":
		if s, ok := v.(string); ok {
			return s, nil
		}
	case "LocalizedText":
		// A plain string is the text without a locale (an alarm's comment).
		if s, ok := v.(string); ok {
			return &ua.LocalizedText{EncodingMask: ua.LocalizedTextText, Text: s}, nil
		}
	case "DateTime":
		switch x := v.(type) {
		case time.Time:
			return x, nil
		case string:
			t, err := time.Parse(time.RFC3339Nano, x)
			if err != nil {
				return nil, command.Refuse(command.WrongType, "%s is not an RFC 3339 time", strconv.Quote(short(x)))
			}
			return t, nil
		}
	case "ByteString":
		switch x := v.(type) {
		case []byte:
			return x, nil
		case string:
			b, err := base64.StdEncoding.DecodeString(x)
			if err != nil {
				return nil, command.Refuse(command.WrongType, "a ByteString is written as base64")
			}
			return b, nil
		}
	case "Float", "Double":
		f, ok, err := floatOf(v)
		if err != nil {
			return nil, err
		}
		if ok {
			if typ == "Double" {
				return f, nil
			}
			if math.Abs(f) > math.MaxFloat32 && !math.IsInf(f, 0) {
				return nil, command.Refuse(command.OutOfRange, "%g does not fit a Float", f)
			}
			return float32(f), nil
		}
	default:
		return toInteger(v, typ)
	}
	return nil, command.Refuse(command.WrongType, "%s for a %s node", describe(v), typ)
}

func floatOf(v any) (float64, bool, error) {
	switch x := v.(type) {
	case json.Number:
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil {
			return 0, false, command.Refuse(command.OutOfRange, "%s does not fit a Double", short(string(x)))
		}
		return f, true, nil
	case float64:
		return x, true, nil
	case float32:
		return float64(x), true, nil
	case int64:
		return float64(x), true, nil
	case uint64:
		return float64(x), true, nil
	}
	return 0, false, nil
}

// toInteger converts to an integer type: whole numbers only, within range.
func toInteger(v any, typ string) (any, error) {
	nb, ok := numericBits[typ]
	if !ok {
		return nil, command.Refuse(command.WrongType, "%s is not writable", typ)
	}
	var i int64
	var u uint64
	neg := false
	switch x := v.(type) {
	case json.Number:
		s := string(x)
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			i, u, neg = n, uint64(n), n < 0
		} else if n, err := strconv.ParseUint(s, 10, 64); err == nil {
			u = n
			i = math.MaxInt64 // beyond every signed type
		} else if f, err := strconv.ParseFloat(s, 64); err == nil && f == math.Trunc(f) && math.Abs(f) < 1<<63 {
			i, u, neg = int64(f), uint64(int64(f)), f < 0
		} else if err == nil && f == math.Trunc(f) || errors.Is(err, strconv.ErrRange) {
			return nil, command.Refuse(command.OutOfRange, "%s does not fit %s", short(s), typ)
		} else {
			return nil, command.Refuse(command.WrongType, "%s is not a whole number, as %s needs", short(s), typ)
		}
	case int64:
		i, u, neg = x, uint64(x), x < 0
	case uint64:
		u = x
		i = int64(min(x, math.MaxInt64))
	case float64, float32:
		f, _, _ := floatOf(x)
		if f != math.Trunc(f) {
			return nil, command.Refuse(command.WrongType, "%g is not a whole number, as %s needs", f, typ)
		}
		if math.Abs(f) >= 1<<63 {
			return nil, command.Refuse(command.OutOfRange, "%g does not fit %s", f, typ)
		}
		i, u, neg = int64(f), uint64(int64(f)), f < 0
	default:
		return nil, command.Refuse(command.WrongType, "%s for a %s node", describe(v), typ)
	}
	if nb.signed {
		lo, hi := int64(-1)<<(nb.bits-1), int64(1)<<(nb.bits-1)-1
		if nb.bits == 64 {
			lo, hi = math.MinInt64, math.MaxInt64
		}
		if !neg && u > uint64(hi) || i < lo {
			return nil, command.Refuse(command.OutOfRange, "%s does not fit %s (%d..%d)", numberText(v), typ, lo, hi)
		}
		switch nb.bits {
		case 8:
			return int8(i), nil
		case 16:
			return int16(i), nil
		case 32:
			return int32(i), nil
		}
		return i, nil
	}
	hi := uint64(1)<<nb.bits - 1
	if nb.bits == 64 {
		hi = math.MaxUint64
	}
	if neg || u > hi {
		return nil, command.Refuse(command.OutOfRange, "%s does not fit %s (0..%d)", numberText(v), typ, hi)
	}
	switch nb.bits {
	case 8:
		return uint8(u), nil
	case 16:
		return uint16(u), nil
	case 32:
		return uint32(u), nil
	}
	return u, nil
}

func numberText(v any) string {
	if n, ok := v.(json.Number); ok {
		return short(string(n))
	}
	return fmt.Sprint(v)
}

// describe names a value's JSON kind for a message.
func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case string:
		return "a string"
	case json.Number, float64, float32, int64, uint64:
		return "a number"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	case time.Time:
		return "a time"
	case []byte:
		return "bytes"
	default:
		return fmt.Sprintf("a %T", x)
	}
}

// short bounds text quoted from a command.
func short(s string) string {
	if len(s) > 40 {
		return strings.ToValidUTF8(s[:40], "") + "..."
	}
	return s
}
