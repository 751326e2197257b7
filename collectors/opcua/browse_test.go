package opcua

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/ua"
	"github.com/rs/zerolog"

	"github.com/tagbridge/tagbridge/scripts/opcua-peer/peerproc"
	"github.com/tagbridge/tagbridge/scripts/plcsim/simproc"
)

func TestTagNameAndUniqueName(t *testing.T) {
	tests := []struct{ path, want string }{
		{"PLCSim.Double.0000", "PLCSim.Double.0000"},
		{"Line 1/Temp+Max#", "Line_1_Temp_Max_"},
		{"a\x00b\tc\nd", "a_b_c_d"},
		{"Motor.Speed (rpm)", "Motor.Speed_(rpm)"},
		{"", "_"},
	}
	for _, tc := range tests {
		if got := TagName(tc.path); got != tc.want {
			t.Errorf("TagName(%q) = %q, want %q", tc.path, got, tc.want)
		}
	}
	taken := map[string]bool{}
	var got []string
	for _, n := range []string{"a", "a", "a_2", "a", "b"} {
		got = append(got, uniqueName(n, taken))
	}
	if want := "a a_2 a_2_2 a_3 b"; strings.Join(got, " ") != want {
		t.Errorf("unique names %v, want %s", got, want)
	}
}

// dialSim connects to a plcsim through Dial, as tagbridge browse does.
func dialSim(t *testing.T, endpoint string) *opcua.Client {
	t.Helper()
	plc := plcConfig(t, endpoint, "tags:\n  - node: i=2258")
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	c, err := Dial(ctx, plc, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		defer cancel()
		c.Close(ctx)
	})
	return c
}

// A walk over plcsim's 3000 variables finds each exactly once, with its
// data type and access level, following continuation points.
func TestBrowseFindsEveryPLCSimVariable(t *testing.T) {
	const n = 3000
	sim := simproc.Start(t, "-tags", fmt.Sprint(n), "-interval", "1s")
	c := dialSim(t, sim.Endpoint)

	var visits atomic.Int64
	vars, stats, err := Browse(t.Context(), c, BrowseOptions{MaxReferencesPerNode: 100, OnVisit: func(k int) { visits.Add(int64(k)) }})
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
	found := map[string]Variable{}
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
		id, err := ParseNodeID(c, v.Node)
		if err != nil {
			t.Fatal(err)
		}
		req.NodesToRead = append(req.NodesToRead, &ua.ReadValueID{NodeID: id, AttributeID: ua.AttributeIDValue})
	}
	res, err := c.Read(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	for i, dv := range res.Results {
		if dv.Status != ua.StatusOK {
			t.Errorf("read %s: %v", vars[i].Node, dv.Status)
		}
	}
}

func TestBrowseOptions(t *testing.T) {
	sim := simproc.Start(t, "-tags", "400", "-interval", "1s")
	c := dialSim(t, sim.Endpoint)
	simVars := func(vars []Variable) (n int) {
		for _, v := range vars {
			if strings.Contains(v.Node, "s=") {
				n++
			}
		}
		return n
	}
	tests := []struct {
		name      string
		opts      BrowseOptions
		want      int    // plcsim variables found
		firstName string // name of the first of them
		firstNode string
	}{
		{name: "filter", opts: BrowseOptions{Filter: "PLCSim.Int32.*"}, want: 100, firstName: "PLCSim.Int32.0001", firstNode: "ns=1;s=Int32.0001"},
		{name: "filter matches nothing", opts: BrowseOptions{Filter: "Nothing*"}, want: 0},
		{name: "depth 1 stops at the folder", opts: BrowseOptions{Depth: 1}, want: 0},
		{name: "depth 2 reaches the variables", opts: BrowseOptions{Depth: 2}, want: 400, firstName: "PLCSim.Double.0000", firstNode: "ns=1;s=Double.0000"},
		{name: "root", opts: BrowseOptions{Root: ua.NewNumericNodeID(1, 85)}, want: 400, firstName: "Double.0000", firstNode: "ns=1;s=Double.0000"},
		{name: "namespace uris", opts: BrowseOptions{Filter: "PLCSim.*", NamespaceURIs: true}, want: 400, firstName: "PLCSim.Double.0000", firstNode: "nsu=urn:tagbridge:plcsim;s=Double.0000"},
		{name: "one request in flight, small pages", opts: BrowseOptions{InFlight: 1, MaxReferencesPerNode: 7}, want: 400, firstName: "PLCSim.Double.0000", firstNode: "ns=1;s=Double.0000"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			vars, _, err := Browse(t.Context(), c, tc.opts)
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
				id, err := ParseNodeID(c, vars[0].Node)
				if err != nil || id.String() != "ns=1;s=Double.0000" {
					t.Errorf("%s resolves to %v, %v", vars[0].Node, id, err)
				}
			}
		})
	}
	t.Run("bad filter", func(t *testing.T) {
		if _, _, err := Browse(t.Context(), c, BrowseOptions{Filter: "["}); err == nil || !strings.Contains(err.Error(), `filter "["`) {
			t.Errorf("error %v, want one naming the filter", err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if _, _, err := Browse(ctx, c, BrowseOptions{}); err == nil {
			t.Error("no error from a cancelled walk")
		}
	})
}

// A server that lets a session hold one continuation point at a time
// (node-opcua then refuses every node of a request once one is held): the
// walk still finds every variable, by browsing refused nodes again, and an
// interrupted walk releases its continuation point, or the next walk could
// not page through the folder.
func TestBrowseWithOneContinuationPoint(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node-opcua")
	}
	const n = 120
	peer := peerproc.Start(t, peerproc.Options{Tags: n, Policies: []string{"None"}, Modes: []string{"None"},
		Args: []string{"-max-browse-continuation-points", "1"}})
	c := dialSim(t, peer.Endpoint)
	folder, err := ParseNodeID(c, "nsu=urn:tagbridge:plcsim;s=PLCSim")
	if err != nil {
		t.Fatal(err)
	}

	// Interrupted after the folder's first page: its continuation point is released.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	_, _, err = Browse(ctx, c, BrowseOptions{Root: folder, MaxReferencesPerNode: 20, OnVisit: func(int) { cancel() }})
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
		vars, stats, err := Browse(t.Context(), c, BrowseOptions{Root: root, MaxReferencesPerNode: maxRefs})
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
