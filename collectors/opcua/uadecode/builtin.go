package uadecode

import (
	"reflect"
	"time"

	"github.com/gopcua/opcua/ua"
)

// Sizes of the Go values, for the allocation budget.
var (
	sizeNodeID         = int(reflect.TypeFor[ua.NodeID]().Size())
	sizeExpandedNodeID = int(reflect.TypeFor[ua.ExpandedNodeID]().Size())
	sizeGUID           = int(reflect.TypeFor[ua.GUID]().Size()) + 8
	sizeLocalizedText  = int(reflect.TypeFor[ua.LocalizedText]().Size())
	sizeDataValue      = int(reflect.TypeFor[ua.DataValue]().Size())
	sizeDiagnosticInfo = int(reflect.TypeFor[ua.DiagnosticInfo]().Size())
	sizeExtensionObj   = int(reflect.TypeFor[ua.ExtensionObject]().Size())
	sizeVariant        = int(reflect.TypeFor[ua.Variant]().Size()) + 16 // and its boxed value
)

// NodeId encoding types (Part 6, 5.2.2.9), the low nibble of the mask.
const (
	nodeIDTwoByte    = 0
	nodeIDFourByte   = 1
	nodeIDNumeric    = 2
	nodeIDString     = 3
	nodeIDGUID       = 4
	nodeIDByteString = 5
)

// nodeID reads a NodeId. NodeID's fields are private and its constructors
// cannot reproduce every state gopcua's decoder leaves (the mask's flag and
// reserved bits, a nil versus an empty identifier), so the bytes are bounded
// and checked here, and then gopcua's NodeID.Decode builds the value from a
// copy of exactly those bytes: a flat read with nothing to allocate beyond
// them, and nothing aliasing the message.
func (d *decoder) nodeID() *ua.NodeID {
	start := d.pos
	mask := d.u8("NodeId")
	switch mask & 0xf {
	case nodeIDTwoByte:
		d.take("NodeId", 1)
	case nodeIDFourByte:
		d.take("NodeId", 3)
	case nodeIDNumeric:
		d.take("NodeId", 6)
	case nodeIDGUID:
		d.take("NodeId", 2+16)
	case nodeIDString, nodeIDByteString:
		d.take("NodeId", 2)
		n, null := d.length("NodeId identifier", d.lim.MaxStringLength, 1)
		if !null {
			d.take("NodeId identifier", n)
		}
	default:
		if d.err == nil {
			d.pos = start
			d.malformed("NodeId", "invalid encoding type %d", mask&0xf)
		}
	}
	if d.err != nil || !d.charge("NodeId", sizeNodeID+d.pos-start) {
		return nil
	}
	n := new(ua.NodeID)
	span := append([]byte(nil), d.b[start:d.pos]...)
	if used, err := n.Decode(span); err != nil || used != len(span) {
		d.pos = start
		d.malformed("NodeId", "gopcua read %d of %d bytes: %v", used, len(span), err)
		return nil
	}
	return n
}

// expandedNodeID reads an ExpandedNodeId: a NodeId whose mask flags a
// namespace URI (0x80) and a server index (0x40) after it.
func (d *decoder) expandedNodeID() *ua.ExpandedNodeID {
	n := d.nodeID()
	if n == nil || !d.charge("ExpandedNodeId", sizeExpandedNodeID) {
		return nil
	}
	e := &ua.ExpandedNodeID{NodeID: n}
	if n.URIFlag() {
		e.NamespaceURI = d.str("ExpandedNodeId namespace URI")
	}
	if n.IndexFlag() {
		e.ServerIndex = d.u32("ExpandedNodeId server index")
	}
	if d.err != nil {
		return nil
	}
	return e
}

func (d *decoder) guid() *ua.GUID {
	s := d.take("Guid", 16)
	if s == nil || !d.charge("Guid", sizeGUID) {
		return nil
	}
	var g ua.GUID
	g.Data1 = uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24
	g.Data2 = uint16(s[4]) | uint16(s[5])<<8
	g.Data3 = uint16(s[6]) | uint16(s[7])<<8
	g.Data4 = append([]byte(nil), s[8:16]...)
	return &g
}

func (d *decoder) localizedText() *ua.LocalizedText {
	if !d.charge("LocalizedText", sizeLocalizedText) {
		return nil
	}
	l := &ua.LocalizedText{EncodingMask: d.u8("LocalizedText")}
	if l.Has(ua.LocalizedTextLocale) {
		l.Locale = d.str("LocalizedText locale")
	}
	if l.Has(ua.LocalizedTextText) {
		l.Text = d.str("LocalizedText text")
	}
	if d.err != nil {
		return nil
	}
	return l
}

// dataValue reads a DataValue. Like gopcua, Value is an empty Variant when
// the mask has no value.
func (d *decoder) dataValue() *ua.DataValue {
	if !d.enter("DataValue") {
		return nil
	}
	defer d.leave()
	if !d.charge("DataValue", sizeDataValue) {
		return nil
	}
	v := &ua.DataValue{EncodingMask: d.u8("DataValue")}
	if v.Has(ua.DataValueValue) {
		v.Value = d.variant()
	} else if d.charge("DataValue", sizeVariant) {
		v.Value = new(ua.Variant)
	}
	if v.Has(ua.DataValueStatusCode) {
		v.Status = ua.StatusCode(d.u32("DataValue status"))
	}
	if v.Has(ua.DataValueSourceTimestamp) {
		v.SourceTimestamp = d.dateTime()
	}
	if v.Has(ua.DataValueSourcePicoseconds) {
		v.SourcePicoseconds = d.u16("DataValue source picoseconds")
	}
	if v.Has(ua.DataValueServerTimestamp) {
		v.ServerTimestamp = d.dateTime()
	}
	if v.Has(ua.DataValueServerPicoseconds) {
		v.ServerPicoseconds = d.u16("DataValue server picoseconds")
	}
	if d.err != nil {
		return nil
	}
	return v
}

// diagnosticInfo reads a DiagnosticInfo; its inner DiagnosticInfo counts
// towards the depth.
func (d *decoder) diagnosticInfo() *ua.DiagnosticInfo {
	if !d.enter("DiagnosticInfo") {
		return nil
	}
	defer d.leave()
	if !d.charge("DiagnosticInfo", sizeDiagnosticInfo) {
		return nil
	}
	v := &ua.DiagnosticInfo{EncodingMask: d.u8("DiagnosticInfo")}
	if v.Has(ua.DiagnosticInfoSymbolicID) {
		v.SymbolicID = int32(d.u32("DiagnosticInfo symbolic id"))
	}
	if v.Has(ua.DiagnosticInfoNamespaceURI) {
		v.NamespaceURI = int32(d.u32("DiagnosticInfo namespace URI"))
	}
	if v.Has(ua.DiagnosticInfoLocale) {
		v.Locale = int32(d.u32("DiagnosticInfo locale"))
	}
	if v.Has(ua.DiagnosticInfoLocalizedText) {
		v.LocalizedText = int32(d.u32("DiagnosticInfo localized text"))
	}
	if v.Has(ua.DiagnosticInfoAdditionalInfo) {
		v.AdditionalInfo = d.str("DiagnosticInfo additional info")
	}
	if v.Has(ua.DiagnosticInfoInnerStatusCode) {
		v.InnerStatusCode = ua.StatusCode(d.u32("DiagnosticInfo inner status code"))
	}
	if v.Has(ua.DiagnosticInfoInnerDiagnosticInfo) {
		v.InnerDiagnosticInfo = d.diagnosticInfo()
	}
	if d.err != nil {
		return nil
	}
	return v
}

// extensionObject reads an ExtensionObject as gopcua does: an XML body
// becomes a *ua.XMLElement, a binary body of a type registered with
// ua.RegisterExtensionObject a fresh value of that type decoded by the same
// bounded walker, and the body of an unknown type is skipped (Value nil).
// A length of 0 or -1 means no body.
func (d *decoder) extensionObject() *ua.ExtensionObject {
	if !d.enter("ExtensionObject") {
		return nil
	}
	defer d.leave()
	if !d.charge("ExtensionObject", sizeExtensionObj) {
		return nil
	}
	start := d.pos
	typeID := d.expandedNodeID()
	typeEnd := d.pos
	e := &ua.ExtensionObject{TypeID: typeID, EncodingMask: d.u8("ExtensionObject")}
	if d.err != nil {
		return nil
	}
	if e.EncodingMask == ua.ExtensionObjectEmpty {
		return e
	}
	length := d.u32("ExtensionObject length")
	if d.err != nil {
		return nil
	}
	if length == 0 || length == 0xffffffff {
		return e
	}
	if int64(length) > int64(d.left()) {
		d.malformed("ExtensionObject", "body of %d bytes, %d left", length, d.left())
		return nil
	}
	body := d.take("ExtensionObject body", int(length))
	if e.EncodingMask == ua.ExtensionObjectXML {
		d.within(body, func() {
			x := ua.XMLElement(d.str("ExtensionObject XML body"))
			e.Value = &x
		})
	} else if t := extensionObjectType(d.b[start:typeEnd], typeID.NodeID); t != nil {
		v := reflect.New(t).Elem()
		d.within(body, func() { planOf(t).decode(d, v) })
		e.Value = v.Interface()
	}
	if d.err != nil {
		return nil
	}
	return e
}

// Minimal encoded size of one Variant element of each built-in type, to
// check an array length against the bytes left before allocating.
var variantMinSize = [...]int{
	ua.TypeIDBoolean: 1, ua.TypeIDSByte: 1, ua.TypeIDByte: 1,
	ua.TypeIDInt16: 2, ua.TypeIDUint16: 2,
	ua.TypeIDInt32: 4, ua.TypeIDUint32: 4, ua.TypeIDFloat: 4, ua.TypeIDStatusCode: 4,
	ua.TypeIDInt64: 8, ua.TypeIDUint64: 8, ua.TypeIDDouble: 8, ua.TypeIDDateTime: 8,
	ua.TypeIDString: 4, ua.TypeIDByteString: 4, ua.TypeIDXMLElement: 4,
	ua.TypeIDGUID:   16,
	ua.TypeIDNodeID: 2, ua.TypeIDExpandedNodeID: 2,
	ua.TypeIDQualifiedName: 6, ua.TypeIDLocalizedText: 1,
	ua.TypeIDExtensionObject: 3, ua.TypeIDDataValue: 1, ua.TypeIDVariant: 1, ua.TypeIDDiagnosticInfo: 1,
}

// Variant encoding mask bits (Part 6, 5.2.2.16).
const (
	variantTypeMask   = 0x3f
	variantDimensions = ua.VariantArrayDimensions
	variantArray      = ua.VariantArrayValues
)

// variant reads a Variant: a scalar, an array, or a matrix (a flat array and
// its dimensions, each at least 1, whose product must equal the array
// length, computed without overflow). The value is built with ua.NewVariant,
// which sets the private fields exactly as gopcua's decoder does for every
// canonical encoding. Encodings NewVariant cannot represent (flag bits on a
// null Variant, dimensions without an array or with fewer than two
// dimensions) are first decoded and checked here in full, and then the
// same, now known to be bounded, bytes are handed to gopcua's Variant.Decode
// so the private fields match. So are ByteString arrays, which NewVariant
// refuses when the byte strings differ in length.
func (d *decoder) variant() *ua.Variant {
	if !d.enter("Variant") {
		return nil
	}
	defer d.leave()
	if !d.charge("Variant", sizeVariant) {
		return nil
	}
	start, allocated := d.pos, d.allocated
	mask := d.u8("Variant")
	typ := ua.TypeID(mask & variantTypeMask)
	if d.err != nil {
		return nil
	}
	if typ == ua.TypeIDNull {
		if mask != 0 {
			return d.gopcuaVariant(start, allocated)
		}
		return new(ua.Variant)
	}
	if int(typ) >= len(variantMinSize) {
		d.pos = start
		d.malformed("Variant", "invalid built-in type %d", typ)
		return nil
	}
	if mask&variantArray == 0 {
		v := d.scalar(typ)
		if d.err != nil {
			return nil
		}
		if mask&variantDimensions != 0 {
			return d.gopcuaVariant(start, allocated)
		}
		return d.newVariant(v)
	}

	n, null := d.length("Variant array", d.lim.MaxArrayLength, variantMinSize[typ])
	if d.err != nil {
		return nil
	}
	if null {
		n = -1
	}
	vals := d.array(typ, n)
	if d.err != nil {
		return nil
	}
	if typ == ua.TypeIDByteString {
		// NewVariant takes [][]byte for a matrix and refuses byte strings
		// of different lengths; the array is flat bytes, checked above.
		if mask&variantDimensions != 0 {
			d.dimensions(n)
		}
		return d.gopcuaVariant(start, allocated)
	}
	if mask&variantDimensions == 0 {
		return d.newVariant(vals)
	}

	dims := d.dimensions(n)
	if d.err != nil {
		return nil
	}
	if len(dims) < 2 {
		return d.gopcuaVariant(start, allocated)
	}
	return d.newVariant(split(reflect.ValueOf(vals), dims).Interface())
}

// dimensions reads the dimensions of a matrix of n elements.
func (d *decoder) dimensions(n int) []int {
	count, null := d.length("Variant array dimensions", d.lim.MaxArrayDimensions, 4)
	if d.err != nil {
		return nil
	}
	if null {
		// gopcua refuses a negative count; so do we.
		d.malformed("Variant array dimensions", "null dimensions")
		return nil
	}
	dims := make([]int, count)
	product := int64(1)
	for i := range dims {
		dim := int32(d.u32("Variant array dimension"))
		if d.err != nil {
			return nil
		}
		if dim < 1 {
			d.malformed("Variant array dimension", "dimension %d is %d", i, dim)
			return nil
		}
		// product ≤ n < 2^31 (an Int32) before this step and dim < 2^31,
		// so product × dim cannot overflow an int64; it is refused as soon
		// as it passes n.
		product *= int64(dim)
		if product > int64(n) {
			d.malformed("Variant array dimensions", "dimension %d of %d takes the product past the array length %d", i, dim, n)
			return nil
		}
		dims[i] = int(dim)
	}
	if count > 0 && product != int64(n) {
		d.malformed("Variant array dimensions", "product of dimensions %v is %d, the array length %d", dims, product, n)
		return nil
	}
	return dims
}

// split turns a flat array into nested slices, outermost dimension first,
// as gopcua does: the innermost slices share the flat array.
func split(vals reflect.Value, dims []int) reflect.Value {
	if len(dims) == 1 {
		return vals
	}
	inner := vals.Len() / dims[0]
	first := split(vals.Slice(0, inner), dims[1:])
	out := reflect.MakeSlice(reflect.SliceOf(first.Type()), dims[0], dims[0])
	out.Index(0).Set(first)
	for i := 1; i < dims[0]; i++ {
		out.Index(i).Set(split(vals.Slice(i*inner, (i+1)*inner), dims[1:]))
	}
	return out
}

func (d *decoder) newVariant(v any) *ua.Variant {
	nv, err := ua.NewVariant(v)
	if err != nil {
		d.malformed("Variant", "%v", err)
		return nil
	}
	return nv
}

// gopcuaVariant builds the Variant encoded in d.b[start:d.pos], already
// decoded and checked by d, with gopcua's own decoder. Decoding it again is
// charged to the budget: three times what d allocated for it since
// allocated, as gopcua allocates two to three times as much (it boxes every
// element). So the work of such Variants
// nested in each other, decoded again at every level, stays within the
// budget too.
func (d *decoder) gopcuaVariant(start int, allocated int64) *ua.Variant {
	if d.err != nil || !d.spend("Variant", 3*(d.allocated-allocated)) {
		return nil
	}
	span := append([]byte(nil), d.b[start:d.pos]...)
	v := new(ua.Variant)
	if used, err := v.Decode(span); err != nil || used != len(span) {
		d.pos = start
		d.malformed("Variant", "gopcua read %d of %d bytes: %v", used, len(span), err)
		return nil
	}
	return v
}

// scalar reads one value of a built-in type, as the Go type gopcua uses for
// it in a Variant.
func (d *decoder) scalar(typ ua.TypeID) any {
	switch typ {
	case ua.TypeIDBoolean:
		return d.boolean()
	case ua.TypeIDSByte:
		return int8(d.u8("SByte"))
	case ua.TypeIDByte:
		return d.u8("Byte")
	case ua.TypeIDInt16:
		return int16(d.u16("Int16"))
	case ua.TypeIDUint16:
		return d.u16("UInt16")
	case ua.TypeIDInt32:
		return int32(d.u32("Int32"))
	case ua.TypeIDUint32:
		return d.u32("UInt32")
	case ua.TypeIDInt64:
		return int64(d.u64("Int64"))
	case ua.TypeIDUint64:
		return d.u64("UInt64")
	case ua.TypeIDFloat:
		return d.float32()
	case ua.TypeIDDouble:
		return d.float64()
	case ua.TypeIDString:
		return d.str("String")
	case ua.TypeIDDateTime:
		return d.dateTime()
	case ua.TypeIDGUID:
		return d.guid()
	case ua.TypeIDByteString:
		return d.bytes("ByteString")
	case ua.TypeIDXMLElement:
		return ua.XMLElement(d.str("XmlElement"))
	case ua.TypeIDNodeID:
		return d.nodeID()
	case ua.TypeIDExpandedNodeID:
		return d.expandedNodeID()
	case ua.TypeIDStatusCode:
		return ua.StatusCode(d.u32("StatusCode"))
	case ua.TypeIDQualifiedName:
		return d.qualifiedName()
	case ua.TypeIDLocalizedText:
		return d.localizedText()
	case ua.TypeIDExtensionObject:
		return d.extensionObject()
	case ua.TypeIDDataValue:
		return d.dataValue()
	case ua.TypeIDVariant:
		return d.variant()
	case ua.TypeIDDiagnosticInfo:
		return d.diagnosticInfo()
	}
	d.malformed("Variant", "invalid built-in type %d", typ)
	return nil
}

func (d *decoder) qualifiedName() *ua.QualifiedName {
	q := &ua.QualifiedName{NamespaceIndex: d.u16("QualifiedName")}
	q.Name = d.str("QualifiedName name")
	if d.err != nil {
		return nil
	}
	return q
}

// array reads n values of a built-in type into the slice type gopcua uses
// (ua.ByteArray for Byte); n == -1 is a nil slice of that type.
func (d *decoder) array(typ ua.TypeID, n int) any {
	switch typ {
	case ua.TypeIDBoolean:
		return arrayOf(d, n, d.boolean)
	case ua.TypeIDSByte:
		return arrayOf(d, n, func() int8 { return int8(d.u8("SByte")) })
	case ua.TypeIDByte:
		if n < 0 {
			return ua.ByteArray(nil)
		}
		if !d.charge("Byte array", n) {
			return nil
		}
		return ua.ByteArray(append(make([]byte, 0, n), d.take("Byte array", n)...))
	case ua.TypeIDInt16:
		return arrayOf(d, n, func() int16 { return int16(d.u16("Int16")) })
	case ua.TypeIDUint16:
		return arrayOf(d, n, func() uint16 { return d.u16("UInt16") })
	case ua.TypeIDInt32:
		return arrayOf(d, n, func() int32 { return int32(d.u32("Int32")) })
	case ua.TypeIDUint32:
		return arrayOf(d, n, func() uint32 { return d.u32("UInt32") })
	case ua.TypeIDInt64:
		return arrayOf(d, n, func() int64 { return int64(d.u64("Int64")) })
	case ua.TypeIDUint64:
		return arrayOf(d, n, func() uint64 { return d.u64("UInt64") })
	case ua.TypeIDFloat:
		return arrayOf(d, n, d.float32)
	case ua.TypeIDDouble:
		return arrayOf(d, n, d.float64)
	case ua.TypeIDString:
		return arrayOf(d, n, func() string { return d.str("String") })
	case ua.TypeIDDateTime:
		return arrayOf(d, n, d.dateTime)
	case ua.TypeIDGUID:
		return arrayOf(d, n, d.guid)
	case ua.TypeIDByteString:
		return arrayOf(d, n, func() []byte { return d.bytes("ByteString") })
	case ua.TypeIDXMLElement:
		return arrayOf(d, n, func() ua.XMLElement { return ua.XMLElement(d.str("XmlElement")) })
	case ua.TypeIDNodeID:
		return arrayOf(d, n, d.nodeID)
	case ua.TypeIDExpandedNodeID:
		return arrayOf(d, n, d.expandedNodeID)
	case ua.TypeIDStatusCode:
		return arrayOf(d, n, func() ua.StatusCode { return ua.StatusCode(d.u32("StatusCode")) })
	case ua.TypeIDQualifiedName:
		return arrayOf(d, n, d.qualifiedName)
	case ua.TypeIDLocalizedText:
		return arrayOf(d, n, d.localizedText)
	case ua.TypeIDExtensionObject:
		return arrayOf(d, n, d.extensionObject)
	case ua.TypeIDDataValue:
		return arrayOf(d, n, d.dataValue)
	case ua.TypeIDVariant:
		return arrayOf(d, n, d.variant)
	case ua.TypeIDDiagnosticInfo:
		return arrayOf(d, n, d.diagnosticInfo)
	}
	d.malformed("Variant", "invalid built-in type %d", typ)
	return nil
}

// arrayOf reads n elements with read; n < 0 is a nil slice. n has been
// checked against the bytes left.
func arrayOf[T any](d *decoder, n int, read func() T) []T {
	if n < 0 {
		return nil
	}
	var zero T
	if !d.chargeN("array", n, int(reflect.TypeOf(&zero).Elem().Size())) {
		return nil
	}
	out := make([]T, n)
	for i := range out {
		out[i] = read()
		if d.err != nil {
			return nil
		}
	}
	return out
}

var timeType = reflect.TypeFor[time.Time]()
