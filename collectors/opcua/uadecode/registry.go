package uadecode

import (
	"reflect"
	"sync"

	"github.com/gopcua/opcua/ua"
)

// gopcua keeps its service and extension object registries private; the
// only way to ask them which Go type a type id stands for is to let gopcua
// decode that id with a body too short to hold anything, and look at the
// type of the value it created. Such a probe reads at most a few bytes, so
// it is safe whatever the type. Known types are cached (a registration never
// changes); unknown ids are not, because registerRawExtensionObject adds
// ids while the agent runs.
var (
	serviceTypes         sync.Map // NodeID.String() -> reflect.Type
	extensionObjectTypes sync.Map // NodeID.String() -> reflect.Type
)

// serviceType is the Go type (a pointer) ua.DecodeService would create for
// the encoded type id, or nil when no service is registered under it.
func serviceType(encodedID []byte, id *ua.NodeID) reflect.Type {
	key := id.String()
	if t, ok := serviceTypes.Load(key); ok {
		return t.(reflect.Type)
	}
	t := probe(func() any {
		_, v, _ := ua.DecodeService(append([]byte(nil), encodedID...))
		return v
	})
	if t != nil {
		serviceTypes.Store(key, t)
	}
	return t
}

// extensionObjectType is the Go type (a pointer) gopcua's ExtensionObject
// decoder would create for the encoded type id, or nil when none is
// registered.
func extensionObjectType(encodedID []byte, id *ua.NodeID) reflect.Type {
	key := id.String()
	if t, ok := extensionObjectTypes.Load(key); ok {
		return t.(reflect.Type)
	}
	// A binary body of one zero byte: gopcua creates the value, then fails
	// or reads that byte.
	b := append(append([]byte(nil), encodedID...), ua.ExtensionObjectBinary, 1, 0, 0, 0, 0)
	t := probe(func() any {
		e := new(ua.ExtensionObject)
		_, _ = e.Decode(b)
		return e.Value
	})
	if t != nil {
		extensionObjectTypes.Store(key, t)
	}
	return t
}

// probe returns the type of what f returns, or nil when it returns nil, is
// not a pointer, or panics (a type registered in a form gopcua's own
// registry cannot instantiate).
func probe(f func() any) (t reflect.Type) {
	defer func() {
		if recover() != nil {
			t = nil
		}
	}()
	v := f()
	if v == nil {
		return nil
	}
	if t = reflect.TypeOf(v); t.Kind() != reflect.Pointer {
		return nil
	}
	return t
}
