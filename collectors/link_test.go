package collectors

import (
	"encoding/json"
	"testing"
	"time"
)

// testLink stands for a protocol's link, as opcua.Link does.
type testLink struct {
	Policy  string `json:"policy,omitempty"`
	Channel uint32 `json:"channel_id"`
}

// A Link's fields go after endpoint, as PLCState's own did, and read
// back they make the RawLink the protocol decodes its link from.
func TestPLCStateLinkJSON(t *testing.T) {
	since := time.Date(2026, 12, 3, 18, 0, 0, 0, time.UTC)
	st := PLCState{PLC: "press1", State: StateStreaming, Since: since, Endpoint: "opc.tcp://plc:4840",
		Link: testLink{Policy: "Basic256Sha256", Channel: 7}, Reason: `"reconnects":1,`, TagsOK: 3}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"plc":"press1","state":"streaming","reason":"\"reconnects\":1,","since":"2026-12-03T18:00:00Z","endpoint":"opc.tcp://plc:4840",` +
		`"policy":"Basic256Sha256","channel_id":7,` +
		`"reconnects":0,"recoveries":0,"tags_ok":3,"tags_failed":0,"values":0,"values_per_second":0,"clock_offset_seconds":0,"connect_failures":0}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}

	var back PLCState
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	raw, ok := back.Link.(RawLink)
	if !ok {
		t.Fatalf("link read back as %T", back.Link)
	}
	var link testLink
	if err := json.Unmarshal(raw, &link); err != nil || link != st.Link {
		t.Errorf("link %s decodes to %+v (%v), want %+v", raw, link, err, st.Link)
	}
	back.Link = st.Link
	if again, _ := json.Marshal(back); string(again) != want {
		t.Errorf("again %s", again)
	}

	st.Link = nil
	b, _ = json.Marshal(st)
	if err := json.Unmarshal(b, &back); err != nil || back.Link != nil {
		t.Errorf("no link: read back %v (%v) from %s", back.Link, err, b)
	}
	st.Link = 7
	if _, err := json.Marshal(st); err == nil {
		t.Error("a link that is no JSON object was written")
	}
}
