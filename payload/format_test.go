package payload

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/config"
	"github.com/tagbridge/tagbridge/internal/testkit"
)

func TestStatusPrefix(t *testing.T) {
	for _, tc := range []struct{ template, want string }{
		{"tagbridge/{agent}/{plc}/{tag}", "tagbridge/ipc1"},
		{"plant/site/{agent}/{plc}/{tag}", "plant/site/ipc1"},
		{"{agent}/{plc}/{tag}", "ipc1"},
		{"plant/{plc}/{tag}", "plant/ipc1"},
		{"plant/x-{agent}/{tag}", "plant/x-ipc1"},
		{"{plc}/{tag}", "ipc1"},
	} {
		if got := statusPrefix(tc.template, "ipc1"); got != tc.want {
			t.Errorf("statusPrefix(%q) = %q, want %q", tc.template, got, tc.want)
		}
	}
}

// A shared session's batch holds several PLC entries: one array each, in
// order of first appearance, each in the batch's order.
func TestBatchEncodeGroupsByPLC(t *testing.T) {
	cfg := testkit.Config("tcp://127.0.0.1:1", 1)
	cfg.MQTT.Batch = true
	cfg.MQTT.BatchTopic = "b/{agent}/{plc}"
	cfg.PLCs = append(cfg.PLCs, config.PLC{Name: "press2", Tags: []config.Tag{{Name: "t"}}})
	tp, err := newTopics(FromConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	f, err := newJSONFormat(FromConfig(cfg), tp, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b := collectors.Batch{
		{PLC: "press1", Tag: "temperature", Value: int32(1)},
		{PLC: "press2", Tag: "t", Value: int32(2)},
		{PLC: "press1", Tag: "pressure", Value: int32(3)},
	}
	var got []string
	f.Encode(b, true, func(topic string, payload []byte) {
		var arr []map[string]any
		if err := json.Unmarshal(payload, &arr); err != nil {
			t.Fatalf("%s: %v: %s", topic, err, payload)
		}
		var vals []string
		for _, o := range arr {
			vals = append(vals, o["tag"].(string)+"="+string(mustJSON(t, o["value"])))
		}
		got = append(got, topic+" "+strings.Join(vals, ","))
	})
	want := []string{"b/a1/press1 temperature=1,pressure=3", "b/a1/press2 t=2"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("batches:\n got %q\nwant %q", got, want)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFirstOfPLC(t *testing.T) {
	b := collectors.Batch{{PLC: "a"}, {PLC: "a"}, {PLC: "b"}, {PLC: "a"}, {PLC: "c"}, {PLC: "b"}}
	var firsts []int
	for i := range b {
		if FirstOfPLC(b, i) {
			firsts = append(firsts, i)
		}
	}
	if fmt.Sprint(firsts) != "[0 2 4]" {
		t.Fatalf("first samples of each PLC entry at %v, want [0 2 4]", firsts)
	}
}

func TestTopics(t *testing.T) {
	tp, err := newTopics(FromConfig(testkit.Config("", 0)))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ plc, tag, want string }{
		{"press1", "temperature", "tagbridge/a1/press1/temperature"},
		{"press1", "pressure", "plant/press1/p/pressure"},
		{"press1", "other", "tagbridge/a1/press1/other"},
		{"p/2", "#", "tagbridge/a1/p_2/_"},
		{"p", "bad\xff", "tagbridge/a1/p/bad\uFFFD"},
	} {
		if got := tp.topic(tt.plc, tt.tag); got != tt.want {
			t.Errorf("topic(%q, %q) = %q, want %q", tt.plc, tt.tag, got, tt.want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { tp.topic("press1", "temperature") }); n != 0 {
		t.Errorf("%v allocs for a configured tag, want 0", n)
	}
}
