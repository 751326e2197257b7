package publish_test

// Sparkplug B through the whole agent: a simulated PLC, the agent as
// tagbridge run starts it, and a real Mosquitto. Payloads are decoded with
// the generated code of publish/sparkplugb (tagbridge encodes by hand).

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"

	"github.com/tagbridge/tagbridge/agent"
	"github.com/tagbridge/tagbridge/config"
	"github.com/tagbridge/tagbridge/internal/testkit"
	"github.com/tagbridge/tagbridge/payload/sparkplugb"
	"github.com/tagbridge/tagbridge/scripts/plcsim/simproc"
)

// A PLC's tags are born with their datatypes, die with the PLC and are born
// again when it is back; the node dies on a clean stop.
func TestSparkplugAgentPLCLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	broker := testkit.StartBroker(t)
	plc := simproc.Start(t, "-tags", "5", "-interval", "100ms")
	yml := fmt.Sprintf(`agent: {id: edge1, spool_dir: %s}
mqtt:
  url: %s
  qos: 1
  payload: sparkplug_b
  sparkplug: {group_id: line1}
plcs:
  - name: press1
    endpoint: %s
    publishing_interval: 50ms
    reconnect: {min: 200ms, max: 1s}
    %s`, t.TempDir(), broker.URL(), plc.Endpoint,
		strings.ReplaceAll(strings.TrimSpace(simproc.Tags(t, 5)), "\n", "\n    "))
	file := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(file, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatalf("config:\n%v\n%s", err, yml)
	}
	msgs := testkit.SubscribeAll(t, broker.URL(), "spBv1.0/line1/#", 1)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- agent.Run(ctx, cfg, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel))
	}()

	var seq uint64
	born := false
	// next returns the next message's type and payload, checking seq and
	// that no DDATA comes while the device is not born.
	next := func() (string, *sparkplugb.Payload) {
		t.Helper()
		select {
		case m := <-msgs:
			kind, _, _ := strings.Cut(strings.TrimPrefix(m.Topic, "spBv1.0/line1/"), "/")
			var p sparkplugb.Payload
			if err := proto.Unmarshal(m.Payload, &p); err != nil {
				t.Fatalf("%s: %v", m.Topic, err)
			}
			// Sparkplug 3.0 whatever mqtt.qos says: QoS 0, the will at 1.
			if want := byte(0); kind != "NDEATH" && m.QoS != want {
				t.Errorf("%s at QoS %d, want %d", m.Topic, m.QoS, want)
			}
			switch kind {
			case "NBIRTH":
				seq, born = 0, false
				if bd := bdSeqOf(&p); bd != 0 {
					t.Errorf("NBIRTH bdSeq %d, want 0 (a new spool directory)", bd)
				}
			case "NDEATH":
				return kind, &p
			case "DBIRTH":
				born = true
			case "DDEATH":
				born = false
			case "DDATA":
				if !born {
					t.Errorf("DDATA while press1 is not born")
				}
			}
			if p.GetSeq() != seq {
				t.Errorf("%s seq %d, want %d", m.Topic, p.GetSeq(), seq)
			}
			seq = (seq + 1) % 256
			return kind, &p
		case <-time.After(30 * time.Second):
			t.Fatal("no Sparkplug message within 30 s")
			return "", nil
		}
	}
	// until reads messages up to one of type kind.
	until := func(kind string) *sparkplugb.Payload {
		t.Helper()
		for {
			if k, p := next(); k == kind {
				return p
			}
		}
	}

	if k, _ := next(); k != "NBIRTH" {
		t.Fatalf("first message %s, want NBIRTH", k)
	}
	checkBirth := func(p *sparkplugb.Payload) {
		t.Helper()
		want := map[string]sparkplugb.DataType{
			"double_0000": sparkplugb.DataType_Double, "int32_0001": sparkplugb.DataType_Int32,
			"boolean_0002": sparkplugb.DataType_Boolean, "string_0003": sparkplugb.DataType_String,
			"double_0004": sparkplugb.DataType_Double,
		}
		if len(p.Metrics) != len(want) {
			t.Fatalf("DBIRTH has %d metrics, want %d: %v", len(p.Metrics), len(want), p)
		}
		for i, m := range p.Metrics {
			if dt, ok := want[m.GetName()]; !ok || m.GetDatatype() != uint32(dt) || m.GetAlias() != uint64(i+1) || m.GetIsNull() {
				t.Errorf("DBIRTH metric %d: %v", i, m)
			}
		}
	}
	checkBirth(until("DBIRTH"))
	if d := until("DDATA"); len(d.Metrics) == 0 || d.Metrics[0].Name != nil || d.Metrics[0].GetTimestamp() == 0 {
		t.Errorf("DDATA: %v", d)
	}

	plc.Kill()
	until("DDEATH")
	plc.Restart("-tags", "5", "-interval", "100ms")
	checkBirth(until("DBIRTH"))
	until("DDATA")

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("agent did not stop within 15 s")
	}
	until("NDEATH")
}

func bdSeqOf(p *sparkplugb.Payload) uint64 {
	for _, m := range p.Metrics {
		if m.GetName() == "bdSeq" {
			return m.GetLongValue()
		}
	}
	return 1 << 63
}
