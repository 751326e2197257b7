package yamlfile

import (
	"reflect"
)

// Schema is the JSON Schema of the type t as YAML decodes it: by yaml tag,
// inline structs merged, "-" and unexported fields left out, unknown keys
// refused. scalars gives the schema of the types that parse themselves
// from a YAML scalar; any other type with an UnmarshalYAML takes anything.
func Schema(t reflect.Type, scalars map[reflect.Type]map[string]any) map[string]any {
	if s, ok := scalars[t]; ok {
		return s
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) || t.Implements(unmarshalerType) {
		return map[string]any{} // parses itself: its decoding checks it
	}
	switch t.Kind() {
	case reflect.Pointer:
		return map[string]any{"anyOf": []any{Schema(t.Elem(), scalars), map[string]any{"type": "null"}}}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer"}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Slice, reflect.Array:
		return map[string]any{"type": []string{"array", "null"}, "items": Schema(t.Elem(), scalars)}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": Schema(t.Elem(), scalars)}
	case reflect.Struct:
		props := map[string]any{}
		for name, ft := range yamlFields(t) {
			props[name] = Schema(ft, scalars)
		}
		return map[string]any{"type": []string{"object", "null"}, "properties": props, "additionalProperties": false}
	}
	return map[string]any{}
}
