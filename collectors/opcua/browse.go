package opcua

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unicode"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"
)

const (
	// defaultNodesPerBrowse and defaultNodesPerRead bound a request when the
	// server does not report its OperationLimits.
	defaultNodesPerBrowse = 100
	defaultNodesPerRead   = 500
	// DefaultInFlight is how many browse or read requests are outstanding at
	// once: enough to hide latency, few enough not to swamp a small PLC.
	DefaultInFlight = 4
	// DefaultMaxReferencesPerNode is asked for in each Browse; a node with
	// more children is continued with BrowseNext.
	DefaultMaxReferencesPerNode = 1000
)

// BrowseOptions control a walk of a server's address space.
type BrowseOptions struct {
	Root   *ua.NodeID // where to start; nil: the Objects folder
	Depth  int        // levels below Root to walk; 0: no limit
	Filter string     // glob (path.Match) over tag names; "": every variable
	// MaxReferencesPerNode is asked for per node; 0: DefaultMaxReferencesPerNode.
	MaxReferencesPerNode uint32
	InFlight             int  // concurrent requests; 0: DefaultInFlight
	NamespaceURIs        bool // write node ids as nsu=<uri>;... instead of ns=<index>;...
	// OnVisit, when set, is called with the number of nodes each Browse
	// covered, from several goroutines at once.
	OnVisit func(n int)
}

// Variable is a variable found by Browse.
type Variable struct {
	Name        string // tag name: Path made safe for a topic level, unique
	Path        string // dot-joined browse names below the root
	Node        string // node id, as written in a configuration
	DataType    string // data type name, e.g. Double; "" when the server did not say
	AccessLevel ua.AccessLevelType
	accessKnown bool
	nodeID      *ua.NodeID
	dataTypeID  *ua.NodeID
}

// Access describes the access level, e.g. "read/write"; "" when unknown.
func (v Variable) Access() string {
	if !v.accessKnown {
		return ""
	}
	var parts []string
	if v.AccessLevel&ua.AccessLevelTypeCurrentRead != 0 {
		parts = append(parts, "read")
	}
	if v.AccessLevel&ua.AccessLevelTypeCurrentWrite != 0 {
		parts = append(parts, "write")
	}
	if len(parts) == 0 {
		parts = append(parts, "no access")
	}
	s := strings.Join(parts, "/")
	if v.AccessLevel&ua.AccessLevelTypeHistoryRead != 0 {
		s += ", history"
	}
	return s
}

// BrowseStats tells what a walk did.
type BrowseStats struct {
	Visited     int      // nodes browsed
	Browses     int      // Browse requests
	BrowseNexts int      // BrowseNext requests
	Retried     int      // nodes browsed again when the server had no continuation point left
	Skipped     []string // nodes the server would not browse, with the reason
}

// serverObject is the standard Server object: diagnostics and capabilities,
// not PLC tags. The walk passes it by unless it is the root.
var serverObject = ua.NewNumericNodeID(0, id.Server)

// browser holds one walk's state.
type browser struct {
	c          *opcua.Client
	opts       BrowseOptions
	perBrowse  int
	perRead    int
	namespaces []string
	nsIndex    map[string]uint16

	browses, nexts, retried atomic.Int64
	mu                      sync.Mutex
	skipped                 []string
}

// walkNode is a node waiting to be browsed.
type walkNode struct {
	id   *ua.NodeID
	path string
}

// Browse walks the address space below opts.Root along hierarchical
// references (Organizes, HasComponent, HasProperty, ... and their subtypes),
// one level at a time, so that a node reached on several paths is named
// after its shortest, and the result does not depend on timing. It returns
// the variables in the order found, their data types and access levels read.
func Browse(ctx context.Context, c *opcua.Client, opts BrowseOptions) ([]Variable, BrowseStats, error) {
	if opts.Filter != "" {
		if _, err := path.Match(opts.Filter, ""); err != nil {
			return nil, BrowseStats{}, fmt.Errorf("filter %q: %w", opts.Filter, err)
		}
	}
	if opts.Root == nil {
		opts.Root = ua.NewNumericNodeID(0, id.ObjectsFolder)
	}
	if opts.MaxReferencesPerNode == 0 {
		opts.MaxReferencesPerNode = DefaultMaxReferencesPerNode
	}
	if opts.InFlight <= 0 {
		opts.InFlight = DefaultInFlight
	}
	b := &browser{c: c, opts: opts, namespaces: c.Namespaces(), nsIndex: map[string]uint16{}}
	for i, uri := range b.namespaces {
		b.nsIndex[uri] = uint16(i)
	}
	b.perBrowse, b.perRead = readLimits(ctx, c)

	vars, visited, err := b.walk(ctx)
	stats := BrowseStats{Visited: visited, Browses: int(b.browses.Load()), BrowseNexts: int(b.nexts.Load()), Retried: int(b.retried.Load())}
	if err != nil {
		return nil, stats, err
	}
	if err := b.readAttributes(ctx, vars); err != nil {
		return nil, stats, err
	}
	stats.Skipped = b.skipped
	return vars, stats, nil
}

// readLimits reads the server's MaxNodesPerBrowse and MaxNodesPerRead; 0 or
// unreadable means the defaults.
func readLimits(ctx context.Context, c *opcua.Client) (perBrowse, perRead int) {
	perBrowse, perRead = defaultNodesPerBrowse, defaultNodesPerRead
	res, err := c.Read(ctx, &ua.ReadRequest{
		NodesToRead: []*ua.ReadValueID{
			{NodeID: ua.NewNumericNodeID(0, id.Server_ServerCapabilities_OperationLimits_MaxNodesPerBrowse), AttributeID: ua.AttributeIDValue},
			{NodeID: ua.NewNumericNodeID(0, id.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead), AttributeID: ua.AttributeIDValue},
		},
		TimestampsToReturn: ua.TimestampsToReturnNeither,
	})
	if err != nil || len(res.Results) != 2 {
		return perBrowse, perRead
	}
	limit := func(dv *ua.DataValue, def int) int {
		if dv == nil || dv.Status != ua.StatusOK || dv.Value == nil {
			return def
		}
		if n, ok := dv.Value.Value().(uint32); ok && n > 0 {
			return int(min(n, uint32(def)))
		}
		return def
	}
	return limit(res.Results[0], perBrowse), limit(res.Results[1], perRead)
}

// walk browses level by level and returns the variables found and the
// number of nodes browsed.
func (b *browser) walk(ctx context.Context) ([]Variable, int, error) {
	visited := map[string]bool{b.opts.Root.String(): true}
	names := map[string]bool{}
	var vars []Variable
	level := []walkNode{{id: b.opts.Root}}
	browsed := 0
	for depth := 0; len(level) > 0; depth++ {
		if b.opts.Depth > 0 && depth >= b.opts.Depth {
			break
		}
		refs, err := b.browseLevel(ctx, level)
		if err != nil {
			return nil, browsed, err
		}
		browsed += len(level)
		var next []walkNode
		for i, parent := range level {
			for _, r := range refs[i] {
				if r == nil || r.NodeID == nil || r.NodeID.NodeID == nil || r.NodeID.ServerIndex != 0 {
					continue // another server's node
				}
				if r.NodeClass != ua.NodeClassObject && r.NodeClass != ua.NodeClassVariable {
					continue
				}
				nid, ok := b.localID(r.NodeID)
				if !ok || visited[nid.String()] {
					continue
				}
				visited[nid.String()] = true
				if nid.Equal(serverObject) {
					continue
				}
				name := ""
				if r.BrowseName != nil {
					name = r.BrowseName.Name
				}
				p := name
				if parent.path != "" {
					p = parent.path + "." + name
				}
				next = append(next, walkNode{id: nid, path: p})
				if r.NodeClass != ua.NodeClassVariable {
					continue
				}
				tag := TagName(p)
				if b.opts.Filter != "" {
					if ok, _ := path.Match(b.opts.Filter, tag); !ok {
						continue
					}
				}
				vars = append(vars, Variable{Name: uniqueName(tag, names), Path: p, Node: b.configID(nid), nodeID: nid})
			}
		}
		level = next
	}
	return vars, browsed, nil
}

// browseLevel browses every node of one level in batches, opts.InFlight at
// a time, following continuation points; refs[i] are level[i]'s references.
// Nodes the server had no continuation point left for are browsed again
// afterwards, one request at a time.
func (b *browser) browseLevel(ctx context.Context, level []walkNode) ([][]*ua.ReferenceDescription, error) {
	refs := make([][]*ua.ReferenceDescription, len(level))
	var retry []int
	var retryMu sync.Mutex
	idx := make([]int, len(level))
	for i := range idx {
		idx[i] = i
	}
	err := b.batches(ctx, idx, b.perBrowse, b.opts.InFlight, func(ctx context.Context, batch []int) error {
		again, err := b.browseBatch(ctx, level, batch, refs)
		retryMu.Lock()
		retry = append(retry, again...)
		retryMu.Unlock()
		return err
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(retry)
	b.retried.Add(int64(len(retry)))
	// One request at a time now, so only our own points are held, and a
	// pass that browses nothing means the server has none to give.
	for len(retry) > 0 {
		var again []int
		for start := 0; start < len(retry); start += b.perBrowse {
			a, err := b.browseBatch(ctx, level, retry[start:min(start+b.perBrowse, len(retry))], refs)
			if err != nil {
				return nil, err
			}
			again = append(again, a...)
		}
		if len(again) == len(retry) {
			for _, i := range again {
				b.skip(level[i].id, ua.StatusBadNoContinuationPoints)
			}
			break
		}
		retry = again
	}
	return refs, nil
}

// batches runs fn over items in chunks of size, at most inFlight at once,
// and returns the first error; the others are then cancelled.
func (b *browser) batches(ctx context.Context, items []int, size, inFlight int, fn func(context.Context, []int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sem := make(chan struct{}, inFlight)
	var wg sync.WaitGroup
	for start := 0; start < len(items); start += size {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		batch := items[start:min(start+size, len(items))]
		wg.Go(func() {
			defer func() { <-sem }()
			if err := fn(ctx, batch); err != nil {
				cancel(err)
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	return nil
}

// browseBatch browses the nodes level[i] for i in batch and follows their
// continuation points to the end. It returns the indices the server had no
// continuation point for.
func (b *browser) browseBatch(ctx context.Context, level []walkNode, batch []int, refs [][]*ua.ReferenceDescription) (noCP []int, err error) {
	req := &ua.BrowseRequest{
		RequestedMaxReferencesPerNode: b.opts.MaxReferencesPerNode,
		NodesToBrowse:                 make([]*ua.BrowseDescription, len(batch)),
	}
	for j, i := range batch {
		req.NodesToBrowse[j] = &ua.BrowseDescription{
			NodeID:          level[i].id,
			BrowseDirection: ua.BrowseDirectionForward,
			ReferenceTypeID: ua.NewNumericNodeID(0, id.HierarchicalReferences),
			IncludeSubtypes: true,
			NodeClassMask:   uint32(ua.NodeClassObject | ua.NodeClassVariable),
			ResultMask:      uint32(ua.BrowseResultMaskAll),
		}
	}
	b.browses.Add(1)
	res, err := b.c.Browse(ctx, req)
	if err == nil && res.ResponseHeader != nil && res.ResponseHeader.ServiceResult != ua.StatusOK {
		err = res.ResponseHeader.ServiceResult
	}
	if err == nil && len(res.Results) != len(batch) {
		err = fmt.Errorf("server returned %d results for %d nodes", len(res.Results), len(batch))
	}
	if err != nil {
		return nil, fmt.Errorf("browse %d nodes from %s: %w", len(batch), level[batch[0]].id, err)
	}

	// cps are the continuation points still open; owners[j] is the node cps[j] continues.
	var cps [][]byte
	var owners []int
	for j, r := range res.Results {
		i := batch[j]
		switch {
		case r == nil:
			b.skip(level[i].id, ua.StatusBadUnexpectedError)
		case r.StatusCode == ua.StatusBadNoContinuationPoints:
			noCP = append(noCP, i)
		case r.StatusCode != ua.StatusOK:
			b.skip(level[i].id, r.StatusCode)
		default:
			refs[i] = append(refs[i], r.References...)
			if len(r.ContinuationPoint) > 0 {
				cps, owners = append(cps, r.ContinuationPoint), append(owners, i)
			}
		}
	}
	if b.opts.OnVisit != nil {
		b.opts.OnVisit(len(batch) - len(noCP)) // those are counted when browsed again
	}
	for len(cps) > 0 {
		if ctx.Err() != nil {
			b.release(ctx, cps)
			return nil, ctx.Err()
		}
		b.nexts.Add(1)
		next, err := b.c.BrowseNext(ctx, &ua.BrowseNextRequest{ContinuationPoints: cps})
		if err == nil && next.ResponseHeader != nil && next.ResponseHeader.ServiceResult != ua.StatusOK {
			err = next.ResponseHeader.ServiceResult
		}
		if err == nil && len(next.Results) != len(cps) {
			err = fmt.Errorf("server returned %d results for %d continuation points", len(next.Results), len(cps))
		}
		if err != nil {
			b.release(ctx, cps)
			return nil, fmt.Errorf("browse next of %d nodes from %s: %w", len(cps), level[owners[0]].id, err)
		}
		var moreCPs [][]byte
		var moreOwners []int
		for j, r := range next.Results {
			i := owners[j]
			switch {
			case r == nil:
				b.skip(level[i].id, ua.StatusBadUnexpectedError)
			case r.StatusCode != ua.StatusOK:
				b.skip(level[i].id, r.StatusCode)
			default:
				refs[i] = append(refs[i], r.References...)
				if len(r.ContinuationPoint) > 0 {
					moreCPs, moreOwners = append(moreCPs, r.ContinuationPoint), append(moreOwners, i)
				}
			}
		}
		cps, owners = moreCPs, moreOwners
	}
	return noCP, nil
}

// release frees continuation points the walk gives up on, so they do not
// hold the server's (often few) slots until the session ends.
func (b *browser) release(ctx context.Context, cps [][]byte) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
	defer cancel()
	_, _ = b.c.BrowseNext(rctx, &ua.BrowseNextRequest{ReleaseContinuationPoints: true, ContinuationPoints: cps})
}

func (b *browser) skip(n *ua.NodeID, code ua.StatusCode) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.skipped = append(b.skipped, n.String()+": "+statusName(code))
}

// localID turns a reference's target into a node id of this server,
// resolving a namespace URI to its index.
func (b *browser) localID(e *ua.ExpandedNodeID) (*ua.NodeID, bool) {
	s := e.NodeID.String()
	if e.NamespaceURI != "" {
		ns, ok := b.nsIndex[e.NamespaceURI]
		if !ok {
			return nil, false
		}
		_, ident := splitNS(s)
		s = ident
		if ns != 0 {
			s = "ns=" + strconv.Itoa(int(ns)) + ";" + ident
		}
	}
	// Parsed afresh: the decoded id may carry the expanded id's flags.
	n, err := ua.ParseNodeID(s)
	return n, err == nil
}

// configID writes n as a configuration's node id: ns=<index>;... or, with
// NamespaceURIs, nsu=<uri>;... (namespace 0 stays bare).
func (b *browser) configID(n *ua.NodeID) string {
	s := n.String()
	ns := n.Namespace()
	if !b.opts.NamespaceURIs || ns == 0 || int(ns) >= len(b.namespaces) {
		return s
	}
	_, ident := splitNS(s)
	return "nsu=" + b.namespaces[ns] + ";" + ident
}

func splitNS(s string) (ns, ident string) {
	if strings.HasPrefix(s, "ns=") {
		ns, ident, _ = strings.Cut(s, ";")
		return ns, ident
	}
	return "", s
}

// TagName makes a browse path safe for one MQTT topic level and for a
// configuration's tag name: no "/", "+", "#", NUL, spaces or control
// characters.
func TagName(p string) string {
	s := strings.Map(func(r rune) rune {
		if r == '/' || r == '+' || r == '#' || unicode.IsSpace(r) || unicode.IsControl(r) || r == unicode.ReplacementChar {
			return '_'
		}
		return r
	}, p)
	if s == "" {
		return "_"
	}
	return s
}

// uniqueName returns name, or name_2, name_3, ... when taken, and marks it taken.
func uniqueName(name string, taken map[string]bool) string {
	n := name
	for i := 2; taken[n]; i++ {
		n = name + "_" + strconv.Itoa(i)
	}
	taken[n] = true
	return n
}

// readAttributes reads the data type and access level of every variable,
// and the names of data types outside namespace 0.
func (b *browser) readAttributes(ctx context.Context, vars []Variable) error {
	idx := make([]int, len(vars))
	for i := range idx {
		idx[i] = i
	}
	// Two attributes per variable.
	err := b.batches(ctx, idx, max(1, b.perRead/2), b.opts.InFlight, func(ctx context.Context, batch []int) error {
		req := &ua.ReadRequest{TimestampsToReturn: ua.TimestampsToReturnNeither}
		for _, i := range batch {
			n := vars[i].nodeID
			req.NodesToRead = append(req.NodesToRead,
				&ua.ReadValueID{NodeID: n, AttributeID: ua.AttributeIDDataType},
				&ua.ReadValueID{NodeID: n, AttributeID: ua.AttributeIDAccessLevel})
		}
		res, err := b.c.Read(ctx, req)
		if err == nil && len(res.Results) != len(req.NodesToRead) {
			err = fmt.Errorf("server returned %d results for %d", len(res.Results), len(req.NodesToRead))
		}
		if err != nil {
			return fmt.Errorf("read data type and access level of %d variables from %s: %w", len(batch), vars[batch[0]].Node, err)
		}
		for j, i := range batch {
			if dv := res.Results[2*j]; dv != nil && dv.Status == ua.StatusOK && dv.Value != nil {
				if n, ok := dv.Value.Value().(*ua.NodeID); ok {
					vars[i].dataTypeID = n
				}
			}
			if dv := res.Results[2*j+1]; dv != nil && dv.Status == ua.StatusOK && dv.Value != nil {
				if a, ok := dv.Value.Value().(byte); ok {
					vars[i].AccessLevel, vars[i].accessKnown = ua.AccessLevelType(a), true
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	names := b.dataTypeNames(ctx, vars)
	for i := range vars {
		if n := vars[i].dataTypeID; n != nil {
			vars[i].DataType = names[n.String()]
		}
	}
	return nil
}

// dataTypeNames names every data type the variables use: namespace 0 from
// gopcua's table, the others (a PLC's own structures) by their browse name,
// read from the server; a type that cannot be named is shown as its node id.
func (b *browser) dataTypeNames(ctx context.Context, vars []Variable) map[string]string {
	names := map[string]string{}
	var unknown []*ua.NodeID
	for _, v := range vars {
		n := v.dataTypeID
		if n == nil {
			continue
		}
		key := n.String()
		if _, seen := names[key]; seen {
			continue
		}
		names[key] = key
		if n.Namespace() == 0 && n.Type() != ua.NodeIDTypeString && id.Name(n.IntID()) != "" {
			names[key] = id.Name(n.IntID())
			continue
		}
		unknown = append(unknown, n)
	}
	for start := 0; start < len(unknown); start += b.perRead {
		batch := unknown[start:min(start+b.perRead, len(unknown))]
		req := &ua.ReadRequest{TimestampsToReturn: ua.TimestampsToReturnNeither}
		for _, n := range batch {
			req.NodesToRead = append(req.NodesToRead, &ua.ReadValueID{NodeID: n, AttributeID: ua.AttributeIDBrowseName})
		}
		res, err := b.c.Read(ctx, req)
		if err != nil || len(res.Results) != len(batch) {
			continue // the node ids stand in
		}
		for j, dv := range res.Results {
			if dv == nil || dv.Status != ua.StatusOK || dv.Value == nil {
				continue
			}
			if q, ok := dv.Value.Value().(*ua.QualifiedName); ok && q.Name != "" {
				names[batch[j].String()] = q.Name
			}
		}
	}
	return names
}

// ParseNodeID parses a node id given as ns=<index>;..., nsu=<uri>;... or
// bare (namespace 0), using the connected server's namespace array.
func ParseNodeID(c *opcua.Client, s string) (*ua.NodeID, error) {
	if strings.HasPrefix(s, "nsu=") {
		e, err := ua.ParseExpandedNodeID(s, c.Namespaces())
		if err != nil {
			return nil, fmt.Errorf("node id %q: %w", s, err)
		}
		return e.NodeID, nil
	}
	n, err := ua.ParseNodeID(s)
	if err != nil {
		return nil, fmt.Errorf("node id %q: %w", s, err)
	}
	return n, nil
}
