package agent

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"

	"github.com/tagbridge/tagbridge/command"
	"github.com/tagbridge/tagbridge/config"
	"github.com/tagbridge/tagbridge/internal/testkit"
	"github.com/tagbridge/tagbridge/payload/sparkplugb"
	"github.com/tagbridge/tagbridge/scripts/plcsim/simproc"
)

// commandKey is the HMAC key of the test's "signed" PLC entry.
const commandKey = "e2e-command-key-0123456789"

// commandConfig has two entries on one plcsim -writable: sim, whose
// W.<Type> variables are writable, and signed, which needs an HMAC.
func commandConfig(t *testing.T, broker, endpoint, payload string) *config.Config {
	t.Helper()
	t.Setenv("E2E_COMMAND_KEY", commandKey)
	var tags strings.Builder
	for _, typ := range []string{"Boolean", "SByte", "Byte", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64", "Float", "Double", "String", "DateTime", "ByteString", "DoubleArray", "Int32Array3"} {
		fmt.Fprintf(&tags, "      - {name: %s, node: \"ns=1;s=W.%s\", writable: true}\n", strings.ToLower(typ), typ)
	}
	yaml := fmt.Sprintf(`agent: {id: e2e, spool_dir: %s}
mqtt: {url: %s, client_id: %s, payload: %s, sparkplug: {group_id: plant}}
plcs:
  - name: sim
    endpoint: %s
    publishing_interval: 50ms
    reconnect: {min: 100ms, max: 500ms}
    commands:
      methods:
        - {name: scale, object: "ns=1;s=Machine", method: "ns=1;s=Machine.Scale", args: [Double, Int32]}
    tags:
%s      - {name: limited, node: "ns=1;s=W.UInt32", writable: true, write: {max: 1000}}
      - {name: counter, node: "ns=1;s=Int32.0001"}
  - name: signed
    endpoint: %s
    publishing_interval: 50ms
    reconnect: {min: 100ms, max: 500ms}
    commands: {secret_env: E2E_COMMAND_KEY}
    tags:
      - {name: setpoint, node: "ns=1;s=W.Double", writable: true}
`, t.TempDir(), broker, testkit.ClientID("tagbridge-e2e-"), payload, endpoint, tags.String(), endpoint)
	cfg, err := config.Parse("e2e.yaml", []byte(yaml))
	if err != nil {
		t.Fatalf("%v\n%s", err, yaml)
	}
	return cfg
}

// runAgent runs an agent on cfg until the returned stop is called (or
// the test ends).
func runAgent(t *testing.T, cfg *config.Config, log zerolog.Logger) (*Agent, func()) {
	t.Helper()
	a := New(cfg, log)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("agent Run: %v", err)
				}
			case <-time.After(ShutdownTimeout + 5*time.Second):
				t.Errorf("agent did not stop")
			}
		})
	}
	t.Cleanup(stop)
	return a, stop
}

// commander publishes commands and collects their results.
type commander struct {
	t       *testing.T
	client  mqtt.Client
	results <-chan testkit.Message
	early   map[string]testkit.Message // results that came while waiting for another
}

func newCommander(t *testing.T, url string) *commander {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID(testkit.ClientID("hmi-")).SetProtocolVersion(4))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return &commander{t: t, client: c, results: testkit.SubscribeAll(t, url, "tagbridge/e2e/+/+/+/result", 1)}
}

func (c *commander) send(topic, payload string, retain bool) {
	c.t.Helper()
	if tok := c.client.Publish(topic, 1, retain, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		c.t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// result waits for the result of command id.
func (c *commander) result(id string) (topic string, raw string, res map[string]any) {
	c.t.Helper()
	decode := func(m testkit.Message) map[string]any {
		var r map[string]any
		d := json.NewDecoder(strings.NewReader(string(m.Payload)))
		d.UseNumber()
		if err := d.Decode(&r); err != nil {
			c.t.Fatalf("result on %s is not JSON: %s", m.Topic, m.Payload)
		}
		return r
	}
	if m, ok := c.early[id]; ok {
		delete(c.early, id)
		return m.Topic, string(m.Payload), decode(m)
	}
	deadline := time.After(15 * time.Second)
	for {
		select {
		case m := <-c.results:
			r := decode(m)
			if r["id"] == id {
				return m.Topic, string(m.Payload), r
			}
			if other, ok := r["id"].(string); ok {
				if c.early == nil {
					c.early = map[string]testkit.Message{}
				}
				c.early[other] = m
			}
		case <-deadline:
			c.t.Fatalf("no result for command %q within 15 s", id)
		}
	}
}

func (c *commander) exchange(topic, payload, id string) (string, map[string]any) {
	c.t.Helper()
	c.send(topic, payload, false)
	got, raw, r := c.result(id)
	if got != topic+"/result" {
		c.t.Errorf("result of %s on %s, want %s/result", id, got, topic)
	}
	return raw, r
}

func hmacOf(topic, id, value, expires string) string {
	m := hmac.New(sha256.New, []byte(commandKey))
	m.Write(command.SignedBytes(topic, id, []byte(value), expires))
	return hex.EncodeToString(m.Sum(nil))
}

// TestCommandsEndToEnd writes every built-in scalar type and arrays through
// Mosquitto to plcsim and reads them back, calls a method, and checks each
// refusal's exact result, with values flowing throughout.
func TestCommandsEndToEnd(t *testing.T) {
	broker := testkit.StartBroker(t)
	plc := simproc.Start(t, "-tags", "4", "-interval", "200ms", "-writable")
	cfg := commandConfig(t, broker.URL(), plc.Endpoint, config.PayloadJSON)
	values := testkit.Subscribe(t, broker.URL(), "tagbridge/e2e/sim/+", 1)
	hmi := newCommander(t, broker.URL())
	// Retained before the agent subscribes: delivered to it as retained.
	hmi.send("tagbridge/e2e/sim/int16/set", `{"id":"ret1","value":99}`, true)
	t.Cleanup(func() { hmi.send("tagbridge/e2e/sim/int16/set", "", true) })
	log, logs := testkit.NewLogger(t, "agent")
	a, _ := runAgent(t, cfg, log)
	waitForValue(t, values, "tagbridge/e2e/sim/counter", nil)
	if _, raw, _ := hmi.result("ret1"); raw != `{"id":"ret1","status":"TagbridgeExpired","status_code":2148139008,"error":"a retained command is never executed (it may be old)"}` {
		t.Errorf("retained command: %s", raw)
	}

	set := func(tag string) string { return "tagbridge/e2e/sim/" + tag + "/set" }
	for _, c := range []struct {
		tag, value string
		want       any // the value read back, as JSON decodes it
	}{
		{"boolean", "true", true},
		{"sbyte", "-128", json.Number("-128")},
		{"byte", "255", json.Number("255")},
		{"int16", "-32768", json.Number("-32768")},
		{"uint16", "65535", json.Number("65535")},
		{"int32", "2147483647", json.Number("2147483647")},
		{"uint32", "4294967295", json.Number("4294967295")},
		{"int64", "-9223372036854775808", json.Number("-9223372036854775808")},
		{"uint64", "18446744073709551615", json.Number("18446744073709551615")},
		{"float", "0.25", json.Number("0.25")},
		{"double", "-1.5e300", json.Number("-1.5e+300")},
		{"string", `"Grüße"`, "Grüße"},
		{"datetime", `"2026-12-03T10:00:00.5Z"`, "2026-12-03T10:00:00.5Z"},
		{"bytestring", `"AAEC/w=="`, "AAEC/w=="},
		{"doublearray", `[1.5, -2, 3]`, []any{json.Number("1.5"), json.Number("-2"), json.Number("3")}},
		{"int32array3", `[7, 8, 9]`, []any{json.Number("7"), json.Number("8"), json.Number("9")}},
	} {
		id := "w-" + c.tag
		raw, r := hmi.exchange(set(c.tag), `{"id":"`+id+`","value":`+c.value+`}`, id)
		if r["status"] != "Good" || r["read_back"] != "read" || !reflect.DeepEqual(r["value"], c.want) {
			t.Errorf("write %s = %s; want Good and %v read back", c.tag, raw, c.want)
		}
	}
	// The written value also arrives on the tag's own topic: values flow.
	waitForValue(t, values, "tagbridge/e2e/sim/int32array3", func(v any) bool { return reflect.DeepEqual(v, []any{7.0, 8.0, 9.0}) })

	raw, _ := hmi.exchange("tagbridge/e2e/sim/scale/call", `{"id":"m1","args":[2.5, 4]}`, "m1")
	if want := `{"id":"m1","status":"Good","status_code":0,"outputs":[10]}`; raw != want {
		t.Errorf("call: %s, want %s", raw, want)
	}

	now := time.Now().UTC()
	past := now.Add(-time.Second).Format(time.RFC3339Nano)
	exp := now.Add(30 * time.Second).Format(time.RFC3339)
	signedSet := "tagbridge/e2e/signed/setpoint/set"
	for _, c := range []struct {
		name, topic, payload, id, want string
	}{
		{"not allow-listed", set("counter"), `{"id":"r1","value":5}`, "r1",
			`{"id":"r1","status":"TagbridgeNotAllowed","status_code":2149515264,"error":"tag \"counter\" of plc \"sim\" is not writable"}`},
		{"out of range (limit)", set("limited"), `{"id":"r2","value":1001}`, "r2",
			`{"id":"r2","status":"TagbridgeOutOfRange","status_code":2151415808,"error":"1001 is above max 1000"}`},
		{"out of range (type)", set("byte"), `{"id":"r3","value":256}`, "r3",
			`{"id":"r3","status":"TagbridgeOutOfRange","status_code":2151415808,"error":"256 does not fit Byte (0..255)"}`},
		{"wrong type", set("int32"), `{"id":"r4","value":"12"}`, "r4",
			`{"id":"r4","status":"TagbridgeWrongType","status_code":2155085824,"error":"a string for a Int32 node"}`},
		{"array shape", set("int32array3"), `{"id":"r5","value":[1,2]}`, "r5",
			`{"id":"r5","status":"TagbridgeWrongType","status_code":2155085824,"error":"an array of 2 elements; the node holds 3"}`},
		{"expired", set("int32"), `{"id":"r6","value":1,"expires":"` + past + `"}`, "r6",
			`{"id":"r6","status":"TagbridgeExpired","status_code":2148139008,"error":"expired at ` + past + `, received `},
		{"duplicate id", set("int32"), `{"id":"w-int32","value":1}`, "w-int32",
			`{"id":"w-int32","status":"TagbridgeDuplicate","status_code":2158952448,"error":"id \"w-int32\" was taken already"}`},
		{"no hmac", signedSet, `{"id":"h1","value":1}`, "h1",
			`{"id":"h1","status":"TagbridgeBadSignature","status_code":2153185280,"error":"hmac required"}`},
		{"bad hmac", signedSet, `{"id":"h2","value":2,"expires":"` + exp + `","hmac":"` + hmacOf(signedSet, "h2", "3", exp) + `"}`, "h2",
			`{"id":"h2","status":"TagbridgeBadSignature","status_code":2153185280,"error":"hmac does not match"}`},
		{"good hmac", signedSet, `{"id":"h3","value":3,"expires":"` + exp + `","hmac":"` + hmacOf(signedSet, "h3", "3", exp) + `"}`, "h3",
			`{"id":"h3","status":"Good","status_code":0,"value":3,"read_back":"read"}`},
	} {
		raw, _ := hmi.exchange(c.topic, c.payload, c.id)
		if c.name == "expired" && strings.HasPrefix(raw, c.want) || raw == c.want {
			continue
		}
		t.Errorf("%s: %s\nwant %s", c.name, raw, c.want)
	}

	recent, counts := a.Commands()
	if counts["Good"] < 18 || counts["TagbridgeBadSignature"] != 2 || len(recent) != 20 {
		t.Errorf("counts %v, %d recent", counts, len(recent))
	}
	if strings.Contains(logs.String(), commandKey) {
		t.Error("the command key is in the log")
	}
	if n := strings.Count(logs.String(), `"message":"command"`); n != 28 {
		t.Errorf("%d audit lines, want one per command", n)
	}
}

// TestCommandQueuedDuringOutageExpires stops the agent, lets a command
// wait at the broker past its expiry, and starts the agent again: the
// command is refused, the PLC not written.
func TestCommandQueuedDuringOutageExpires(t *testing.T) {
	broker := testkit.StartBroker(t)
	plc := simproc.Start(t, "-tags", "4", "-interval", "200ms", "-writable")
	cfg := commandConfig(t, broker.URL(), plc.Endpoint, config.PayloadJSON)
	hmi := newCommander(t, broker.URL())
	values := testkit.Subscribe(t, broker.URL(), "tagbridge/e2e/sim/+", 1)
	log, _ := testkit.NewLogger(t, "agent")
	_, stopFirst := runAgent(t, cfg, log)
	waitForValue(t, values, "tagbridge/e2e/sim/counter", nil)
	raw, _ := hmi.exchange("tagbridge/e2e/sim/int16/set", `{"id":"before","value":11}`, "before")
	if !strings.Contains(raw, `"value":11`) {
		t.Fatalf("write before the outage: %s", raw)
	}
	stopFirst()

	expires := time.Now().Add(time.Second).UTC().Format(time.RFC3339Nano)
	hmi.send("tagbridge/e2e/sim/int16/set", `{"id":"queued","value":22,"expires":"`+expires+`"}`, false)
	time.Sleep(1500 * time.Millisecond) // the outage outlasts the command's lifetime

	log2, _ := testkit.NewLogger(t, "agent after the outage")
	runAgent(t, cfg, log2)
	_, raw, _ = hmi.result("queued")
	if want := `{"id":"queued","status":"TagbridgeExpired","status_code":2148139008,"error":"expired at ` + expires; !strings.HasPrefix(raw, want) {
		t.Errorf("queued command: %s\nwant %s...", raw, want)
	}
	// Until the new session is up, commands are answered at once as PLC down.
	for len(values) > 0 {
		<-values
	}
	waitForValue(t, values, "tagbridge/e2e/sim/counter", nil)
	raw, _ = hmi.exchange("tagbridge/e2e/sim/int16/set", `{"id":"after","value":33}`, "after")
	if !strings.Contains(raw, `"value":33`) {
		t.Errorf("write after the outage: %s", raw)
	}
}

// waitForValue waits for a value message on topic whose value passes ok
// (nil: any).
func waitForValue(t *testing.T, values <-chan testkit.Message, topic string, ok func(any) bool) {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		select {
		case m := <-values:
			if m.Topic != topic {
				continue
			}
			var v struct{ Value any }
			if json.Unmarshal(m.Payload, &v) == nil && (ok == nil || ok(v.Value)) {
				return
			}
		case <-deadline:
			t.Fatalf("no value on %s within 15 s", topic)
		}
	}
}

// TestWriteLatency measures the round trip of 1,000 writes (command
// published to result received) through Mosquitto to plcsim with read-back.
// Not part of the suite: TAGBRIDGE_WRITE_LATENCY=1 runs it.
func TestWriteLatency(t *testing.T) {
	if os.Getenv("TAGBRIDGE_WRITE_LATENCY") == "" {
		t.Skip("set TAGBRIDGE_WRITE_LATENCY=1 to measure")
	}
	var opts []testkit.BrokerOption
	if os.Getenv("TAGBRIDGE_WRITE_LATENCY") == "nodelay" {
		opts = append(opts, testkit.WithConfig("set_tcp_nodelay true"))
	}
	broker := testkit.StartBroker(t, opts...)
	plc := simproc.Start(t, "-tags", "4", "-interval", "1s", "-writable")
	cfg := commandConfig(t, broker.URL(), plc.Endpoint, config.PayloadJSON)
	hmi := newCommander(t, broker.URL())
	values := testkit.Subscribe(t, broker.URL(), "tagbridge/e2e/sim/counter", 1)
	runAgent(t, cfg, zerolog.Nop())
	waitForValue(t, values, "tagbridge/e2e/sim/counter", nil)
	hmi.exchange("tagbridge/e2e/sim/double/set", `{"id":"warm","value":0}`, "warm")
	const n = 1000
	lat := make([]time.Duration, n)
	for i := range n {
		id := fmt.Sprintf("lat-%d", i)
		start := time.Now()
		raw, _ := hmi.exchange("tagbridge/e2e/sim/double/set", fmt.Sprintf(`{"id":%q,"value":%d}`, id, i), id)
		lat[i] = time.Since(start)
		if !strings.Contains(raw, `"Good"`) {
			t.Fatalf("write %d: %s", i, raw)
		}
	}
	slices.Sort(lat)
	p := func(q float64) time.Duration { return lat[int(math.Ceil(q*n))-1] }
	t.Logf("LATENCY writes=%d median=%v p99=%v min=%v max=%v", n, p(0.5), p(0.99), lat[0], lat[n-1])
}

// TestSparkplugDCMDEndToEnd writes through Sparkplug DCMDs, by metric name
// and by the alias of the DBIRTH: the new values come as DDATA, every
// result also as JSON, and a stale DCMD is refused.
func TestSparkplugDCMDEndToEnd(t *testing.T) {
	broker := testkit.StartBroker(t)
	plc := simproc.Start(t, "-tags", "4", "-interval", "500ms", "-writable")
	cfg := commandConfig(t, broker.URL(), plc.Endpoint, config.PayloadSparkplugB)
	sp := testkit.SubscribeAll(t, broker.URL(), "spBv1.0/plant/+/e2e/sim", 1)
	hmi := newCommander(t, broker.URL())
	log, _ := testkit.NewLogger(t, "agent")
	runAgent(t, cfg, log)

	aliases := map[string]uint64{}
	deadline := time.After(15 * time.Second)
	for len(aliases) == 0 {
		select {
		case m := <-sp:
			if strings.Contains(m.Topic, "/DBIRTH/") {
				for _, mt := range testkit.DecodeSparkplug(t, m.Payload).Metrics {
					aliases[mt.GetName()] = mt.GetAlias()
				}
			}
		case <-deadline:
			t.Fatal("no DBIRTH of device sim within 15 s")
		}
	}
	dcmd := func(ts time.Time, seq uint64, metrics ...*sparkplugb.Payload_Metric) {
		b, err := proto.Marshal(&sparkplugb.Payload{Timestamp: proto.Uint64(uint64(ts.UnixMilli())), Seq: proto.Uint64(seq), Metrics: metrics})
		if err != nil {
			t.Fatal(err)
		}
		hmi.send("spBv1.0/plant/DCMD/e2e/sim", string(b), false)
	}
	now := time.Now()
	dcmd(now, 0,
		&sparkplugb.Payload_Metric{Name: proto.String("int32"), Datatype: proto.Uint32(3), Value: &sparkplugb.Payload_Metric_IntValue{IntValue: uint32(0xFFFFFFF9)}}, // -7
		&sparkplugb.Payload_Metric{Alias: proto.Uint64(aliases["double"]), Datatype: proto.Uint32(10), Value: &sparkplugb.Payload_Metric_DoubleValue{DoubleValue: 2.5}},
	)
	ms := fmt.Sprint(now.UnixMilli())
	for tag, want := range map[string]string{
		"int32":  `{"id":"dcmd/` + ms + `/0/int32","status":"Good","status_code":0,"value":-7,"read_back":"read"}`,
		"double": `{"id":"dcmd/` + ms + `/0/double","status":"Good","status_code":0,"value":2.5,"read_back":"read"}`,
	} {
		if topic, raw, _ := hmi.result("dcmd/" + ms + "/0/" + tag); raw != want || topic != "tagbridge/e2e/sim/"+tag+"/set/result" {
			t.Errorf("%s: %s on %s, want %s", tag, raw, topic, want)
		}
	}
	// The written values come back as DDATA, by alias.
	seen := map[string]bool{}
	deadline = time.After(15 * time.Second)
	for !seen["int32"] || !seen["double"] {
		select {
		case m := <-sp:
			if !strings.Contains(m.Topic, "/DDATA/") {
				continue
			}
			for _, mt := range testkit.DecodeSparkplug(t, m.Payload).Metrics {
				switch mt.GetAlias() {
				case aliases["int32"]:
					seen["int32"] = seen["int32"] || int32(mt.GetIntValue()) == -7
				case aliases["double"]:
					seen["double"] = seen["double"] || mt.GetDoubleValue() == 2.5
				}
			}
		case <-deadline:
			t.Fatalf("written values not in DDATA within 15 s: %v", seen)
		}
	}
	// Sent 6 s ago: stale under the default 5 s expiry.
	old := now.Add(-6 * time.Second)
	dcmd(old, 1, &sparkplugb.Payload_Metric{Name: proto.String("int32"), Datatype: proto.Uint32(3), Value: &sparkplugb.Payload_Metric_IntValue{IntValue: 1}})
	id := "dcmd/" + fmt.Sprint(old.UnixMilli()) + "/1/int32"
	if _, raw, _ := hmi.result(id); !strings.HasPrefix(raw, `{"id":"`+id+`","status":"TagbridgeExpired"`) {
		t.Errorf("stale DCMD: %s", raw)
	}

	// NCMD: a metric named device/tag writes it, Reboot is refused on the
	// node's result topic, and Rebirth still brings new births.
	nodeResults := testkit.SubscribeAll(t, broker.URL(), command.NodeCommandResults("e2e"), 1)
	for len(sp) > 0 {
		<-sp
	}
	now = time.Now()
	b, err := proto.Marshal(&sparkplugb.Payload{Timestamp: proto.Uint64(uint64(now.UnixMilli())), Seq: proto.Uint64(2), Metrics: []*sparkplugb.Payload_Metric{
		{Name: proto.String("sim/int16"), Datatype: proto.Uint32(2), Value: &sparkplugb.Payload_Metric_IntValue{IntValue: 77}},
		{Name: proto.String("Node Control/Reboot"), Datatype: proto.Uint32(11), Value: &sparkplugb.Payload_Metric_BooleanValue{BooleanValue: true}},
		{Name: proto.String("Node Control/Rebirth"), Datatype: proto.Uint32(11), Value: &sparkplugb.Payload_Metric_BooleanValue{BooleanValue: true}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	hmi.send("spBv1.0/plant/NCMD/e2e", string(b), false)
	ms = fmt.Sprint(now.UnixMilli())
	if _, raw, _ := hmi.result("ncmd/" + ms + "/2/sim/int16"); !strings.Contains(raw, `"status":"Good","status_code":0,"value":77`) {
		t.Errorf("NCMD write: %s", raw)
	}
	select {
	case m := <-nodeResults:
		if want := `{"id":"ncmd/` + ms + `/2/Node Control/Reboot","status":"TagbridgeNotAllowed"`; !strings.HasPrefix(string(m.Payload), want) {
			t.Errorf("Reboot: %s, want %s...", m.Payload, want)
		}
	case <-time.After(15 * time.Second):
		t.Error("no result of Node Control/Reboot within 15 s")
	}
	deadline = time.After(15 * time.Second)
	for reborn := false; !reborn; {
		select {
		case m := <-sp:
			reborn = strings.Contains(m.Topic, "/DBIRTH/")
		case <-deadline:
			t.Fatal("no DBIRTH after the NCMD's Rebirth within 15 s")
		}
	}
}

// TestCommandsFollowReload starts with nothing writable, then reloads a
// configuration with writable tags: the agent takes commands at once, on
// the same broker connection, and answers at QoS 1.
func TestCommandsFollowReload(t *testing.T) {
	broker := testkit.StartBroker(t)
	plc := simproc.Start(t, "-tags", "4", "-interval", "200ms", "-writable")
	writable := commandConfig(t, broker.URL(), plc.Endpoint, config.PayloadJSON)
	readOnly := *writable
	readOnly.PLCs = slices.Clone(writable.PLCs)
	for i := range readOnly.PLCs {
		p := &readOnly.PLCs[i]
		p.Commands.Methods = nil
		p.Tags = slices.Clone(p.Tags)
		for j := range p.Tags {
			p.Tags[j].Writable = false
		}
	}
	values := testkit.Subscribe(t, broker.URL(), "tagbridge/e2e/sim/+", 1)
	hmi := newCommander(t, broker.URL())
	log, logs := testkit.NewLogger(t, "agent")
	a, _ := runAgent(t, &readOnly, log)
	waitForValue(t, values, "tagbridge/e2e/sim/counter", nil)
	if err := a.Reload(writable); err != nil {
		t.Fatalf("reload: %v", err)
	}
	logs.WaitFor(t, 10*time.Second, "subscribed to the commands the new configuration allows")
	if n := strings.Count(logs.String(), `"message":"connected to broker"`); n != 1 {
		t.Errorf("%d broker connections; the reload should keep the one", n)
	}
	hmi.send("tagbridge/e2e/sim/int32/set", `{"id":"after-reload","value":42}`, false)
	deadline := time.After(15 * time.Second)
	for {
		select {
		case m := <-hmi.results:
			if !strings.Contains(string(m.Payload), `"after-reload"`) {
				continue
			}
			if !strings.Contains(string(m.Payload), `"status":"Good"`) || m.QoS != 1 {
				t.Errorf("result at QoS %d: %s; want Good at QoS 1", m.QoS, m.Payload)
			}
			return
		case <-deadline:
			t.Fatal("no result within 15 s of the reload")
		}
	}
}
