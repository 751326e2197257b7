package opcua

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/scripts/opcua-peer/peerproc"
	"github.com/tagbridge/tagbridge/scripts/plcsim/simproc"
)

// Structures arrive as collectors.Structure with their DataType's field
// names and order, learned from the node-opcua peer's DataTypeDefinitions;
// the types are first seen after a reconnect (the PLC the session first
// reached had none of them, as after a program download). The second peer
// also raises alarms, which checkAlarms (events_test.go) checks on the same
// session.
func TestSessionDecodesStructuresByDefinition(t *testing.T) {
	first := peerproc.Start(t, peerproc.Options{Tags: 2, Policies: []string{"None"}, Modes: []string{"None"}})
	port := first.Port()
	tags := `tags:
  - {name: counter, node: "ns=1;s=Int32.0001"}
  - {name: recipe, node: "ns=1;s=Struct.Recipe"}
  - {name: setpoints, node: "ns=1;s=Struct.Setpoints"}
  - {name: reading, node: "ns=1;s=Struct.Reading"}
  - {name: status, node: "i=2256"}
events:
  - {name: alarms, event_type: "i=2915", where: "Severity >= 100"}
`
	r := startSession(t, plcConfig(t, first.Endpoint, tags))
	waitUntil(t, "values from the first PLC", 20*time.Second, func() bool { return r.count("counter") > 0 })
	first.Stop()
	// Small request limits, as a PLC may have: the types are learned in
	// Reads and Browses split to fit.
	peerproc.Start(t, peerproc.Options{Tags: 2, Port: atoi(t, port), Policies: []string{"None"}, Modes: []string{"None"},
		Args: []string{"-structures", "-alarms", "-alarm-cycle", "1500ms", "-max-nodes-per-read", "3", "-max-nodes-per-browse", "2"}})
	waitUntil(t, "decoded structures after the reconnect", 40*time.Second, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(withValue(r.samples["recipe"])) >= 2 && len(withValue(r.samples["reading"])) >= 2 && len(withValue(r.samples["setpoints"])) > 0 && len(r.samples["status"]) > 1
	})

	checkAlarms(t, r)

	r.mu.Lock()
	defer r.mu.Unlock()
	var withComment, withoutComment bool
	for _, s := range withValue(r.samples["recipe"]) {
		st, ok := s.Any().(collectors.Structure)
		if !ok || st.TypeID != "ns=1;i=3003" {
			t.Fatalf("recipe %#v, want a Structure of ns=1;i=3003", s.Any())
		}
		got := fieldNames(st)
		switch {
		case slices.Equal(got, []string{"RecipeId", "Mode", "Setpoints", "Comment", "Title"}):
			withComment = true
			if c, _ := st.Fields[3].Value.(string); !strings.HasPrefix(c, "batch ") {
				t.Errorf("Comment %#v", st.Fields[3].Value)
			}
		case slices.Equal(got, []string{"RecipeId", "Mode", "Setpoints", "Title"}):
			withoutComment = true
		default:
			t.Fatalf("recipe fields %v", got)
		}
		if st.Fields[1].Value != (collectors.Enum{Value: 5, Name: "Manual"}) {
			t.Errorf("Mode %#v, want Manual", st.Fields[1].Value)
		}
		if title := st.Fields[len(st.Fields)-1].Value; title != (collectors.LocalizedText{Locale: "de-DE", Text: "Brot"}) {
			t.Errorf("Title %#v, want the text with its locale", title)
		}
		sps, _ := st.Fields[2].Value.([]any)
		if len(sps) != 2 {
			t.Fatalf("Setpoints %#v", st.Fields[2].Value)
		}
		feed, _ := sps[0].(collectors.Structure)
		if !slices.Equal(fieldNames(feed), []string{"Name", "Value", "Limits"}) || feed.Fields[0].Value != "feed" || feed.Fields[1].Value != 1.5 {
			t.Errorf("Setpoints[0] %#v", sps[0])
		}
	}
	if !withComment || !withoutComment {
		t.Errorf("recipes with the optional Comment %v, without %v: want both", withComment, withoutComment)
	}
	seen := map[string]bool{}
	for _, s := range withValue(r.samples["reading"]) {
		st, _ := s.Any().(collectors.Structure)
		if len(st.Fields) != 1 {
			t.Fatalf("reading %#v, want a union of one field", s.Any())
		}
		seen[st.Fields[0].Name] = true
	}
	if !seen["Count"] || !seen["Text"] {
		t.Errorf("union fields seen %v, want Count and Text", seen)
	}
	// A namespace 0 structure gopcua has a Go type for comes out by the
	// server's definition too: ProductUri, not gopcua's ProductURI.
	status := r.samples["status"][len(r.samples["status"])-1]
	st, ok := status.Any().(collectors.Structure)
	if !ok || st.TypeID != "i=862" || !slices.Equal(fieldNames(st), []string{"StartTime", "CurrentTime", "State", "BuildInfo", "SecondsTillShutdown", "ShutdownReason"}) {
		t.Fatalf("ServerStatus %#v, want a Structure of i=862 by its definition", status.Any())
	}
	if st.Fields[2].Value != (collectors.Enum{Value: 0, Name: "Running"}) {
		t.Errorf("ServerStatus.State %#v, want Running", st.Fields[2].Value)
	}
	if bi, _ := st.Fields[3].Value.(collectors.Structure); len(bi.Fields) < 2 || bi.Fields[0].Name != "ProductUri" || bi.Fields[0].Value != "urn:tagbridge:opcua-peer" {
		t.Errorf("ServerStatus.BuildInfo %#v", st.Fields[3].Value)
	}

	setpoints := withValue(r.samples["setpoints"])[0]
	sps, _ := setpoints.Any().([]any)
	if len(sps) != 2 {
		t.Fatalf("setpoints %#v", setpoints.Any())
	}
	if st, _ := sps[1].(collectors.Structure); st.TypeID != "ns=1;i=3002" || st.Fields[0].Value != "heat" {
		t.Errorf("setpoints[1] %#v", sps[1])
	}
}

func (r *runSession) count(tag string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.samples[tag])
}

// withValue leaves out the samples without a value: the first PLC refuses
// the structure tags (BadNodeIdUnknown), and a refusal arrives as a sample
// of its status alone.
func withValue(samples []collectors.Sample) []collectors.Sample {
	var out []collectors.Sample
	for _, s := range samples {
		if s.Any() != nil {
			out = append(out, s)
		}
	}
	return out
}

func fieldNames(st collectors.Structure) []string {
	var out []string
	for _, f := range st.Fields {
		out = append(out, f.Name)
	}
	return out
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			t.Fatalf("port %q", s)
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// A structure whose type has no definition (plcsim's gopcua server has no
// DataTypeDefinition) still arrives with its type id and body, with a
// warning that names the type (once per type: warnOnce).
func TestSessionWarnsOnceForUndecodableStructure(t *testing.T) {
	plc := simproc.Start(t, "-tags", "1", "-interval", "100ms", "-struct")
	r := startSession(t, plcConfig(t, plc.Endpoint, simproc.Tags(t, 1)+"  - {name: recipe, node: \"ns=1;s=Struct.Sample\"}\n"))
	waitUntil(t, "the structure", 15*time.Second, func() bool { return r.count("recipe") >= 1 })
	r.mu.Lock()
	m, _ := r.samples["recipe"][0].Any().(map[string]any)
	r.mu.Unlock()
	if body, _ := m["body"].([]byte); m["type_id"] != "ns=1;i=5001" || len(body) == 0 {
		t.Errorf("structure %#v, want type_id and body", r.samples["recipe"][0].Any())
	}
	n := 0
	for _, line := range strings.Split(r.logs.String(), "\n") {
		if strings.Contains(line, `"level":"warn"`) && strings.Contains(line, `"encoding":"ns=1;i=5001"`) {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d warnings for the type, want 1; log:\n%s", n, r.logs)
	}
}
