package typedef

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"strings"

	"github.com/gopcua/opcua/ua"
)

// The legacy DataTypeDictionary (OPC UA 1.03, Part 3 Annex C and Part 5
// 11.2): servers without the DataTypeDefinition attribute describe their
// structures in an opc:TypeDictionary XML document, the ByteString value of
// a dictionary variable under the OPC Binary type system (i=93). This file
// parses such a document into the Type form Decode already uses, so one
// decoder serves both.

const (
	binarySchemaURI = "http://opcfoundation.org/BinarySchema/"
	uaURI           = "http://opcfoundation.org/UA/"
)

// maxDictionary bounds one dictionary document; namespace 0's own, the
// largest in practice, is about 300 KB.
const maxDictionary = 8 << 20

// maxDictionaryFields bounds the fields of one structured type.
const maxDictionaryFields = 10000

// dictionary is a parsed opc:TypeDictionary.
type dictionary struct {
	target   string            // TargetNamespace: the URI of its own types
	prefixes map[string]string // xmlns prefix -> namespace URI ("" the default)
	structs  map[string]*xmlStruct
	enums    map[string]*xmlEnum
}

type xmlDictionary struct {
	TargetNamespace string      `xml:"TargetNamespace,attr"`
	Attrs           []xml.Attr  `xml:",any,attr"`
	Structs         []xmlStruct `xml:"StructuredType"`
	Enums           []xmlEnum   `xml:"EnumeratedType"`
}

type xmlStruct struct {
	Name     string     `xml:"Name,attr"`
	BaseType string     `xml:"BaseType,attr"`
	Fields   []xmlField `xml:"Field"`
}

type xmlField struct {
	Name          string  `xml:"Name,attr"`
	TypeName      string  `xml:"TypeName,attr"`
	Length        *uint32 `xml:"Length,attr"`
	LengthField   string  `xml:"LengthField,attr"`
	SwitchField   string  `xml:"SwitchField,attr"`
	SwitchValue   *uint32 `xml:"SwitchValue,attr"`
	SwitchOperand string  `xml:"SwitchOperand,attr"`
}

type xmlEnum struct {
	Name         string `xml:"Name,attr"`
	LengthInBits *int   `xml:"LengthInBits,attr"`
	Values       []struct {
		Name  string `xml:"Name,attr"`
		Value int64  `xml:"Value,attr"`
	} `xml:"EnumeratedValue"`
}

// parseDictionary parses an opc:TypeDictionary document.
func parseDictionary(data []byte) (*dictionary, error) {
	if len(data) > maxDictionary {
		return nil, fmt.Errorf("type dictionary of %d bytes, more than %d", len(data), maxDictionary)
	}
	var x xmlDictionary
	dec := xml.NewDecoder(bytes.NewReader(data))
	var start xml.StartElement
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("type dictionary: %w", err)
		}
		if s, ok := tok.(xml.StartElement); ok {
			start = s
			break
		}
	}
	if start.Name.Local != "TypeDictionary" || start.Name.Space != binarySchemaURI {
		return nil, fmt.Errorf("type dictionary: root element %s %s, want opc:TypeDictionary", start.Name.Space, start.Name.Local)
	}
	if err := dec.DecodeElement(&x, &start); err != nil {
		return nil, fmt.Errorf("type dictionary: %w", err)
	}
	d := &dictionary{
		target:   x.TargetNamespace,
		prefixes: map[string]string{},
		structs:  make(map[string]*xmlStruct, len(x.Structs)),
		enums:    make(map[string]*xmlEnum, len(x.Enums)),
	}
	for _, a := range start.Attr {
		switch {
		case a.Name.Space == "xmlns":
			d.prefixes[a.Name.Local] = a.Value
		case a.Name.Space == "" && a.Name.Local == "xmlns":
			d.prefixes[""] = a.Value
		}
	}
	for i := range x.Structs {
		s := &x.Structs[i]
		if len(s.Fields) > maxDictionaryFields {
			return nil, fmt.Errorf("type dictionary: %s has %d fields, more than %d", s.Name, len(s.Fields), maxDictionaryFields)
		}
		d.structs[s.Name] = s
	}
	for i := range x.Enums {
		d.enums[x.Enums[i].Name] = &x.Enums[i]
	}
	return d, nil
}

// opcTypes are the OPC Binary built-in types a field may name.
var opcTypes = map[string]ua.TypeID{
	"Boolean": ua.TypeIDBoolean, "SByte": ua.TypeIDSByte, "Byte": ua.TypeIDByte,
	"Int16": ua.TypeIDInt16, "UInt16": ua.TypeIDUint16, "Int32": ua.TypeIDInt32,
	"UInt32": ua.TypeIDUint32, "Int64": ua.TypeIDInt64, "UInt64": ua.TypeIDUint64,
	"Float": ua.TypeIDFloat, "Double": ua.TypeIDDouble, "String": ua.TypeIDString,
	"CharArray": ua.TypeIDString, "DateTime": ua.TypeIDDateTime, "Guid": ua.TypeIDGUID,
	"ByteString": ua.TypeIDByteString,
}

// uaBuiltins are the built-in types namespace 0's dictionary defines
// itself; Structure (22) and BaseDataType (24) stand for ExtensionObject
// and Variant as in abstractOf.
var uaBuiltins = map[string]uint32{
	"XmlElement": 16, "NodeId": 17, "ExpandedNodeId": 18, "StatusCode": 19,
	"QualifiedName": 20, "LocalizedText": 21, "ExtensionObject": 22,
	"DataValue": 23, "Variant": 24, "DiagnosticInfo": 25, "Guid": 14, "ByteString": 15,
}

// localTypes converts the dictionary's structured type name, the binary
// description of DataType dt, and every type of this dictionary it uses.
// ids names the DataTypes of the dictionary's other structured types
// (their description's value -> DataType); a type it lacks (an
// enumeration, which has no encoding) gets a made-up id in dt's namespace.
// needs are the namespace 0 types the fields use.
func (d *dictionary) localTypes(dt *ua.NodeID, name string, ids map[string]*ua.NodeID) (types []*Type, needs []*ua.NodeID, err error) {
	if d.structs[name] == nil {
		return nil, nil, fmt.Errorf("type dictionary %s: no structured type %q", d.target, name)
	}
	idOf := func(local string) *ua.NodeID {
		if local == name {
			return dt
		}
		if n := ids[local]; n != nil {
			return n
		}
		return ua.NewStringNodeID(dt.Namespace(), "dictionary:"+d.target+"#"+local)
	}
	done := map[string]bool{name: true}
	todo := []string{name}
	for len(todo) > 0 {
		if len(done) > maxTypes {
			return nil, nil, fmt.Errorf("type dictionary %s: more than %d types", d.target, maxTypes)
		}
		local := todo[0]
		todo = todo[1:]
		var t *Type
		var uses []string
		if e := d.enums[local]; e != nil {
			t, err = enumType(idOf(local), e)
		} else {
			t, uses, needs, err = d.structType(idOf(local), d.structs[local], idOf, needs)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("type dictionary %s: %w", d.target, err)
		}
		types = append(types, t)
		for _, u := range uses {
			if !done[u] {
				done[u] = true
				todo = append(todo, u)
			}
		}
	}
	return types, needs, nil
}

func enumType(id *ua.NodeID, e *xmlEnum) (*Type, error) {
	if e.LengthInBits != nil && *e.LengthInBits != 32 {
		return nil, fmt.Errorf("enumeration %s of %d bits, only 32 supported", e.Name, *e.LengthInBits)
	}
	t := &Type{ID: id, Kind: KindEnum, Names: make(map[int64]string, len(e.Values))}
	for _, v := range e.Values {
		t.Names[v.Value] = v.Name
	}
	return t, nil
}

// structType converts one StructuredType. The OPC Binary layouts the UA
// binary encoding produces map onto the definition form: leading Bit
// fields (32 bits in all) are the optional fields' mask, a SwitchField on
// one of them makes a field optional; a UInt32 first field that the others
// switch on with SwitchValue 1, 2, ... makes a union; an Int32 field named
// by the next field's LengthField is that array's length.
func (d *dictionary) structType(id *ua.NodeID, s *xmlStruct, idOf func(string) *ua.NodeID, needs []*ua.NodeID) (*Type, []string, []*ua.NodeID, error) {
	t := &Type{ID: id, Kind: KindStructure}
	var uses []string
	fields := s.Fields
	if isUnion(s) {
		t.Kind = KindUnion
		switchName := fields[0].Name
		fields = fields[1:]
		choice := 0
		for i, f := range fields {
			if i+1 < len(fields) && fields[i+1].LengthField == f.Name {
				continue // an array's length, switched with it
			}
			choice++
			if f.SwitchField != switchName || f.SwitchValue == nil || int(*f.SwitchValue) != choice {
				return nil, nil, nil, fmt.Errorf("union %s: field %s does not switch on %s = %d", s.Name, f.Name, switchName, choice)
			}
		}
	}
	// The optional fields' mask.
	bits := map[string]int{}
	nbits := 0
	for len(fields) > 0 && d.isBit(fields[0].TypeName) {
		n := 1
		if fields[0].Length != nil {
			n = int(*fields[0].Length)
		}
		if n == 1 {
			bits[fields[0].Name] = nbits
		}
		nbits += n
		fields = fields[1:]
		if nbits > 32 {
			break
		}
	}
	if nbits > 0 {
		if nbits != 32 || t.Kind == KindUnion {
			return nil, nil, nil, fmt.Errorf("structure %s: a mask of %d bits, only 32 supported", s.Name, nbits)
		}
		t.Kind = KindOptional
	}
	optional := 0
	for i := 0; i < len(fields); i++ {
		f := fields[i]
		if f.SwitchOperand != "" && f.SwitchOperand != "Equals" {
			return nil, nil, nil, fmt.Errorf("structure %s: field %s: switch operand %s", s.Name, f.Name, f.SwitchOperand)
		}
		next := xmlField{}
		if i+1 < len(fields) {
			next = fields[i+1]
		}
		if next.LengthField != "" && next.LengthField == f.Name {
			// The array's length: encoded as the array's own Int32 prefix.
			if d.resolve(f.TypeName) != (qname{uri: binarySchemaURI, local: "Int32"}) || f.SwitchField != next.SwitchField {
				return nil, nil, nil, fmt.Errorf("structure %s: length field %s of %s is not an Int32 beside it", s.Name, f.Name, next.Name)
			}
			continue
		}
		if f.LengthField != "" {
			if i == 0 || fields[i-1].Name != f.LengthField {
				return nil, nil, nil, fmt.Errorf("structure %s: field %s: length field %s not just before it", s.Name, f.Name, f.LengthField)
			}
		}
		field := Field{Name: f.Name, ValueRank: -1}
		if f.LengthField != "" {
			field.ValueRank = 1
		}
		if t.Kind != KindUnion && f.SwitchField != "" {
			bit, ok := bits[f.SwitchField]
			if !ok || f.SwitchValue != nil {
				return nil, nil, nil, fmt.Errorf("structure %s: field %s switches on %s, not a bit of the mask", s.Name, f.Name, f.SwitchField)
			}
			if bit != optional {
				return nil, nil, nil, fmt.Errorf("structure %s: optional field %s on bit %d, want bit %d", s.Name, f.Name, bit, optional)
			}
			optional++
			field.Optional = true
		}
		dt, local, err := d.fieldType(f.TypeName, idOf)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("structure %s: field %s: %w", s.Name, f.Name, err)
		}
		field.DataType = dt
		if local != "" {
			uses = append(uses, local)
		} else if _, ok := builtinOf(dt); !ok {
			if _, ok := abstractOf(dt); !ok {
				needs = append(needs, dt)
			}
		}
		t.Fields = append(t.Fields, field)
	}
	return t, uses, needs, nil
}

// isUnion: a UInt32 first field that every other field switches on by value.
func isUnion(s *xmlStruct) bool {
	if len(s.Fields) < 2 {
		return false
	}
	for _, f := range s.Fields[1:] {
		if f.SwitchValue == nil || f.SwitchField != s.Fields[0].Name {
			return false
		}
	}
	return strings.HasSuffix(s.Fields[0].TypeName, ":UInt32")
}

type qname struct{ uri, local string }

// resolve expands a "prefix:Name" type name with the document's prefixes.
func (d *dictionary) resolve(name string) qname {
	prefix, local, ok := strings.Cut(name, ":")
	if !ok {
		prefix, local = "", name
	}
	return qname{uri: d.prefixes[prefix], local: local}
}

func (d *dictionary) isBit(name string) bool {
	return d.resolve(name) == qname{uri: binarySchemaURI, local: "Bit"}
}

var errNotInDictionary = errors.New("type not known")

// fieldType is the DataType a field's TypeName names; local is the name of
// a type of this dictionary, to be converted as well.
func (d *dictionary) fieldType(name string, idOf func(string) *ua.NodeID) (dt *ua.NodeID, local string, err error) {
	q := d.resolve(name)
	switch {
	case q.uri == uaURI && uaBuiltins[q.local] != 0:
		// Before the local types: namespace 0's own dictionary describes
		// the built-in types too, in their own encodings.
		return ua.NewNumericNodeID(0, uaBuiltins[q.local]), "", nil
	case q.uri == d.target && (d.structs[q.local] != nil || d.enums[q.local] != nil):
		return idOf(q.local), q.local, nil
	case q.uri == binarySchemaURI:
		if b, ok := opcTypes[q.local]; ok {
			return ua.NewNumericNodeID(0, uint32(b)), "", nil
		}
	case q.uri == uaURI:
		if n, ok := standardIDs()[q.local]; ok {
			return ua.NewNumericNodeID(0, n), "", nil
		}
	}
	return nil, "", fmt.Errorf("%s (%s): %w", name, q.uri, errNotInDictionary)
}
