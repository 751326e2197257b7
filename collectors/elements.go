package collectors

import "reflect"

// Elements returns an array value's elements (Sample.Value holds arrays as
// []any, and command values may come as other slices): a []any, or any
// other slice but []byte (a ByteString) and string.
func Elements(v any) ([]any, bool) {
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
