package typedef_test

import (
	"bytes"
	"context"
	"slices"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"
	"github.com/rs/zerolog"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/collectors/opcua/secpolicy"
	"github.com/tagbridge/tagbridge/collectors/opcua/typedef"
	"github.com/tagbridge/tagbridge/collectors/opcua/uaclient"
	"github.com/tagbridge/tagbridge/collectors/opcua/uasc"
	"github.com/tagbridge/tagbridge/collectors/opcua/uatcp"
	"github.com/tagbridge/tagbridge/scripts/opcua-peer/peerproc"
	"github.com/tagbridge/tagbridge/scripts/open62541/o62proc"
)

// keptBody keeps an extension object's body, as the agent's rawBody does,
// for the peer's encoding ids (gopcua drops bodies of unknown types).
type keptBody []byte

func (k *keptBody) Decode(b []byte) (int, error) { *k = bytes.Clone(b); return len(b), nil }
func (k *keptBody) Encode() ([]byte, error)      { return *k, nil }

// The peer's structures.xml types, learned from its DataTypeDefinitions
// through the encoding ids in its values, decode by name and order: a
// structure with optional fields nesting an array of structures, an
// enumeration and a LocalizedText; a union; an array of structures.
func TestLearnFromNodeOPCUA(t *testing.T) {
	p := peerproc.Start(t, peerproc.Options{Tags: 4, Interval: 200 * time.Millisecond, Policies: []string{"None"}, Modes: []string{"None"}, Args: []string{"-structures"}})
	for _, id := range []uint32{5002, 5003, 5004} {
		ua.RegisterExtensionObject(ua.NewNumericNodeID(1, id), new(keptBody))
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	c := connect(ctx, t, p.Endpoint)

	res, err := c.Send(ctx, &ua.ReadRequest{TimestampsToReturn: ua.TimestampsToReturnNeither, NodesToRead: []*ua.ReadValueID{
		{NodeID: ua.MustParseNodeID("ns=1;s=Struct.Recipe"), AttributeID: ua.AttributeIDValue, DataEncoding: &ua.QualifiedName{}},
		{NodeID: ua.MustParseNodeID("ns=1;s=Struct.Reading"), AttributeID: ua.AttributeIDValue, DataEncoding: &ua.QualifiedName{}},
		{NodeID: ua.MustParseNodeID("ns=1;s=Struct.Setpoints"), AttributeID: ua.AttributeIDValue, DataEncoding: &ua.QualifiedName{}},
	}})
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	values := res.(*ua.ReadResponse).Results
	recipe := values[0].Value.Value().(*ua.ExtensionObject)
	reading := values[1].Value.Value().(*ua.ExtensionObject)
	setpoints := values[2].Value.Value().([]*ua.ExtensionObject)

	r := typedef.NewRegistry(nil)
	if err := r.Learn(ctx, c, []*ua.NodeID{recipe.TypeID.NodeID, reading.TypeID.NodeID, setpoints[0].TypeID.NodeID}); err != nil {
		t.Fatalf("Learn: %v", err)
	}

	st, err := r.Decode(recipe.TypeID.NodeID, *recipe.Value.(*keptBody))
	if err != nil {
		t.Fatalf("decode Recipe: %v", err)
	}
	if st.TypeID != "ns=1;i=3003" {
		t.Errorf("Recipe TypeID %q, want the DataType ns=1;i=3003", st.TypeID)
	}
	id, _ := st.Fields[0].Value.(uint32)
	want := []string{"RecipeId", "Mode", "Setpoints", "Title"}
	if id%2 == 0 {
		want = []string{"RecipeId", "Mode", "Setpoints", "Comment", "Title"}
	}
	if got := names(st); !slices.Equal(got, want) {
		t.Fatalf("Recipe %d fields %v, want %v", id, got, want)
	}
	if st.Fields[1].Value != (collectors.Enum{Value: 5, Name: "Manual"}) {
		t.Errorf("Mode %#v, want Manual", st.Fields[1].Value)
	}
	sps, _ := st.Fields[2].Value.([]any)
	if len(sps) != 2 {
		t.Fatalf("Setpoints %#v, want 2", st.Fields[2].Value)
	}
	heat := sps[1].(collectors.Structure)
	if got := names(heat); !slices.Equal(got, []string{"Name", "Value", "Limits"}) || heat.Fields[0].Value != "heat" || heat.Fields[1].Value != 180.25 {
		t.Errorf("Setpoints[1] %#v", heat)
	}
	if lim, _ := heat.Fields[2].Value.([]any); len(lim) != 2 || lim[1] != 360.5 {
		t.Errorf("Setpoints[1].Limits %#v, want [0 360.5]", heat.Fields[2].Value)
	}
	if lt, _ := st.Fields[len(st.Fields)-1].Value.(*ua.LocalizedText); lt == nil || lt.Locale != "de-DE" || lt.Text != "Brot" {
		t.Errorf("Title %#v, want de-DE Brot", st.Fields[len(st.Fields)-1].Value)
	}

	un, err := r.Decode(reading.TypeID.NodeID, *reading.Value.(*keptBody))
	if err != nil {
		t.Fatalf("decode Reading: %v", err)
	}
	if len(un.Fields) != 1 || (un.Fields[0].Name != "Count" && un.Fields[0].Name != "Text") {
		t.Errorf("Reading %#v, want one field Count or Text", un)
	}
	for i, e := range setpoints {
		sp, err := r.Decode(e.TypeID.NodeID, *e.Value.(*keptBody))
		if err != nil || sp.TypeID != "ns=1;i=3002" || len(sp.Fields) != 3 {
			t.Errorf("Setpoints[%d]: %#v, %v", i, sp, err)
		}
	}
	if mode := r.Type(ua.NewNumericNodeID(1, 3001)); mode == nil || mode.Kind != typedef.KindEnum || mode.Names[5] != "Manual" {
		t.Errorf("Mode type %#v", mode)
	}
	t.Run("LegacyDictionary", func(t *testing.T) { learnFromDictionary(ctx, t, c) })
}

func names(st collectors.Structure) []string {
	var out []string
	for _, f := range st.Fields {
		out = append(out, f.Name)
	}
	return out
}

// connect opens an unsecured session, closed at the test's end.
func connect(ctx context.Context, t *testing.T, endpoint string) *uaclient.Client {
	t.Helper()
	c, err := uaclient.Connect(ctx, uaclient.Config{
		Channel: uasc.Config{
			Endpoint: endpoint, Policy: secpolicy.None, Mode: ua.MessageSecurityModeNone,
			Lifetime: 10 * time.Minute, RequestTimeout: 10 * time.Second, Limits: uatcp.DefaultLimits(),
			Log: zerolog.New(t.Output()).Level(zerolog.WarnLevel),
		},
		ApplicationURI: "urn:tagbridge:typedef-test", ApplicationName: "typedef test", ProductURI: "urn:tagbridge",
		SessionName: t.Name(), SessionTimeout: time.Minute,
	})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { c.Close(context.WithoutCancel(ctx)) })
	return c
}

// open62541 serves the DataTypeDefinitions of namespace 0: ServerStatus,
// which gopcua decodes into its Go type, encoded again and decoded by the
// server's definition has the specification's field names, a nested
// BuildInfo, the ServerState enumeration by name and a LocalizedText.
func TestLearnFromOpen62541(t *testing.T) {
	srv := o62proc.Start(t, o62proc.Options{Tags: 1, Policies: []string{"None"}})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	st := learnServerStatus(ctx, t, connect(ctx, t, srv.Endpoint))
	bi, _ := st.Fields[3].Value.(collectors.Structure)
	if want := []string{"ProductUri", "ManufacturerName", "ProductName", "SoftwareVersion", "BuildNumber", "BuildDate"}; !slices.Equal(names(bi), want) {
		t.Errorf("BuildInfo %v, want %v", names(bi), want)
	}
	if _, ok := st.Fields[5].Value.(*ua.LocalizedText); !ok {
		t.Errorf("ShutdownReason %#v, want a LocalizedText", st.Fields[5].Value)
	}
}

// learnServerStatus reads the server's ServerStatus (i=2256), learns its
// type from c and decodes it by what was learned: the specification's
// field names under the DataType i=862, and the ServerState enumeration by
// name.
func learnServerStatus(ctx context.Context, t *testing.T, c typedef.Client) collectors.Structure {
	t.Helper()
	res, err := c.Send(ctx, &ua.ReadRequest{TimestampsToReturn: ua.TimestampsToReturnNeither, NodesToRead: []*ua.ReadValueID{
		{NodeID: ua.NewNumericNodeID(0, 2256), AttributeID: ua.AttributeIDValue, DataEncoding: &ua.QualifiedName{}},
	}})
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	eo := res.(*ua.ReadResponse).Results[0].Value.Value().(*ua.ExtensionObject)
	body, err := ua.Encode(eo.Value)
	if err != nil {
		t.Fatal(err)
	}
	r := typedef.NewRegistry(nil)
	if err := r.Learn(ctx, c, []*ua.NodeID{eo.TypeID.NodeID}); err != nil {
		t.Fatalf("Learn: %v", err)
	}
	st, err := r.Decode(eo.TypeID.NodeID, body)
	if err != nil {
		t.Fatalf("decode ServerStatus: %v", err)
	}
	if want := []string{"StartTime", "CurrentTime", "State", "BuildInfo", "SecondsTillShutdown", "ShutdownReason"}; st.TypeID != "i=862" || !slices.Equal(names(st), want) {
		t.Fatalf("ServerStatus %s %v, want i=862 %v", st.TypeID, names(st), want)
	}
	if st.Fields[2].Value != (collectors.Enum{Value: 0, Name: "Running"}) {
		t.Errorf("State %#v, want Running", st.Fields[2].Value)
	}
	return st
}
