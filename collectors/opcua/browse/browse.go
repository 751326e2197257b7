// Package browse walks an OPC UA server's address space and lists its
// variables with their data types and access levels, for tagbridge browse.
// It talks to the server only through Client.
package browse

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"

	"github.com/tagbridge/tagbridge/collectors/opcua/uastatus"
)

// Client sends requests over a session with the server.
type Client interface {
	// Send sends req and returns the server's response. A Bad ServiceResult
	// comes back as an error that errors.As finds as a ua.StatusCode.
	Send(ctx context.Context, req ua.Request) (ua.Response, error)
	// Namespaces is the server's namespace array, read when the session began.
	Namespaces() []string
}

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
	// DefaultRequestTimeout bounds one request: a server that stops
	// answering fails the walk instead of hanging it.
	DefaultRequestTimeout = 30 * time.Second
	// releaseTimeout bounds freeing continuation points on the way out.
	releaseTimeout = 2 * time.Second
)

// Options control a walk of a server's address space.
type Options struct {
	Root   *ua.NodeID // where to start; nil: the Objects folder
	Depth  int        // levels below Root to walk; 0: no limit
	Filter string     // glob (path.Match) over tag names; "": every variable
	// MaxReferencesPerNode is asked for per node; 0: DefaultMaxReferencesPerNode.
	MaxReferencesPerNode uint32
	InFlight             int  // concurrent requests; 0: DefaultInFlight
	NamespaceURIs        bool // write node ids as nsu=<uri>;... instead of ns=<index>;...
	// Namespace0 keeps variables of namespace 0 (the OPC UA standard's own
	// nodes, not PLC tags); by default the walk passes through them.
	Namespace0     bool
	RequestTimeout time.Duration // bound of each request; 0: DefaultRequestTimeout
	// OnVisit, when set, is called with the number of nodes each Browse
	// covered, from several goroutines at once.
	OnVisit func(n int)
}

// Variable is a variable found by Walk.
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

// Stats tells what a walk did.
type Stats struct {
	Visited     int      // nodes browsed
	Browses     int      // Browse requests
	BrowseNexts int      // BrowseNext requests
	Retried     int      // nodes browsed again when the server had no continuation point left
	Namespace0  int      // variables of namespace 0 left out (Options.Namespace0 unset)
	Skipped     []string // nodes the server would not browse, with the reason
}

// serverObject is the standard Server object: diagnostics and capabilities,
// not PLC tags. The walk passes it by unless it is the root.
var serverObject = ua.NewNumericNodeID(0, id.Server)

// browser holds one walk's state.
type browser struct {
	c          Client
	opts       Options
	perBrowse  int
	perRead    int
	namespaces []string
	nsIndex    map[string]uint16

	browses, nexts, retried, ns0 atomic.Int64
	mu                           sync.Mutex
	skipped                      []string
}

// walkNode is a node waiting to be browsed.
type walkNode struct {
	id   *ua.NodeID
	path string
}

// Walk walks the address space below opts.Root along hierarchical
// references (Organizes, HasComponent, HasProperty, ... and their subtypes),
// one level at a time, so that a node reached on several paths is named
// after its shortest, and the result does not depend on timing. It returns
// the variables in the order found, their data types and access levels read.
// Every request is bounded by opts.RequestTimeout; once ctx is done no new
// request goes out but those releasing continuation points, and Walk
// returns ctx's error.
func Walk(ctx context.Context, c Client, opts Options) ([]Variable, Stats, error) {
	if opts.Filter != "" {
		if _, err := path.Match(opts.Filter, ""); err != nil {
			return nil, Stats{}, fmt.Errorf("filter %q: %w", opts.Filter, err)
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
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = DefaultRequestTimeout
	}
	b := &browser{c: c, opts: opts, namespaces: c.Namespaces(), nsIndex: map[string]uint16{}}
	for i, uri := range b.namespaces {
		b.nsIndex[uri] = uint16(i)
	}
	var err error
	if b.perBrowse, b.perRead, err = b.readLimits(ctx); err != nil {
		return nil, Stats{}, err
	}

	vars, visited, err := b.walk(ctx)
	stats := Stats{Visited: visited, Browses: int(b.browses.Load()), BrowseNexts: int(b.nexts.Load()), Retried: int(b.retried.Load()), Namespace0: int(b.ns0.Load())}
	if err != nil {
		return nil, stats, err
	}
	if err := b.readAttributes(ctx, vars); err != nil {
		return nil, stats, err
	}
	stats.Skipped = b.skipped
	return vars, stats, nil
}

// send sends req with the walk's request timeout and checks the response's
// type. Nothing is sent once ctx is done.
func send[R ua.Response](ctx context.Context, b *browser, req ua.Request) (R, error) {
	var none R
	if err := context.Cause(ctx); err != nil {
		return none, err
	}
	ctx, cancel := context.WithTimeout(ctx, b.opts.RequestTimeout)
	defer cancel()
	res, err := b.c.Send(ctx, req)
	if err != nil {
		return none, err
	}
	r, ok := res.(R)
	if !ok {
		return none, fmt.Errorf("server answered a %T with a %T", req, res)
	}
	return r, nil
}

// readValue asks for one attribute of n in its default encoding. Every
// field is set: ua.Encode writes nothing for a nil pointer.
func readValue(n *ua.NodeID, attr ua.AttributeID) *ua.ReadValueID {
	return &ua.ReadValueID{NodeID: n, AttributeID: attr, DataEncoding: &ua.QualifiedName{}}
}

// readLimits reads the server's MaxNodesPerBrowse and MaxNodesPerRead; 0 or
// unreadable means the defaults. It fails only when ctx is done.
func (b *browser) readLimits(ctx context.Context) (perBrowse, perRead int, err error) {
	perBrowse, perRead = defaultNodesPerBrowse, defaultNodesPerRead
	res, err := send[*ua.ReadResponse](ctx, b, &ua.ReadRequest{
		NodesToRead: []*ua.ReadValueID{
			readValue(ua.NewNumericNodeID(0, id.Server_ServerCapabilities_OperationLimits_MaxNodesPerBrowse), ua.AttributeIDValue),
			readValue(ua.NewNumericNodeID(0, id.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead), ua.AttributeIDValue),
		},
		TimestampsToReturn: ua.TimestampsToReturnNeither,
	})
	if err := context.Cause(ctx); err != nil {
		return 0, 0, fmt.Errorf("read operation limits: %w", err)
	}
	if err != nil || len(res.Results) != 2 {
		return perBrowse, perRead, nil
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
	return limit(res.Results[0], perBrowse), limit(res.Results[1], perRead), nil
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
				if nid.Namespace() == 0 && !b.opts.Namespace0 {
					b.ns0.Add(1)
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
	return context.Cause(ctx)
}

// browseBatch browses the nodes level[i] for i in batch and follows their
// continuation points to the end. It returns the indices the server had no
// continuation point for.
func (b *browser) browseBatch(ctx context.Context, level []walkNode, batch []int, refs [][]*ua.ReferenceDescription) (noCP []int, err error) {
	req := &ua.BrowseRequest{
		View:                          &ua.ViewDescription{ViewID: ua.NewTwoByteNodeID(0)}, // the whole address space
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
	res, err := send[*ua.BrowseResponse](ctx, b, req)
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
		if err := context.Cause(ctx); err != nil {
			b.release(ctx, cps)
			return nil, err
		}
		b.nexts.Add(1)
		next, err := send[*ua.BrowseNextResponse](ctx, b, &ua.BrowseNextRequest{ContinuationPoints: cps})
		if err == nil && len(next.Results) != len(cps) {
			err = fmt.Errorf("server returned %d results for %d continuation points", len(next.Results), len(cps))
		}
		if err != nil {
			// A server that let a request time out is not asked again.
			if !errors.Is(err, context.DeadlineExceeded) {
				b.release(ctx, cps)
			}
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
// hold the server's (often few) slots until the session ends. It runs after
// ctx is done, so within a bound of its own.
func (b *browser) release(ctx context.Context, cps [][]byte) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), min(releaseTimeout, b.opts.RequestTimeout))
	defer cancel()
	_, _ = b.c.Send(rctx, &ua.BrowseNextRequest{ReleaseContinuationPoints: true, ContinuationPoints: cps})
}

func (b *browser) skip(n *ua.NodeID, code ua.StatusCode) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.skipped = append(b.skipped, n.String()+": "+uastatus.Name(code))
}
