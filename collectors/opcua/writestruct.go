package opcua

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/gopcua/opcua/ua"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/collectors/opcua/typedef"
	"github.com/tagbridge/tagbridge/command"
)

// writeVariant converts a command's value to what the node holds: a
// built-in scalar or array (toVariant), a matrix, or a value of a DataType
// the server defines (a structure, an enumeration, a subtype of a built-in
// type), learned from its DataTypeDefinition. want is the value the
// subscription delivers once the write took effect.
func (s *Session) writeVariant(ctx context.Context, c sender, value any, nt nodeType) (v *ua.Variant, want any, err error) {
	if nt.builtin == "" && nt.dataType != nil {
		return s.definedVariant(ctx, c, value, nt)
	}
	if nt.rank >= 2 {
		v, err = toMatrix(value, nt)
	} else {
		v, err = toVariant(value, nt)
	}
	if err != nil {
		return nil, nil, err
	}
	want, _ = convertValue(v)
	return v, want, nil
}

// toMatrix converts nested arrays, outer dimension first, to a matrix of
// the node's built-in type and shape (ArrayDimensions; 0 is any length).
func toMatrix(value any, nt nodeType) (*ua.Variant, error) {
	goType, ok := writableTypes[nt.builtin]
	if !ok {
		return toVariant(value, nt) // its refusal names the type
	}
	dims, flat, err := typedef.Flatten(value, int(nt.rank))
	if err != nil {
		return nil, command.Refuse(command.WrongType, "%s", err)
	}
	if len(nt.dims) == len(dims) {
		for i, d := range nt.dims {
			if d != 0 && int(d) != dims[i] {
				return nil, command.Refuse(command.WrongType, "a %s matrix; the node holds %s", shape(dims), shape32(nt.dims))
			}
		}
	}
	for _, d := range dims {
		if d == 0 {
			return nil, command.Refuse(command.WrongType, "an empty %s matrix", shape(dims))
		}
	}
	elems := make([]reflect.Value, len(flat))
	for i, e := range flat {
		x, err := toScalar(e, nt.builtin)
		if err != nil {
			r := err.(*command.Refusal)
			return nil, command.Refuse(r.Status, "element %d: %s", i, r.Reason)
		}
		elems[i] = reflect.ValueOf(x)
	}
	// gopcua encodes nested slices as a matrix with their dimensions.
	var nest func(level int, from []reflect.Value) reflect.Value
	nest = func(level int, from []reflect.Value) reflect.Value {
		t := goType
		for range len(dims) - level - 1 {
			t = reflect.SliceOf(t)
		}
		out := reflect.MakeSlice(reflect.SliceOf(t), dims[level], dims[level])
		step := len(from) / dims[level]
		for i := range dims[level] {
			if level == len(dims)-1 {
				out.Index(i).Set(from[i])
			} else {
				out.Index(i).Set(nest(level+1, from[i*step:(i+1)*step]))
			}
		}
		return out
	}
	return ua.NewVariant(nest(0, elems).Interface())
}

func shape(dims []int) string {
	parts := make([]string, len(dims))
	for i, d := range dims {
		parts[i] = fmt.Sprint(d)
	}
	return strings.Join(parts, "x")
}

func shape32(dims []uint32) string {
	parts := make([]string, len(dims))
	for i, d := range dims {
		parts[i] = fmt.Sprint(d)
		if d == 0 {
			parts[i] = "n"
		}
	}
	return strings.Join(parts, "x")
}

// definedVariant converts value to a DataType the server defines: a
// structure is encoded by its definition (typedef.Encode) into an
// extension object of its binary encoding, a scalar or an array of them.
func (s *Session) definedVariant(ctx context.Context, c sender, value any, nt nodeType) (*ua.Variant, any, error) {
	reg := s.types.registry()
	if reg.Type(nt.dataType) == nil {
		lctx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		if err := reg.LearnTypes(lctx, c, []*ua.NodeID{nt.dataType}); err != nil {
			return nil, nil, command.Refuse(command.WrongType, "the node's data type %s cannot be learned: %s", nodeIDString(nt.dataType), err)
		}
	}
	t := reg.Type(nt.dataType)
	if t == nil {
		return nil, nil, command.Refuse(command.WrongType, "the node's data type %s has no definition from the server (DataTypeDefinition)", nodeIDString(nt.dataType))
	}
	switch t.Kind {
	case typedef.KindBuiltin:
		name := collectors.Type(t.Builtin).String()
		if _, ok := writableTypes[name]; !ok {
			return nil, nil, command.Refuse(command.WrongType, "the node holds %s, which is not writable from MQTT", nodeIDString(nt.dataType))
		}
		nt.builtin = name
		return s.writeVariant(ctx, c, value, nt)
	case typedef.KindEnum:
		nt.builtin = "Int32"
		value = enumNumber(t, value)
		return s.writeVariant(ctx, c, value, nt)
	}
	if nt.rank >= 2 || nt.rank == 0 || nt.rank < -1 {
		return nil, nil, command.Refuse(command.WrongType, "the node holds structures of value rank %d; only a structure or an array of them is writable", nt.rank)
	}
	enc := reg.EncodingOf(nt.dataType)
	if enc == nil {
		return nil, nil, command.Refuse(command.WrongType, "the structure type %s has no binary encoding", nodeIDString(nt.dataType))
	}
	// Keep the body of this encoding when reading back (gopcua drops
	// bodies of types it has no Go type for).
	_ = registerRawExtensionObject(enc)
	encode := func(x any) (*ua.ExtensionObject, any, error) {
		body, err := reg.Encode(nt.dataType, x)
		if err != nil {
			status, msg := command.WrongType, err.Error()
			if errors.Is(err, typedef.ErrRange) {
				status, msg = command.OutOfRange, strings.TrimSuffix(msg, ": "+typedef.ErrRange.Error())
			}
			return nil, nil, command.Refuse(status, "%s", msg)
		}
		st, _ := reg.Decode(enc, body)
		return &ua.ExtensionObject{TypeID: ua.NewExpandedNodeID(enc, "", 0), EncodingMask: ua.ExtensionObjectBinary, Value: typedef.Body(body)}, st, nil
	}
	if nt.rank == -1 {
		if _, isArray := collectors.Elements(value); isArray {
			return nil, nil, command.Refuse(command.WrongType, "an array for a single structure")
		}
		eo, st, err := encode(value)
		if err != nil {
			return nil, nil, err
		}
		v, err := ua.NewVariant(eo)
		return v, st, err
	}
	elems, isArray := collectors.Elements(value)
	if !isArray {
		return nil, nil, command.Refuse(command.WrongType, "%s for an array of structures", describe(value))
	}
	if nt.length > 0 && uint32(len(elems)) != nt.length {
		return nil, nil, command.Refuse(command.WrongType, "an array of %d elements; the node holds %d", len(elems), nt.length)
	}
	eos := make([]*ua.ExtensionObject, len(elems))
	sts := make([]any, len(elems))
	for i, e := range elems {
		eo, st, err := encode(e)
		if err != nil {
			r := err.(*command.Refusal)
			return nil, nil, command.Refuse(r.Status, "element %d: %s", i, r.Reason)
		}
		eos[i], sts[i] = eo, st
	}
	v, err := ua.NewVariant(eos)
	return v, sts, err
}

// enumNumber turns an enumeration's name into its number; other values
// pass as they are.
func enumNumber(t *typedef.Type, v any) any {
	name, ok := v.(string)
	if !ok {
		return v
	}
	for n, text := range t.Names {
		if text == name {
			return int64(n)
		}
	}
	return v // refused as a string for an Int32
}
