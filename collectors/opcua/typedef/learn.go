package typedef

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"
)

// Client sends one request on a session (*uaclient.Client). A Bad service
// result comes back as an error.
type Client interface {
	Send(ctx context.Context, req ua.Request) (ua.Response, error)
}

// maxTypes bounds the DataTypes one Learn reads, so that a server with a
// huge or cyclic type model cannot keep it busy.
const maxTypes = 2000

// batch bounds the nodes of one Browse or Read.
const batch = 100

// Learn fetches the types behind binary encoding ids the registry does not
// know yet: the DataType each belongs to (inverse HasEncoding), its
// DataTypeDefinition, and those of every type its fields use. What cannot be
// learned is remembered, so Decode says why and Learn does not ask again
// until Reset. The error is for the log; types learned before it are kept.
func (r *Registry) Learn(ctx context.Context, c Client, encodings []*ua.NodeID) error {
	var todo []*ua.NodeID
	seen := map[string]bool{}
	for _, e := range encodings {
		if k := idString(e); e != nil && !seen[k] && !r.Knows(e) {
			seen[k] = true
			todo = append(todo, e)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	owners, err := firstRefs(ctx, c, todo, id.HasEncoding, ua.BrowseDirectionInverse, ua.NodeClassDataType)
	if err != nil {
		return fmt.Errorf("find the data types of %d encodings: %w", len(todo), err)
	}
	var types []*ua.NodeID
	r.mu.Lock()
	for i, e := range todo {
		if owners[i] == nil {
			owners[i] = standardOwner(e)
		}
		if owners[i] == nil {
			r.failed[idString(e)] = fmt.Errorf("encoding %s: no data type has it (inverse HasEncoding)", idString(e))
			continue
		}
		r.encodings[idString(e)] = idString(owners[i])
		types = append(types, owners[i])
	}
	r.mu.Unlock()
	return r.learnTypes(ctx, c, types)
}

// LearnTypes fetches DataTypes by their own ids (and what their fields use).
func (r *Registry) LearnTypes(ctx context.Context, c Client, types []*ua.NodeID) error {
	return r.learnTypes(ctx, c, types)
}

// learnTypes reads the definitions of types and of the types they need,
// level by level. A DataType without a definition is a simple type: its
// supertype, found by browsing, is read next until a built-in type.
func (r *Registry) learnTypes(ctx context.Context, c Client, types []*ua.NodeID) error {
	// aliases: a simple DataType -> the supertype whose encoding it shares.
	aliases := map[string]*ua.NodeID{}
	pending := types
	read := 0
	for len(pending) > 0 {
		pending = r.unknown(pending)
		if len(pending) == 0 {
			break
		}
		if read += len(pending); read > maxTypes {
			return fmt.Errorf("more than %d data types to read", maxTypes)
		}
		var next, simple []*ua.NodeID
		for from := 0; from < len(pending); from += batch {
			part := pending[from:min(from+batch, len(pending))]
			defs, err := readDefinitions(ctx, c, part)
			if err != nil {
				return fmt.Errorf("read data type definitions: %w", err)
			}
			for i, dt := range part {
				t, needs, err := typeOf(dt, defs[i])
				switch {
				case errors.Is(err, errNoDefinition):
					simple = append(simple, dt)
				case err != nil:
					r.setFailed(dt, err)
				default:
					r.setType(t)
					next = append(next, needs...)
				}
			}
		}
		if len(simple) > 0 {
			// No definition: a legacy dictionary may describe it.
			var needs []*ua.NodeID
			var err error
			if simple, needs, err = r.learnDictionaries(ctx, c, simple); err != nil {
				return fmt.Errorf("look up legacy type dictionaries: %w", err)
			}
			next = append(next, needs...)
		}
		if len(simple) > 0 {
			supers, err := firstRefs(ctx, c, simple, id.HasSubtype, ua.BrowseDirectionInverse, ua.NodeClassDataType)
			if err != nil {
				return fmt.Errorf("find the supertypes of %d data types: %w", len(simple), err)
			}
			for i, dt := range simple {
				switch {
				case supers[i] == nil:
					r.setFailed(dt, fmt.Errorf("data type %s: no definition and no supertype", idString(dt)))
				case isBuiltinOrKnown(supers[i]):
					r.setAlias(dt, supers[i])
				default:
					aliases[idString(dt)] = supers[i]
					next = append(next, supers[i])
				}
			}
		}
		pending = next
	}
	// Resolve chains of simple types now that their supertypes are known.
	for range len(aliases) + 1 {
		done := true
		for k, super := range aliases {
			if r.resolveAlias(k, super) {
				delete(aliases, k)
			} else {
				done = false
			}
		}
		if done {
			break
		}
	}
	for k := range aliases {
		r.mu.Lock()
		r.failed[k] = fmt.Errorf("data type %s: no built-in supertype found", k)
		r.mu.Unlock()
	}
	return nil
}

// unknown are the types in ids not learned or failed yet, each once, and
// neither built-in nor abstract.
func (r *Registry) unknown(ids []*ua.NodeID) []*ua.NodeID {
	var out []*ua.NodeID
	seen := map[string]bool{}
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, n := range ids {
		k := idString(n)
		if n == nil || seen[k] || r.types[k] != nil || r.failed[k] != nil {
			continue
		}
		if _, ok := builtinOf(n); ok {
			continue
		}
		if _, ok := abstractOf(n); ok {
			continue
		}
		seen[k] = true
		out = append(out, n)
	}
	return out
}

func isBuiltinOrKnown(n *ua.NodeID) bool {
	_, ok := builtinOf(n)
	return ok
}

func (r *Registry) setType(t *Type) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.types[idString(t.ID)] = t
}

func (r *Registry) setFailed(dt *ua.NodeID, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failed[idString(dt)] = err
}

// setAlias records dt as encoded like its built-in supertype.
func (r *Registry) setAlias(dt, super *ua.NodeID) {
	b, _ := builtinOf(super)
	r.setType(&Type{ID: dt, Kind: KindBuiltin, Builtin: b})
}

// resolveAlias gives the simple type k its supertype's encoding once that
// is known; enumerations and structures subtyped without a definition of
// their own keep their supertype's.
func (r *Registry) resolveAlias(k string, super *ua.NodeID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.types[idString(super)]
	if st == nil {
		return false
	}
	t := *st
	r.types[k] = &t
	return true
}

var errNoDefinition = errors.New("no DataTypeDefinition")

// typeOf builds a Type from a DataTypeDefinition read result, and lists the
// DataTypes its fields use.
func typeOf(dt *ua.NodeID, dv *ua.DataValue) (*Type, []*ua.NodeID, error) {
	if dv == nil || dv.Status != ua.StatusOK || dv.Value == nil {
		return nil, nil, errNoDefinition
	}
	eo, ok := dv.Value.Value().(*ua.ExtensionObject)
	if !ok || eo == nil {
		return nil, nil, errNoDefinition
	}
	switch def := eo.Value.(type) {
	case *ua.StructureDefinition:
		t := &Type{ID: dt, Encoding: def.DefaultEncodingID}
		switch def.StructureType {
		case ua.StructureTypeStructure:
			t.Kind = KindStructure
		case ua.StructureTypeStructureWithOptionalFields:
			t.Kind = KindOptional
		case ua.StructureTypeUnion:
			t.Kind = KindUnion
		default:
			return nil, nil, fmt.Errorf("data type %s: %v not supported", idString(dt), def.StructureType)
		}
		var needs []*ua.NodeID
		for _, f := range def.Fields {
			if f == nil || f.DataType == nil {
				return nil, nil, fmt.Errorf("data type %s: a field without a data type", idString(dt))
			}
			t.Fields = append(t.Fields, Field{Name: f.Name, DataType: f.DataType, ValueRank: f.ValueRank, Optional: f.IsOptional})
			needs = append(needs, f.DataType)
		}
		return t, needs, nil
	case *ua.EnumDefinition:
		t := &Type{ID: dt, Kind: KindEnum, Names: make(map[int64]string, len(def.Fields))}
		for _, f := range def.Fields {
			if f != nil {
				t.Names[f.Value] = f.Name
			}
		}
		return t, nil, nil
	}
	return nil, nil, fmt.Errorf("data type %s: definition of type %T", idString(dt), eo.Value)
}

func readDefinitions(ctx context.Context, c Client, types []*ua.NodeID) ([]*ua.DataValue, error) {
	req := &ua.ReadRequest{TimestampsToReturn: ua.TimestampsToReturnNeither}
	for _, dt := range types {
		req.NodesToRead = append(req.NodesToRead, &ua.ReadValueID{NodeID: dt, AttributeID: ua.AttributeIDDataTypeDefinition, DataEncoding: &ua.QualifiedName{}})
	}
	res, err := c.Send(ctx, req)
	if err != nil {
		return nil, err
	}
	rr, ok := res.(*ua.ReadResponse)
	if !ok || len(rr.Results) != len(types) {
		return nil, fmt.Errorf("read of %d definitions: unexpected answer %T", len(types), res)
	}
	return rr.Results, nil
}

// firstRefs is the first target of one reference type from each node (nil
// for a nil node or none).
func firstRefs(ctx context.Context, c Client, nodes []*ua.NodeID, ref uint32, dir ua.BrowseDirection, class ua.NodeClass) ([]*ua.NodeID, error) {
	refs, err := browseRefs(ctx, c, nodes, ref, dir, class, 1)
	if err != nil {
		return nil, err
	}
	out := make([]*ua.NodeID, len(nodes))
	for i, rs := range refs {
		if len(rs) > 0 && rs[0].NodeID != nil {
			out[i] = rs[0].NodeID.NodeID
		}
	}
	return out, nil
}

// browseRefs follows one reference type (and its subtypes) from each
// non-nil node to targets of one node class, with their browse names, at
// most maxRefs a node (0: as many as the server sends). It takes what the
// server sends in one answer and releases the rest.
func browseRefs(ctx context.Context, c Client, nodes []*ua.NodeID, ref uint32, dir ua.BrowseDirection, class ua.NodeClass, maxRefs uint32) ([][]*ua.ReferenceDescription, error) {
	out := make([][]*ua.ReferenceDescription, len(nodes))
	var idx []int
	for i, n := range nodes {
		if n != nil {
			idx = append(idx, i)
		}
	}
	for from := 0; from < len(idx); from += batch {
		part := idx[from:min(from+batch, len(idx))]
		req := &ua.BrowseRequest{View: &ua.ViewDescription{ViewID: ua.NewTwoByteNodeID(0)}, RequestedMaxReferencesPerNode: maxRefs}
		for _, i := range part {
			req.NodesToBrowse = append(req.NodesToBrowse, &ua.BrowseDescription{
				NodeID:          nodes[i],
				BrowseDirection: dir,
				ReferenceTypeID: ua.NewNumericNodeID(0, ref),
				IncludeSubtypes: true,
				NodeClassMask:   uint32(class),
				ResultMask:      uint32(ua.BrowseResultMaskBrowseName),
			})
		}
		res, err := c.Send(ctx, req)
		if err != nil {
			return nil, err
		}
		br, ok := res.(*ua.BrowseResponse)
		if !ok || len(br.Results) != len(part) {
			return nil, fmt.Errorf("browse of %d nodes: unexpected answer %T", len(part), res)
		}
		var cps [][]byte
		for j, r := range br.Results {
			if r == nil {
				continue
			}
			if len(r.ContinuationPoint) > 0 {
				cps = append(cps, r.ContinuationPoint)
			}
			if r.StatusCode == ua.StatusOK {
				out[part[j]] = r.References
			}
		}
		if len(cps) > 0 { // free what was not asked for
			_, _ = c.Send(ctx, &ua.BrowseNextRequest{ReleaseContinuationPoints: true, ContinuationPoints: cps})
		}
	}
	return out, nil
}

// standardOwner is the DataType of a namespace 0 binary encoding by the
// specification's names ("ServerStatusDataType_Encoding_DefaultBinary"
// belongs to "ServerStatusDataType"), for servers whose reduced namespace
// 0 lacks the encoding nodes' references (open62541's default build).
func standardOwner(enc *ua.NodeID) *ua.NodeID {
	if enc == nil || enc.Namespace() != 0 || enc.Type() > ua.NodeIDTypeNumeric {
		return nil
	}
	name, ok := strings.CutSuffix(id.Name(enc.IntID()), "_Encoding_DefaultBinary")
	if !ok {
		return nil
	}
	if n, ok := standardIDs()[name]; ok {
		return ua.NewNumericNodeID(0, n)
	}
	return nil
}

// standardIDs maps the names of namespace 0 nodes to their ids; gopcua's
// id package has only the other direction.
var standardIDs = sync.OnceValue(func() map[string]uint32 {
	m := map[string]uint32{}
	for n := uint32(1); n < 40000; n++ {
		if name := id.Name(n); name != "" && name != strconv.FormatUint(uint64(n), 10) {
			if _, dup := m[name]; !dup {
				m[name] = n
			}
		}
	}
	return m
})
