package typedef

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/tagbridge/tagbridge/collectors"
)

// fieldsOf takes a JSON object or a collectors.Structure as named values.
func fieldsOf(v any) (map[string]any, []string, bool) {
	switch x := v.(type) {
	case map[string]any:
		names := make([]string, 0, len(x))
		for k := range x {
			names = append(names, k)
		}
		slices.Sort(names)
		return x, names, true
	case collectors.Structure:
		m := make(map[string]any, len(x.Fields))
		names := make([]string, 0, len(x.Fields))
		for _, f := range x.Fields {
			m[f.Name] = f.Value
			names = append(names, f.Name)
		}
		return m, names, true
	}
	return nil, nil, false
}

func (e *encoder) structure(t *Type, v any, path string, depth int) {
	if depth >= maxDepth {
		e.fail(path, "structures nested deeper than %d", maxDepth)
		return
	}
	if t.Kind == KindEnum || t.Kind == KindBuiltin {
		e.fail(path, "%s is not a structure", idString(t.ID))
		return
	}
	fields, names, ok := fieldsOf(v)
	if !ok {
		e.fail(path, "%s for a structure (an object with the fields %s)", kindOf(v), fieldNames(t))
		return
	}
	for _, n := range names {
		if !slices.ContainsFunc(t.Fields, func(f Field) bool { return f.Name == n }) {
			e.fail(path, "%s has no field %q (fields: %s)", idString(t.ID), n, fieldNames(t))
			return
		}
	}
	switch t.Kind {
	case KindStructure:
		for _, f := range t.Fields {
			x, ok := fields[f.Name]
			if !ok {
				e.fail(join(path, f.Name), "missing")
				return
			}
			e.field(f, x, join(path, f.Name), depth)
		}
	case KindOptional:
		var mask uint32
		bit := 0
		for _, f := range t.Fields {
			if !f.Optional {
				continue
			}
			if _, ok := fields[f.Name]; ok && bit < 32 {
				mask |= 1 << bit
			}
			bit++
		}
		e.u32(mask)
		for _, f := range t.Fields {
			x, ok := fields[f.Name]
			switch {
			case ok:
				e.field(f, x, join(path, f.Name), depth)
			case !f.Optional:
				e.fail(join(path, f.Name), "missing")
				return
			}
		}
	case KindUnion:
		if len(names) > 1 {
			e.fail(path, "a union takes one field, got %s", strings.Join(names, ", "))
			return
		}
		if len(names) == 0 {
			e.u32(0)
			return
		}
		i := slices.IndexFunc(t.Fields, func(f Field) bool { return f.Name == names[0] })
		e.u32(uint32(i + 1))
		e.field(t.Fields[i], fields[names[0]], join(path, names[0]), depth)
	}
}

func fieldNames(t *Type) string {
	names := make([]string, len(t.Fields))
	for i, f := range t.Fields {
		names[i] = f.Name
	}
	return strings.Join(names, ", ")
}

// field encodes a scalar, an array (null for a JSON null) or a matrix.
func (e *encoder) field(f Field, v any, path string, depth int) {
	if e.err != nil {
		return
	}
	switch {
	case f.ValueRank == -1:
		e.value(f.DataType, v, path, depth+1)
	case f.ValueRank == 1:
		if v == nil {
			e.u32(math.MaxUint32) // -1: the null array
			return
		}
		elems, ok := collectors.Elements(v)
		if !ok {
			e.fail(path, "%s for an array", kindOf(v))
			return
		}
		e.u32(uint32(len(elems)))
		for i, x := range elems {
			e.value(f.DataType, x, path+"["+strconv.Itoa(i)+"]", depth+1)
		}
	case f.ValueRank > 1:
		if v == nil {
			e.u32(math.MaxUint32)
			return
		}
		dims, flat, err := Flatten(v, int(f.ValueRank))
		if err != nil {
			e.fail(path, "%s", err)
			return
		}
		e.u32(uint32(len(dims)))
		for _, d := range dims {
			e.u32(uint32(d))
		}
		for i, x := range flat {
			e.value(f.DataType, x, path+"["+strconv.Itoa(i)+"]", depth+1)
		}
	default:
		e.fail(path, "value rank %d is not writable", f.ValueRank)
	}
}

// Flatten takes a matrix of rank dimensions as nested arrays, outer
// dimension first, and returns its dimensions and its elements with the
// last index fastest (Part 6, 5.2.2.16); rows of unequal length are an error.
func Flatten(v any, rank int) (dims []int, flat []any, err error) {
	var walk func(x any, level int) error
	walk = func(x any, level int) error {
		if level == rank {
			flat = append(flat, x)
			return nil
		}
		elems, ok := collectors.Elements(x)
		if !ok {
			return fmt.Errorf("%s at depth %d of a matrix of %d dimensions", kindOf(x), level+1, rank)
		}
		if len(dims) == level {
			dims = append(dims, len(elems))
		} else if dims[level] != len(elems) {
			return fmt.Errorf("rows of %d and %d elements at depth %d: a matrix is rectangular", dims[level], len(elems), level+1)
		}
		if len(elems) == 0 && level+1 < rank {
			// No row to say the inner dimensions: they are 0.
			for len(dims) < rank {
				dims = append(dims, 0)
			}
			return nil
		}
		for _, el := range elems {
			if err := walk(el, level+1); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(v, 0); err != nil {
		return nil, nil, err
	}
	if len(flat) > maxElements {
		return nil, nil, fmt.Errorf("more than %d elements", maxElements)
	}
	return dims, flat, nil
}
