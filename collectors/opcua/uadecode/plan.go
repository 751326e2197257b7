package uadecode

import (
	"reflect"
	"sync"

	"github.com/gopcua/opcua/ua"
)

// plan decodes values of one Go type: the walk gopcua's reflective decoder
// does (fields in order, slices with an Int32 length, pointers allocated
// before they are decoded), over exported fields only, with the bounds of
// the decoder. Plans are built once per type and cached.
type plan struct {
	decode func(d *decoder, v reflect.Value)
	// minSize is the fewest bytes one encoded value takes, to check slice
	// lengths against the bytes left.
	minSize int
}

// plans under construction and built, guarded by the mutex; ready holds
// only complete plans, for lookups without the lock.
var (
	plans struct {
		sync.Mutex
		m map[reflect.Type]*plan
	}
	ready sync.Map // reflect.Type -> *plan
)

// planOf returns the plan of t, building it (and those of its fields) on
// first use. Recursive types work: a plan under construction is already in
// the map, and its decode is only called after construction ends.
func planOf(t reflect.Type) *plan {
	if p, ok := ready.Load(t); ok {
		return p.(*plan)
	}
	plans.Lock()
	defer plans.Unlock()
	if plans.m == nil {
		plans.m = make(map[reflect.Type]*plan)
	}
	p := buildPlan(t)
	for t, p := range plans.m {
		ready.Store(t, p)
	}
	return p
}

func buildPlan(t reflect.Type) *plan {
	if p, ok := plans.m[t]; ok {
		return p
	}
	p := new(plan)
	plans.m[t] = p
	fillPlan(p, t)
	return p
}

var (
	binaryDecoderType = reflect.TypeFor[ua.BinaryDecoder]()
	byteSliceType     = reflect.TypeFor[[]byte]()
)

type builtin struct {
	read    func(d *decoder) any
	minSize int
}

// builtins are gopcua's types with encodings of their own, decoded by hand
// (filled in init: their decoders lead back to planOf).
var builtins map[reflect.Type]builtin

func init() {
	builtins = map[reflect.Type]builtin{
		reflect.TypeFor[*ua.NodeID]():          {func(d *decoder) any { return d.nodeID() }, 2},
		reflect.TypeFor[*ua.ExpandedNodeID]():  {func(d *decoder) any { return d.expandedNodeID() }, 2},
		reflect.TypeFor[*ua.GUID]():            {func(d *decoder) any { return d.guid() }, 16},
		reflect.TypeFor[*ua.LocalizedText]():   {func(d *decoder) any { return d.localizedText() }, 1},
		reflect.TypeFor[*ua.DataValue]():       {func(d *decoder) any { return d.dataValue() }, 1},
		reflect.TypeFor[*ua.DiagnosticInfo]():  {func(d *decoder) any { return d.diagnosticInfo() }, 1},
		reflect.TypeFor[*ua.ExtensionObject](): {func(d *decoder) any { return d.extensionObject() }, 3},
		reflect.TypeFor[*ua.Variant]():         {func(d *decoder) any { return d.variant() }, 1},
	}
}

func fillPlan(p *plan, t reflect.Type) {
	if b, ok := builtins[t]; ok {
		p.minSize = b.minSize
		p.decode = func(d *decoder, v reflect.Value) {
			x := b.read(d)
			if d.err == nil {
				v.Set(reflect.ValueOf(x))
			}
		}
		return
	}
	if t.Implements(binaryDecoderType) {
		fillForeignPlan(p, t)
		return
	}
	if t.Kind() == reflect.Struct && t.ConvertibleTo(timeType) {
		p.minSize = 8
		p.decode = func(d *decoder, v reflect.Value) {
			v.Set(reflect.ValueOf(d.dateTime()).Convert(t))
		}
		return
	}
	switch t.Kind() {
	case reflect.Bool:
		p.minSize = 1
		p.decode = func(d *decoder, v reflect.Value) { v.SetBool(d.boolean()) }
	case reflect.Int8:
		p.minSize = 1
		p.decode = func(d *decoder, v reflect.Value) { v.SetInt(int64(int8(d.u8(t.Name())))) }
	case reflect.Uint8:
		p.minSize = 1
		p.decode = func(d *decoder, v reflect.Value) { v.SetUint(uint64(d.u8(t.Name()))) }
	case reflect.Int16:
		p.minSize = 2
		p.decode = func(d *decoder, v reflect.Value) { v.SetInt(int64(int16(d.u16(t.Name())))) }
	case reflect.Uint16:
		p.minSize = 2
		p.decode = func(d *decoder, v reflect.Value) { v.SetUint(uint64(d.u16(t.Name()))) }
	case reflect.Int32:
		p.minSize = 4
		p.decode = func(d *decoder, v reflect.Value) { v.SetInt(int64(int32(d.u32(t.Name())))) }
	case reflect.Uint32:
		p.minSize = 4
		p.decode = func(d *decoder, v reflect.Value) { v.SetUint(uint64(d.u32(t.Name()))) }
	case reflect.Int64:
		p.minSize = 8
		p.decode = func(d *decoder, v reflect.Value) { v.SetInt(int64(d.u64(t.Name()))) }
	case reflect.Uint64:
		p.minSize = 8
		p.decode = func(d *decoder, v reflect.Value) { v.SetUint(d.u64(t.Name())) }
	case reflect.Float32:
		p.minSize = 4
		p.decode = func(d *decoder, v reflect.Value) { v.SetFloat(float64(d.float32())) }
	case reflect.Float64:
		p.minSize = 8
		p.decode = func(d *decoder, v reflect.Value) { v.SetFloat(d.float64()) }
	case reflect.String:
		p.minSize = 4
		p.decode = func(d *decoder, v reflect.Value) { v.SetString(d.str(t.Name())) }
	case reflect.Slice:
		fillSlicePlan(p, t)
	case reflect.Pointer:
		fillPointerPlan(p, t)
	case reflect.Struct:
		fillStructPlan(p, t)
	default:
		unsupported(p, t, "kind "+t.Kind().String())
	}
}

func unsupported(p *plan, t reflect.Type, why string) {
	p.decode = func(d *decoder, v reflect.Value) {
		d.malformed(t.String(), "cannot decode: %s", why)
	}
}

// fillSlicePlan: an Int32 length (-1 leaves the slice nil, 0 makes it
// empty, like gopcua), checked against the bytes left before allocating.
// []byte is a ByteString, kept as a copy (empty, not nil, for length 0 as
// gopcua does).
func fillSlicePlan(p *plan, t reflect.Type) {
	p.minSize = 4
	elem := t.Elem()
	if elem.Kind() == reflect.Uint8 {
		p.decode = func(d *decoder, v reflect.Value) {
			n, null := d.length(t.String(), d.lim.MaxStringLength, 1)
			if null || !d.charge(t.String(), n) {
				return
			}
			s := d.take(t.String(), n)
			if d.err == nil {
				v.SetBytes(append(make([]byte, 0, n), s...))
			}
		}
		return
	}
	ep := buildPlan(elem)
	size := int(elem.Size())
	p.decode = func(d *decoder, v reflect.Value) {
		n, null := d.length(t.String(), d.lim.MaxArrayLength, ep.minSize)
		if null || !d.chargeN(t.String(), n, size) {
			return
		}
		s := reflect.MakeSlice(t, n, n)
		for i := 0; i < n && d.err == nil; i++ {
			ep.decode(d, s.Index(i))
		}
		if d.err == nil {
			v.Set(s)
		}
	}
}

// fillPointerPlan: gopcua allocates every pointer field before decoding
// into it; there is no null.
func fillPointerPlan(p *plan, t reflect.Type) {
	ep := buildPlan(t.Elem())
	size := int(t.Elem().Size())
	p.decode = func(d *decoder, v reflect.Value) {
		if !d.charge(t.String(), size) {
			return
		}
		x := reflect.New(t.Elem())
		ep.decode(d, x.Elem())
		if d.err == nil {
			v.Set(x)
		}
	}
	p.minSize = minSizeOf(ep)
}

// fillStructPlan: exported fields in order. A struct with unexported fields
// is not gopcua's generated kind and is refused rather than reflected into.
func fillStructPlan(p *plan, t reflect.Type) {
	fields := make([]*plan, t.NumField())
	for i := range fields {
		if f := t.Field(i); !f.IsExported() {
			unsupported(p, t, "unexported field "+f.Name)
			return
		}
	}
	for i := range fields {
		fields[i] = buildPlan(t.Field(i).Type)
	}
	name := t.Name()
	p.decode = func(d *decoder, v reflect.Value) {
		if !d.enter(name) {
			return
		}
		for i, fp := range fields {
			fp.decode(d, v.Field(i))
			if d.err != nil {
				break
			}
		}
		d.leave()
	}
	for _, fp := range fields {
		p.minSize += minSizeOf(fp)
	}
}

// minSizeOf is a plan's minimal encoded size; a plan still under
// construction (a recursive type) counts as 0, which only loosens the check.
func minSizeOf(p *plan) int {
	if p.decode == nil {
		return 0
	}
	return p.minSize
}

// fillForeignPlan: a type with its own Decode that is not one of gopcua's
// built-ins (our rawBody, registered for a PLC's structures) is called as
// gopcua calls it, with the rest of the current buffer, which is at most an
// extension object's length-checked body. It is trusted to bound itself.
func fillForeignPlan(p *plan, t reflect.Type) {
	p.minSize = 0
	p.decode = func(d *decoder, v reflect.Value) {
		if d.err != nil {
			return
		}
		if t.Kind() == reflect.Pointer {
			if !d.charge(t.String(), int(t.Elem().Size())) {
				return
			}
			v.Set(reflect.New(t.Elem()))
		}
		n, err := v.Interface().(ua.BinaryDecoder).Decode(d.b[d.pos:])
		switch {
		case err != nil:
			d.malformed(t.String(), "%v", err)
		case n < 0 || n > d.left():
			d.malformed(t.String(), "decoder claims %d bytes of %d", n, d.left())
		default:
			d.pos += n
		}
	}
}
