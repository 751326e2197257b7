package browse_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"
	"github.com/rs/zerolog"

	"github.com/tagbridge/tagbridge/collectors/opcua"
	"github.com/tagbridge/tagbridge/collectors/opcua/browse"
	"github.com/tagbridge/tagbridge/config"
	"github.com/tagbridge/tagbridge/scripts/faultproxy"
	"github.com/tagbridge/tagbridge/scripts/opcua-peer/peerproc"
	"github.com/tagbridge/tagbridge/scripts/plcsim/simproc"
)

// connect opens a session to an unsecured server as tagbridge browse does.
func connect(t *testing.T, endpoint string) browse.Client {
	t.Helper()
	cfg, err := config.Parse("test.yaml", fmt.Appendf(nil, "agent: {id: test}\nplcs:\n  - name: sim\n    endpoint: %s\n    tags:\n      - node: i=2258\n", endpoint))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	c, err := opcua.Dial(ctx, cfg.PLCs[0], zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		c.Close(ctx)
	})
	return c
}

func TestTagName(t *testing.T) {
	tests := []struct{ path, want string }{
		{"PLCSim.Double.0000", "PLCSim.Double.0000"},
		{"Line 1/Temp+Max#", "Line_1_Temp_Max_"},
		{"a\x00b\tc\nd", "a_b_c_d"},
		{"Motor.Speed (rpm)", "Motor.Speed_(rpm)"},
		{"bad \xff utf-8", "bad___utf-8"},
		{"", "_"},
	}
	for _, tc := range tests {
		if got := browse.TagName(tc.path); got != tc.want {
			t.Errorf("TagName(%q) = %q, want %q", tc.path, got, tc.want)
		}
	}
}

// A walk over plcsim's 3000 variables finds each exactly once, with its
// data type and access level, following continuation points.
func TestWalkFindsEveryPLCSimVariable(t *testing.T) {
	const n = 3000
	sim := simproc.Start(t, "-tags", fmt.Sprint(n), "-interval", "1s")
	c := connect(t, sim.Endpoint)

	var visits atomic.Int64
	vars, stats, err := browse.Walk(t.Context(), c, browse.Options{MaxReferencesPerNode: 100, OnVisit: func(k int) { visits.Add(int64(k)) }})
	if err != nil {
		t.Fatal(err)
	}
	// The PLCSim folder's 3000 children come 100 at a time: 29 BrowseNext rounds at least.
	if stats.BrowseNexts < n/100-1 {
		t.Errorf("%d BrowseNext requests, want at least %d (continuation points not followed?)", stats.BrowseNexts, n/100-1)
	}
	if int(visits.Load()) != stats.Visited || stats.Visited < n {
		t.Errorf("OnVisit counted %d, stats say %d visited, want both >= %d", visits.Load(), stats.Visited, n)
	}
	kinds := []string{"Double", "Int32", "Boolean", "String"}
	found := map[string]browse.Variable{}
	for _, v := range vars {
		if _, dup := found[v.Node]; dup {
			t.Fatalf("node %s found twice", v.Node)
		}
		found[v.Node] = v
		if strings.HasPrefix(v.Node, "i=") && strings.HasPrefix(v.Name, "Server") {
			t.Errorf("variable %s of the Server object: it should be passed by", v.Name)
		}
	}
	for i := range n {
		k := kinds[i%4]
		node := fmt.Sprintf("ns=1;s=%s.%04d", k, i)
		v, ok := found[node]
		if !ok {
			t.Fatalf("node %s not found (%d variables found)", node, len(vars))
		}
		if want := fmt.Sprintf("PLCSim.%s.%04d", k, i); v.Name != want || v.Path != want {
			t.Errorf("%s: name %q, path %q, want %q", node, v.Name, v.Path, want)
		}
		if v.DataType != k || v.Access() != "read" {
			t.Errorf("%s: data type %q, access %q, want %s, read", node, v.DataType, v.Access(), k)
		}
		delete(found, node)
	}
	for node := range found {
		if strings.HasPrefix(node, "ns=1;") {
			t.Errorf("unexpected plcsim node %s", node)
		}
	}

	// The node ids read back.
	req := &ua.ReadRequest{TimestampsToReturn: ua.TimestampsToReturnNeither}
	for _, v := range vars[:min(len(vars), 50)] {
		id, err := browse.ParseNodeID(v.Node, c.Namespaces())
		if err != nil {
			t.Fatal(err)
		}
		req.NodesToRead = append(req.NodesToRead, &ua.ReadValueID{NodeID: id, AttributeID: ua.AttributeIDValue, DataEncoding: &ua.QualifiedName{}})
	}
	res, err := c.Send(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	for i, dv := range res.(*ua.ReadResponse).Results {
		if dv.Status != ua.StatusOK {
			t.Errorf("read %s: %v", vars[i].Node, dv.Status)
		}
	}
}

func TestWalkOptions(t *testing.T) {
	sim := simproc.Start(t, "-tags", "400", "-interval", "1s")
	c := connect(t, sim.Endpoint)
	simVars := func(vars []browse.Variable) (n int) {
		for _, v := range vars {
			if strings.Contains(v.Node, "s=") {
				n++
			}
		}
		return n
	}
	tests := []struct {
		name      string
		opts      browse.Options
		want      int    // plcsim variables found
		firstName string // name of the first of them
		firstNode string
	}{
		{name: "filter", opts: browse.Options{Filter: "PLCSim.Int32.*"}, want: 100, firstName: "PLCSim.Int32.0001", firstNode: "ns=1;s=Int32.0001"},
		{name: "filter matches nothing", opts: browse.Options{Filter: "Nothing*"}, want: 0},
		{name: "depth 1 stops at the folder", opts: browse.Options{Depth: 1}, want: 0},
		{name: "depth 2 reaches the variables", opts: browse.Options{Depth: 2}, want: 400, firstName: "PLCSim.Double.0000", firstNode: "ns=1;s=Double.0000"},
		{name: "root", opts: browse.Options{Root: ua.NewNumericNodeID(1, 85)}, want: 400, firstName: "Double.0000", firstNode: "ns=1;s=Double.0000"},
		{name: "namespace uris", opts: browse.Options{Filter: "PLCSim.*", NamespaceURIs: true}, want: 400, firstName: "PLCSim.Double.0000", firstNode: "nsu=urn:tagbridge:plcsim;s=Double.0000"},
		{name: "one request in flight, small pages", opts: browse.Options{InFlight: 1, MaxReferencesPerNode: 7}, want: 400, firstName: "PLCSim.Double.0000", firstNode: "ns=1;s=Double.0000"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			vars, _, err := browse.Walk(t.Context(), c, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := simVars(vars); got != tc.want {
				t.Fatalf("%d plcsim variables, want %d", got, tc.want)
			}
			for _, v := range vars {
				if strings.Contains(v.Node, "s=") {
					if v.Name != tc.firstName || v.Node != tc.firstNode {
						t.Errorf("first: %s %s, want %s %s", v.Name, v.Node, tc.firstName, tc.firstNode)
					}
					break
				}
			}
			if tc.opts.NamespaceURIs {
				id, err := browse.ParseNodeID(vars[0].Node, c.Namespaces())
				if err != nil || id.String() != "ns=1;s=Double.0000" {
					t.Errorf("%s resolves to %v, %v", vars[0].Node, id, err)
				}
			}
		})
	}
	t.Run("bad filter", func(t *testing.T) {
		if _, _, err := browse.Walk(t.Context(), c, browse.Options{Filter: "["}); err == nil || !strings.Contains(err.Error(), `filter "["`) {
			t.Errorf("error %v, want one naming the filter", err)
		}
	})
	t.Run("unknown namespace uri", func(t *testing.T) {
		if _, err := browse.ParseNodeID("nsu=urn:nowhere;s=X", c.Namespaces()); err == nil || !strings.Contains(err.Error(), `node id "nsu=urn:nowhere;s=X"`) {
			t.Errorf("error %v, want one naming the node id", err)
		}
	})
}

// recorder passes requests to a real client and notes, for each, whether
// its context had a deadline within timeout and whether it went out after
// the walk's context was cancelled. It cancels that context at request
// number cancelAt (releases of continuation points aside): as it goes out
// when inFlight, else once it was answered.
type recorder struct {
	browse.Client
	timeout  time.Duration
	cancelAt int
	inFlight bool
	cancel   context.CancelFunc

	mu         sync.Mutex
	count      int
	cancelled  bool
	sent       []string // request types, in order, releases as "release"
	noDeadline []string
	late       []string // sent after the cancellation, releases aside
	releases   int
}

func (r *recorder) Send(ctx context.Context, req ua.Request) (ua.Response, error) {
	name := strings.TrimPrefix(fmt.Sprintf("%T", req), "*ua.")
	release := false
	if next, ok := req.(*ua.BrowseNextRequest); ok && next.ReleaseContinuationPoints {
		name, release = "release", true
	}
	r.mu.Lock()
	r.sent = append(r.sent, name)
	if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > r.timeout {
		r.noDeadline = append(r.noDeadline, name)
	}
	n := 0
	switch {
	case release:
		r.releases++
	case r.cancelled:
		r.late = append(r.late, name)
	default:
		r.count++
		n = r.count
	}
	if n == r.cancelAt && r.inFlight {
		r.cancel()
		r.cancelled = true
	}
	r.mu.Unlock()

	res, err := r.Client.Send(ctx, req)

	r.mu.Lock()
	defer r.mu.Unlock()
	if n == r.cancelAt && !r.inFlight {
		r.cancel()
		r.cancelled = true
	}
	return res, err
}

// Every request of a walk has a deadline, and a walk cancelled at any of
// its requests, while it is on the way or once it was answered, sends
// nothing more (but releases of continuation points) and returns the
// cancellation: Ctrl-C is honoured at every step.
func TestWalkHonoursCancellationAtEveryStep(t *testing.T) {
	// -struct: a variable of the simulator's own structure type, whose name
	// the walk asks for last.
	sim := simproc.Start(t, "-tags", "40", "-interval", "1s", "-struct")
	c := connect(t, sim.Endpoint)
	// One request at a time, so that the cancellation falls between two
	// known requests; small pages, so that BrowseNext is one of them.
	opts := browse.Options{InFlight: 1, MaxReferencesPerNode: 7, RequestTimeout: 5 * time.Second}

	whole := &recorder{Client: c, timeout: opts.RequestTimeout, cancel: func() {}}
	vars, _, err := browse.Walk(t.Context(), whole, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(vars) < 41 {
		t.Fatalf("%d variables found, want at least 41", len(vars))
	}
	// plcsim serves no node for its type: the type's id stands in for its name.
	if i := slices.IndexFunc(vars, func(v browse.Variable) bool { return v.Node == "ns=1;s=Struct.Sample" }); i < 0 || vars[i].DataType != "ns=1;i=3001" {
		t.Errorf("Struct.Sample not found with data type ns=1;i=3001: %+v", vars)
	}
	if len(whole.noDeadline) > 0 {
		t.Errorf("requests without a deadline within %s: %v", opts.RequestTimeout, whole.noDeadline)
	}
	steps := strings.Join(whole.sent, " ")
	for _, kind := range []string{"ReadRequest", "BrowseRequest", "BrowseNextRequest"} {
		if !strings.Contains(steps, kind) {
			t.Fatalf("the walk sent no %s: %s", kind, steps)
		}
	}
	t.Logf("%d requests: %s", len(whole.sent), steps)

	for k := 1; k <= len(whole.sent); k++ {
		for _, inFlight := range []bool{true, false} {
			if k == len(whole.sent) && !inFlight {
				continue // the walk has all it needs
			}
			ctx, cancel := context.WithCancel(t.Context())
			r := &recorder{Client: c, timeout: opts.RequestTimeout, cancelAt: k, inFlight: inFlight, cancel: cancel}
			_, _, err := browse.Walk(ctx, r, opts)
			cancel()
			at := fmt.Sprintf("cancelled at request %d (%s, in flight %t)", k, whole.sent[k-1], inFlight)
			if !errors.Is(err, context.Canceled) {
				t.Errorf("%s: error %v, want context.Canceled", at, err)
			}
			if len(r.late) > 0 {
				t.Errorf("%s: then sent %v", at, r.late)
			}
			if len(r.noDeadline) > 0 {
				t.Errorf("%s: requests without a deadline within %s: %v", at, opts.RequestTimeout, r.noDeadline)
			}
			// Cancelled between or during pages of the folder, the walk
			// frees its continuation point.
			pending := whole.sent[k-1]
			if !inFlight {
				pending = whole.sent[k]
			}
			if pending == "BrowseNextRequest" && r.releases == 0 {
				t.Errorf("%s: no continuation point released", at)
			}
		}
	}
}

// A server that stops answering in the middle of a session (the proxy
// holds every byte, both TCP connections stay open) fails a walk after the
// request timeout, not gopcua's 10 s nor never, and a cancelled walk
// returns at once.
func TestWalkSilentServer(t *testing.T) {
	sim := simproc.Start(t, "-tags", "40", "-interval", "1s")
	proxy := faultproxy.Start(t, strings.TrimPrefix(sim.Endpoint, "opc.tcp://"))
	c := connect(t, "opc.tcp://"+proxy.Addr())
	if _, _, err := browse.Walk(t.Context(), c, browse.Options{}); err != nil {
		t.Fatalf("walk before the server fell silent: %v", err)
	}
	proxy.Freeze()
	t.Cleanup(proxy.Thaw) // closing the session then is quick

	start := time.Now()
	_, _, err := browse.Walk(t.Context(), c, browse.Options{RequestTimeout: 300 * time.Millisecond})
	if el := time.Since(start); !errors.Is(err, context.DeadlineExceeded) || el > 3*time.Second {
		t.Errorf("request timeout 300ms: error %v after %s, want context.DeadlineExceeded within 3s", err, el.Round(time.Millisecond))
	}

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	time.AfterFunc(300*time.Millisecond, cancel)
	start = time.Now()
	_, _, err = browse.Walk(ctx, c, browse.Options{})
	if el := time.Since(start); !errors.Is(err, context.Canceled) || el > 2*time.Second {
		t.Errorf("cancelled after 300ms: error %v after %s, want context.Canceled within 2s", err, el.Round(time.Millisecond))
	}
}

// A server that lets a session hold one continuation point at a time
// (node-opcua then refuses every node of a request once one is held): the
// walk still finds every variable, by browsing refused nodes again, and an
// interrupted walk releases its continuation point, or the next walk could
// not page through the folder.
func TestWalkWithOneContinuationPoint(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node-opcua")
	}
	const n = 120
	peer := peerproc.Start(t, peerproc.Options{Tags: n, Policies: []string{"None"}, Modes: []string{"None"},
		Args: []string{"-max-browse-continuation-points", "1"}})
	c := connect(t, peer.Endpoint)
	folder, err := browse.ParseNodeID("nsu=urn:tagbridge:plcsim;s=PLCSim", c.Namespaces())
	if err != nil {
		t.Fatal(err)
	}

	// Interrupted after the folder's first page: its continuation point is released.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	_, _, err = browse.Walk(ctx, c, browse.Options{Root: folder, MaxReferencesPerNode: 20, OnVisit: func(int) { cancel() }})
	if err == nil {
		t.Fatal("an interrupted walk returned no error")
	}

	retried := 0
	for _, root := range []*ua.NodeID{folder, nil} {
		// One reference per node from the Objects folder: several nodes of
		// a request need a continuation point.
		maxRefs := uint32(20)
		if root == nil {
			maxRefs = 2
		}
		vars, stats, err := browse.Walk(t.Context(), c, browse.Options{Root: root, MaxReferencesPerNode: maxRefs})
		if err != nil {
			t.Fatal(err)
		}
		if len(stats.Skipped) > 0 {
			t.Errorf("root %v: skipped %v", root, stats.Skipped)
		}
		if stats.BrowseNexts < n/int(maxRefs)-1 {
			t.Errorf("root %v: %d BrowseNext requests, want at least %d", root, stats.BrowseNexts, n/int(maxRefs)-1)
		}
		retried += stats.Retried
		got := 0
		for _, v := range vars {
			if strings.HasPrefix(v.Node, "ns=1;s=") {
				got++
			}
		}
		if got != n {
			t.Errorf("root %v: %d plcsim variables, want %d", root, got, n)
		}
	}
	if retried == 0 {
		t.Error("no node was browsed again: the server's refusals were not exercised")
	}
}
