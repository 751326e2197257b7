package command

import (
	"encoding/json"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/config"
)

// checkLimits applies a tag's write limits to a value before it is sent:
// min and max to numbers, allowed to scalars, max_length to strings
// (characters) and arrays (elements); an array's elements each obey min,
// max and allowed.
func checkLimits(v any, w *config.WriteLimits) error {
	if v == nil {
		return refuse(WrongType, "value required (null is not written)")
	}
	if w == nil {
		return nil
	}
	if elems, ok := collectors.Elements(v); ok {
		if w.MaxLength > 0 && len(elems) > w.MaxLength {
			return refuse(OutOfRange, "array of %d elements is longer than max_length %d", len(elems), w.MaxLength)
		}
		for i, e := range elems {
			if err := checkScalar(e, w); err != nil {
				r := err.(*Refusal)
				return refuse(r.Status, "element %d: %s", i, r.Reason)
			}
		}
		return nil
	}
	if s, ok := v.(string); ok && w.MaxLength > 0 {
		if n := utf8.RuneCountInString(s); n > w.MaxLength {
			return refuse(OutOfRange, "string of %d characters is longer than max_length %d", n, w.MaxLength)
		}
	}
	return checkScalar(v, w)
}

func checkScalar(v any, w *config.WriteLimits) error {
	if _, ok := collectors.Elements(v); ok {
		return refuse(WrongType, "nested arrays are not writable")
	}
	f, isNum := number(v)
	if isNum {
		if w.Min != nil && f < *w.Min {
			return refuse(OutOfRange, "%s is below min %g", show(v), *w.Min)
		}
		if w.Max != nil && f > *w.Max {
			return refuse(OutOfRange, "%s is above max %g", show(v), *w.Max)
		}
	}
	if len(w.Allowed) == 0 {
		return nil
	}
	for _, a := range w.Allowed {
		switch av := a.Value.(type) {
		case float64:
			if isNum && f == av {
				return nil
			}
		case string, bool:
			if v == av {
				return nil
			}
		}
	}
	return refuse(OutOfRange, "%s is not one of the allowed values", show(v))
}

// number reads a numeric value as float64, for limits.
func number(v any) (float64, bool) {
	switch x := v.(type) {
	case json.Number:
		f, err := strconv.ParseFloat(string(x), 64)
		return f, err == nil
	case float64:
		return x, true
	case float32:
		return float64(x), true
	case int64:
		return float64(x), true
	case uint64:
		return float64(x), true
	case int32:
		return float64(x), true
	case uint32:
		return float64(x), true
	case int16:
		return float64(x), true
	case uint16:
		return float64(x), true
	case int8:
		return float64(x), true
	case uint8:
		return float64(x), true
	}
	return 0, false
}

// show writes a value for a message, bounded: a refused value may be long.
func show(v any) string {
	s := fmt.Sprintf("%v", v)
	if str, ok := v.(string); ok {
		s = strconv.Quote(str)
	}
	if len(s) > 64 {
		s = s[:61] + "..."
	}
	return s
}
