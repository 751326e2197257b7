package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"
	"go.yaml.in/yaml/v3"

	"github.com/tagbridge/tagbridge/internal/testkit"
)

// bin is the plcsim binary built by TestMain, with -race when the tests run
// with -race.
var bin string

const (
	readyTimeout = 60 * time.Second // first start of a -race binary on a slow CI machine
	stopTimeout  = 15 * time.Second
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "plcsim-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "plcsim")
	args := []string{"build", "-o", bin}
	if raceEnabled() {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, ".")...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "go build plcsim: %v\n", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

type tagEntry struct {
	Name string `yaml:"name"`
	Node string `yaml:"node"`
}

// printTags runs plcsim -print-tags and decodes its output strictly.
func printTags(t *testing.T, args ...string) []tagEntry {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), bin, append([]string{"-print-tags"}, args...)...).Output()
	if err != nil {
		t.Fatalf("plcsim -print-tags %v: %v", args, err)
	}
	var doc struct {
		Tags []tagEntry `yaml:"tags"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(out))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("-print-tags output is not the expected YAML: %v\n%s", err, out)
	}
	return doc.Tags
}

var mqttLevel = regexp.MustCompile(`^[a-z0-9_]+$`)

func TestPrintTags(t *testing.T) {
	tests := []struct {
		name        string
		args        []string
		count       int
		first, last tagEntry
	}{
		{"default", nil, 100,
			tagEntry{"double_0000", "ns=1;s=Double.0000"}, tagEntry{"string_0099", "ns=1;s=String.0099"}},
		{"each type", []string{"-tags", "4"}, 4,
			tagEntry{"double_0000", "ns=1;s=Double.0000"}, tagEntry{"string_0003", "ns=1;s=String.0003"}},
		{"five digits", []string{"-tags", "10002"}, 10002,
			tagEntry{"double_00000", "ns=1;s=Double.00000"}, tagEntry{"int32_10001", "ns=1;s=Int32.10001"}},
		{"none", []string{"-tags", "0"}, 0, tagEntry{}, tagEntry{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tags := printTags(t, tt.args...)
			if len(tags) != tt.count {
				t.Fatalf("got %d tags, want %d", len(tags), tt.count)
			}
			if tt.count == 0 {
				return
			}
			if tags[0] != tt.first || tags[len(tags)-1] != tt.last {
				t.Errorf("first, last = %v, %v; want %v, %v", tags[0], tags[len(tags)-1], tt.first, tt.last)
			}
			seen := map[string]bool{}
			for i, tag := range tags {
				if !mqttLevel.MatchString(tag.Name) || seen[tag.Name] {
					t.Errorf("tags[%d].name %q: not a unique [a-z0-9_]+ topic level", i, tag.Name)
				}
				seen[tag.Name] = true
				n, err := ua.ParseNodeID(tag.Node)
				if err != nil || n.Namespace() != namespaceIndex || n.Type() != ua.NodeIDTypeString {
					t.Errorf("tags[%d].node %q: want a string node id in ns=%d (err %v)", i, tag.Node, namespaceIndex, err)
				}
				if want := kinds[i%4].name + "."; !strings.HasPrefix(n.StringID(), want) {
					t.Errorf("tags[%d].node %q: want prefix %q", i, tag.Node, want)
				}
			}
		})
	}
}

func TestBadFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"zero interval", []string{"-interval", "0s"}},
		{"negative tags", []string{"-tags", "-1"}},
		{"port out of range", []string{"-port", "70000"}},
		{"start beyond int32", []string{"-start", "2147483648"}},
		{"argument", []string{"extra"}},
		{"unknown flag", []string{"-nope"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := exec.CommandContext(t.Context(), bin, tt.args...).Run()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 2 {
				t.Errorf("plcsim %v: got %v, want exit status 2", tt.args, err)
			}
		})
	}
}

// plcsim is a running simulator process.
type plcsim struct {
	url     string
	cmd     *exec.Cmd
	stderr  testkit.Log
	extra   chan string   // a stdout line after READY, if any
	eof     chan struct{} // closed when stdout is at EOF, i.e. plcsim has exited
	stopped bool
}

// startPLCSim starts plcsim and waits for its READY line. At cleanup it
// stops plcsim and expects a clean exit (see stop).
func startPLCSim(t *testing.T, args ...string) *plcsim {
	t.Helper()
	p := &plcsim{cmd: exec.Command(bin, args...), extra: make(chan string, 1), eof: make(chan struct{})}
	p.cmd.Stderr = &p.stderr
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}

	ready := make(chan string, 1)
	go func() {
		defer close(p.eof)
		sc := bufio.NewScanner(stdout)
		for first := true; sc.Scan(); first = false {
			if first {
				ready <- sc.Text()
				continue
			}
			select {
			case p.extra <- sc.Text():
			default:
			}
		}
	}()
	t.Cleanup(func() { p.stop(t, stopTimeout) })

	select {
	case line := <-ready:
		url, found := strings.CutPrefix(line, "READY ")
		if !found || !strings.HasPrefix(url, "opc.tcp://") {
			t.Fatalf("first stdout line %q, want READY opc.tcp://HOST:PORT", line)
		}
		p.url = url
		return p
	case <-p.eof:
		t.Fatalf("plcsim exited without a READY line")
	case <-time.After(readyTimeout):
		t.Fatalf("no READY line within %s", readyTimeout)
	}
	return nil
}

// stop sends SIGTERM and expects plcsim to exit with status 0 within
// timeout, having written nothing to stdout but the READY line. If it does
// not stop, its goroutines are dumped into the test log. Later calls do
// nothing.
func (p *plcsim) stop(t *testing.T, timeout time.Duration) {
	t.Helper()
	if p.stopped {
		return
	}
	p.stopped = true
	defer func() {
		if t.Failed() {
			t.Logf("plcsim stderr:\n%s", p.stderr.String())
		}
	}()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.eof:
	case <-time.After(timeout):
		t.Errorf("plcsim did not stop within %s of SIGTERM; its goroutines follow", timeout)
		_ = p.cmd.Process.Signal(syscall.SIGQUIT) // the Go runtime dumps all goroutines to stderr
		select {
		case <-p.eof:
		case <-time.After(5 * time.Second):
			_ = p.cmd.Process.Kill()
		}
	}
	if err := p.cmd.Wait(); err != nil {
		t.Errorf("plcsim did not stop cleanly on SIGTERM: %v", err)
	}
	select {
	case line := <-p.extra:
		t.Errorf("plcsim wrote more than the READY line to stdout: %q", line)
	default:
	}
}

// connect opens an anonymous security None session the way tagbridge does:
// pick the endpoint from GetEndpoints and connect to the URL it advertises.
// The client is closed at cleanup.
func connect(t *testing.T, url string) *opcua.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	eps, err := opcua.GetEndpoints(ctx, url)
	if err != nil {
		t.Fatalf("GetEndpoints: %v", err)
	}
	ep, err := opcua.SelectEndpoint(eps, ua.SecurityPolicyURINone, ua.MessageSecurityModeNone)
	if err != nil {
		t.Fatalf("SelectEndpoint: %v", err)
	}
	if ep.EndpointURL != url {
		t.Fatalf("server advertises endpoint %q, want the READY URL %q", ep.EndpointURL, url)
	}
	c, err := opcua.NewClient(ep.EndpointURL,
		opcua.SecurityFromEndpoint(ep, ua.UserTokenTypeAnonymous),
		opcua.AuthAnonymous(),
		// No reconnecting behind the test's back; gopcua's reconnect loop
		// also races with Close (client.go: Dial writes c.conn unlocked).
		opcua.AutoReconnect(false),
	)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Connect(ctx); err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 10*time.Second)
		defer cancel()
		c.Close(ctx)
	})
	return c
}

func TestNamespaceAndRead(t *testing.T) {
	tags := printTags(t, "-tags", "8")
	c := connect(t, startPLCSim(t, "-tags", "8", "-start", "1000").url)
	ctx := t.Context()

	ns, err := c.NamespaceArray(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ns) <= namespaceIndex || ns[namespaceIndex] != namespaceURI {
		t.Fatalf("NamespaceArray = %q, want %q at index %d", ns, namespaceURI, namespaceIndex)
	}

	want := []struct {
		dataType uint32
		check    func(v any) error
	}{
		{id.Double, func(v any) error {
			if _, ok := v.(float64); !ok {
				return fmt.Errorf("%T, want float64", v)
			}
			return nil
		}},
		{id.Int32, func(v any) error {
			if n, ok := v.(int32); !ok || n < 1000 {
				return fmt.Errorf("%T %v, want int32 >= 1000", v, v)
			}
			return nil
		}},
		{id.Boolean, func(v any) error {
			if _, ok := v.(bool); !ok {
				return fmt.Errorf("%T, want bool", v)
			}
			return nil
		}},
		{id.String, func(v any) error {
			if s, ok := v.(string); !ok || !strings.HasPrefix(s, "v1") {
				return fmt.Errorf("%T %v, want string v1...", v, v)
			}
			return nil
		}},
	}
	req := &ua.ReadRequest{TimestampsToReturn: ua.TimestampsToReturnBoth}
	for _, tag := range tags[:4] {
		n := ua.MustParseNodeID(tag.Node)
		req.NodesToRead = append(req.NodesToRead,
			&ua.ReadValueID{NodeID: n, AttributeID: ua.AttributeIDValue},
			&ua.ReadValueID{NodeID: n, AttributeID: ua.AttributeIDDataType},
			&ua.ReadValueID{NodeID: n, AttributeID: ua.AttributeIDNodeClass},
		)
	}
	resp, err := c.Read(ctx, req)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	for i, tag := range tags[:4] {
		value, dataType, class := resp.Results[3*i], resp.Results[3*i+1], resp.Results[3*i+2]
		if value.Status != ua.StatusOK || dataType.Status != ua.StatusOK || class.Status != ua.StatusOK {
			t.Errorf("%s: status %v, %v, %v", tag.Node, value.Status, dataType.Status, class.Status)
			continue
		}
		if err := want[i].check(value.Value.Value()); err != nil {
			t.Errorf("%s: value %v", tag.Node, err)
		}
		if value.SourceTimestamp.IsZero() || value.ServerTimestamp.IsZero() {
			t.Errorf("%s: want source and server timestamps, got %v, %v", tag.Node, value.SourceTimestamp, value.ServerTimestamp)
		}
		dt, ok := dataType.Value.Value().(*ua.NodeID)
		if !ok || !dt.Equal(ua.NewNumericNodeID(0, want[i].dataType)) {
			t.Errorf("%s: DataType %v, want i=%d", tag.Node, dataType.Value.Value(), want[i].dataType)
		}
		if nc, ok := class.Value.Value().(int32); !ok || ua.NodeClass(nc) != ua.NodeClassVariable {
			t.Errorf("%s: NodeClass %v, want Variable", tag.Node, class.Value.Value())
		}
	}

	// Like gopcua's server, plcsim accepts an item for an unknown node and
	// reports BadNodeIdUnknown in its value.
	notes := make(chan *opcua.PublishNotificationData, 16)
	sub, err := c.Subscribe(ctx, &opcua.SubscriptionParameters{Interval: 20 * time.Millisecond}, notes)
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	mon, err := sub.Monitor(ctx, ua.TimestampsToReturnBoth,
		opcua.NewMonitoredItemCreateRequestWithDefaults(ua.MustParseNodeID("ns=1;s=Int32.9999"), ua.AttributeIDValue, 1),
		opcua.NewMonitoredItemCreateRequestWithDefaults(ua.MustParseNodeID("ns=7;s=Nowhere"), ua.AttributeIDValue, 2),
	)
	if err != nil {
		t.Fatalf("monitor: %v", err)
	}
	for i, r := range mon.Results {
		if r.StatusCode != ua.StatusOK {
			t.Errorf("monitor unknown node %d: %v, want Good", i+1, r.StatusCode)
		}
	}
	for seen := map[uint32]bool{}; len(seen) < 2; {
		select {
		case n := <-notes:
			dc, ok := n.Value.(*ua.DataChangeNotification)
			if !ok {
				continue
			}
			for _, item := range dc.MonitoredItems {
				seen[item.ClientHandle] = true
				if item.Value.Status != ua.StatusBadNodeIDUnknown {
					t.Errorf("unknown node %d: status %v, want BadNodeIdUnknown", item.ClientHandle, item.Value.Status)
				}
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no values for the unknown nodes")
		}
	}
	if err := sub.Cancel(ctx); err != nil {
		t.Errorf("delete subscription: %v", err)
	}

	// The variables are browsable below the namespace's Objects folder.
	br, err := c.Browse(ctx, &ua.BrowseRequest{
		NodesToBrowse: []*ua.BrowseDescription{{
			NodeID:          ua.NewNumericNodeID(namespaceIndex, id.ObjectsFolder),
			BrowseDirection: ua.BrowseDirectionForward,
			ReferenceTypeID: ua.NewNumericNodeID(0, id.HasComponent),
			ResultMask:      uint32(ua.BrowseResultMaskAll),
		}},
	})
	if err != nil {
		t.Fatalf("browse: %v", err)
	}
	if got := len(br.Results[0].References); got != len(tags) {
		t.Errorf("browse found %d variables, want %d", got, len(tags))
	}
	// ... which the server's Objects folder organizes as PLCSim.
	br, err = c.Browse(ctx, &ua.BrowseRequest{
		NodesToBrowse: []*ua.BrowseDescription{{
			NodeID:          ua.NewNumericNodeID(0, id.ObjectsFolder),
			BrowseDirection: ua.BrowseDirectionForward,
			ReferenceTypeID: ua.NewNumericNodeID(0, id.Organizes),
			ResultMask:      uint32(ua.BrowseResultMaskAll),
		}},
	})
	if err != nil {
		t.Fatalf("browse: %v", err)
	}
	found := false
	for _, r := range br.Results[0].References {
		if r.NodeID.NodeID.Equal(ua.NewNumericNodeID(namespaceIndex, id.ObjectsFolder)) && r.BrowseName.Name == "PLCSim" {
			found = true
		}
	}
	if !found {
		t.Errorf("Objects does not organize PLCSim (ns=%d;i=%d): %d references", namespaceIndex, id.ObjectsFolder, len(br.Results[0].References))
	}
}

// The client publishes every 20ms; the margin up to plcsim's change
// interval absorbs scheduling stalls of a loaded 2-CPU CI machine running
// -race binaries, as gopcua's server keeps only the latest value of an item
// per publish. Thousands of tags change less often: a change of 4,000 tags
// and its notifications take a few hundred milliseconds there.
func TestCountersHaveNoGaps(t *testing.T) {
	tests := []struct {
		name     string
		tags     int
		interval time.Duration
		window   time.Duration
	}{
		{"few tags", 40, 200 * time.Millisecond, 3 * time.Second},
		{"thousands of tags", 4000, time.Second, 6 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.tags > 1000 && testing.Short() {
				t.Skip("-short")
			}
			n := fmt.Sprint(tt.tags)
			tags := printTags(t, "-tags", n)
			sim := startPLCSim(t, "-tags", n, "-interval", tt.interval.String())
			checkCounters(t, connect(t, sim.url), tags, tt.interval, tt.window)
		})
	}
}

// checkCounters subscribes to every Int32 tag with a publishing interval well
// below plcsim's change interval (interval) and checks that each counter goes up by
// exactly one per notification.
func checkCounters(t *testing.T, c *opcua.Client, tags []tagEntry, interval, window time.Duration) {
	t.Helper()
	ctx := t.Context()
	notes := make(chan *opcua.PublishNotificationData, 1024)
	sub, err := c.Subscribe(ctx, &opcua.SubscriptionParameters{Interval: 20 * time.Millisecond}, notes)
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	t.Cleanup(func() { _ = sub.Cancel(context.WithoutCancel(ctx)) })

	var reqs []*ua.MonitoredItemCreateRequest
	names := map[uint32]string{}
	for i, tag := range tags {
		if i%4 != 1 {
			continue
		}
		h := uint32(i)
		names[h] = tag.Name
		reqs = append(reqs, opcua.NewMonitoredItemCreateRequestWithDefaults(ua.MustParseNodeID(tag.Node), ua.AttributeIDValue, h))
	}
	res, err := sub.Monitor(ctx, ua.TimestampsToReturnBoth, reqs...)
	if err != nil {
		t.Fatalf("monitor: %v", err)
	}
	for i, r := range res.Results {
		if r.StatusCode != ua.StatusOK {
			t.Fatalf("monitor %s: %v", names[reqs[i].RequestedParameters.ClientHandle], r.StatusCode)
		}
	}

	values := map[uint32][]int32{}
	end := time.NewTimer(window)
	defer end.Stop()
collect:
	for {
		select {
		case <-end.C:
			break collect
		case n := <-notes:
			if n.Error != nil {
				t.Fatalf("notification error: %v", n.Error)
			}
			dc, ok := n.Value.(*ua.DataChangeNotification)
			if !ok {
				continue // keep-alive or status change
			}
			for _, item := range dc.MonitoredItems {
				v, ok := item.Value.Value.Value().(int32)
				if !ok {
					t.Fatalf("%s: value %T, want int32", names[item.ClientHandle], item.Value.Value.Value())
				}
				values[item.ClientHandle] = append(values[item.ClientHandle], v)
			}
		}
	}

	minChanges := int(window/interval) / 2
	for h, name := range names {
		vs := values[h]
		// vs[0] is the initial value sent when the item was created. The
		// first change can repeat it, or be overwritten by the next one
		// before the first publish: creating a thousand items under -race
		// on a loaded machine can outlast a change interval, and gopcua's
		// server keeps one value per item. The counting starts after it.
		if len(vs) > 1 {
			vs = vs[1:]
		}
		if len(vs)-1 < minChanges {
			t.Errorf("%s: %d changes in %s, want at least %d: %v", name, len(vs)-1, window, minChanges, vs)
			continue
		}
		for i := 1; i < len(vs); i++ {
			if vs[i] != vs[i-1]+1 {
				t.Errorf("%s: %d followed by %d, want +1: %v", name, vs[i-1], vs[i], vs)
				break
			}
		}
	}
}

// TestResubscribe subscribes to many items and drops the subscription again,
// round after round, while every value changes every 20ms. It guards the two
// ways gopcua's server breaks under this (see notify and createSubscription):
// the server hanging, and a new subscription getting an ID still in use and
// being deleted with the old one.
func TestResubscribe(t *testing.T) {
	const tags, items, rounds = 1600, 400, 12
	entries := printTags(t, "-tags", fmt.Sprint(tags))
	url := startPLCSim(t, "-tags", fmt.Sprint(tags), "-interval", "20ms").url

	ids := map[uint32]int{}
	for round := range rounds {
		c := connect(t, url)
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		notes := make(chan *opcua.PublishNotificationData, 1024)
		sub, err := c.Subscribe(ctx, &opcua.SubscriptionParameters{Interval: 10 * time.Millisecond}, notes)
		if err != nil {
			cancel()
			t.Fatalf("round %d: subscribe: %v", round, err)
		}
		if prev, ok := ids[sub.SubscriptionID]; ok {
			t.Errorf("round %d: subscription ID %d already handed out in round %d", round, sub.SubscriptionID, prev)
		}
		ids[sub.SubscriptionID] = round
		var reqs []*ua.MonitoredItemCreateRequest
		for i, e := range entries[:items] {
			reqs = append(reqs, opcua.NewMonitoredItemCreateRequestWithDefaults(ua.MustParseNodeID(e.Node), ua.AttributeIDValue, uint32(i)))
		}
		if _, err := sub.Monitor(ctx, ua.TimestampsToReturnBoth, reqs...); err != nil {
			cancel()
			t.Fatalf("round %d: monitor: %v", round, err)
		}
		waitForData(ctx, t, round, notes)
		if round%2 == 0 {
			// Delete the subscription, then close the session.
			if err := sub.Cancel(ctx); err != nil {
				t.Errorf("round %d: delete subscription: %v", round, err)
			}
		} // else close the session only; the subscription lingers.
		c.Close(ctx)
		cancel()
	}
}

func waitForData(ctx context.Context, t *testing.T, round int, notes <-chan *opcua.PublishNotificationData) {
	t.Helper()
	for {
		select {
		case <-ctx.Done():
			t.Fatalf("round %d: no data change notification: %v", round, ctx.Err())
		case n := <-notes:
			if n.Error != nil {
				t.Fatalf("round %d: notification error: %v", round, n.Error)
			}
			if _, ok := n.Value.(*ua.DataChangeNotification); ok {
				return
			}
		}
	}
}

// TestStopWithClientConnected stops plcsim while a client still has a
// subscription: gopcua's Server.Close alone would wait 10 s for the client to
// hang up.
func TestStopWithClientConnected(t *testing.T) {
	sim := startPLCSim(t, "-tags", "4", "-interval", "100ms")
	c := connect(t, sim.url)
	notes := make(chan *opcua.PublishNotificationData, 16)
	sub, err := c.Subscribe(t.Context(), &opcua.SubscriptionParameters{Interval: 20 * time.Millisecond}, notes)
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	if _, err := sub.Monitor(t.Context(), ua.TimestampsToReturnBoth,
		opcua.NewMonitoredItemCreateRequestWithDefaults(ua.MustParseNodeID("ns=1;s=Int32.0001"), ua.AttributeIDValue, 1)); err != nil {
		t.Fatalf("monitor: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	waitForData(ctx, t, 0, notes)
	sim.stop(t, 5*time.Second)
}
