package publish

// The Sparkplug B encoder (sparkplug.go) is hand-written with protowire;
// these tests decode with the generated code of publish/sparkplugb, built by
// protoc from our .proto, an independent decoder of the same wire format.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"google.golang.org/protobuf/proto"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/config"
	"github.com/tagbridge/tagbridge/internal/testkit"
	"github.com/tagbridge/tagbridge/payload"
	"github.com/tagbridge/tagbridge/payload/sparkplugb"
	"github.com/tagbridge/tagbridge/scripts/faultproxy"
)

// spMsg is a decoded Sparkplug message.
type spMsg struct {
	kind, device string
	p            *sparkplugb.Payload
	qos          byte
}

// spStream reads Sparkplug messages from a subscription and checks the
// rules every message must keep, with the generated decoder and with
// protoc (a third-party decoder: Debian's protobuf-compiler): seq 0 on
// NBIRTH and one more (mod 256) on each later message, none on NDEATH;
// every message at QoS 0 but the will (QoS 1); a device's DDATA only after
// its DBIRTH since the latest NBIRTH, and not after its DDEATH; every birth
// metric with an alias and a known datatype, every DDATA metric by alias.
type spStream struct {
	t     *testing.T
	tahu  *tahuDecoder // started with the first message
	msgs  <-chan testkit.Message
	seq   uint64
	birth bool            // an NBIRTH was seen
	born  map[string]bool // devices born since the latest NBIRTH
}

// Sparkplug 3.0's metric names, and the file in agent.spool_dir that keeps
// the bdSeq across restarts.
const (
	spRebirth = "Node Control/Rebirth"
	spBDSeq   = "bdSeq"
	bdSeqFile = "sparkplug_bdseq"
)

func (s *spStream) next() spMsg {
	s.t.Helper()
	m := receive(s.t, s.msgs, 1)[0]
	for strings.Contains(m.Topic, "/NCMD/") || strings.Contains(m.Topic, "/DCMD/") || strings.HasPrefix(m.Topic, "spBv1.0/STATE/") { // the test's own
		m = receive(s.t, s.msgs, 1)[0]
	}
	levels := strings.Split(m.Topic, "/")
	if len(levels) < 4 || levels[0] != "spBv1.0" || levels[1] != "plant1" || levels[3] != "a1" || m.Retained {
		s.t.Fatalf("unexpected message %s (retained %v)", m.Topic, m.Retained)
	}
	msg := spMsg{kind: levels[2], p: testkit.DecodeSparkplug(s.t, m.Payload), qos: m.QoS}
	if len(levels) > 4 {
		msg.device = levels[4]
	}
	s.checkProtoc(msg, m.Payload)
	s.checkTahu(msg, m)
	switch msg.kind {
	case "NDEATH":
		if msg.p.Seq != nil {
			s.t.Errorf("NDEATH with seq %d", msg.p.GetSeq())
		}
		return msg
	case "NBIRTH":
		if msg.p.Seq == nil || msg.p.GetSeq() != 0 {
			s.t.Errorf("NBIRTH seq %v, want 0", msg.p.Seq)
		}
		s.birth, s.seq, s.born = true, 1, map[string]bool{}
	}
	if m.QoS != 0 {
		s.t.Errorf("%s at QoS %d, want 0", m.Topic, m.QoS)
	}
	if msg.kind == "NBIRTH" {
		return msg
	}
	if !s.birth {
		s.t.Fatalf("%s before any NBIRTH", m.Topic)
	}
	if msg.p.Seq == nil || msg.p.GetSeq() != s.seq {
		s.t.Errorf("%s seq %d (set: %v), want %d", m.Topic, msg.p.GetSeq(), msg.p.Seq != nil, s.seq)
	}
	s.seq = (s.seq + 1) % 256
	switch msg.kind {
	case "DBIRTH":
		s.born[msg.device] = true
	case "DDEATH":
		s.born[msg.device] = false
	case "DDATA":
		if !s.born[msg.device] {
			s.t.Errorf("DDATA of %s without its DBIRTH on this connection", msg.device)
		}
	}
	return msg
}

// checkTahu has Tahu's sparkplug-payload decode the message, as a host
// would, and compares its values with the generated decoder's: a DDATA
// whose device was not born since the NBIRTH, or a metric Tahu reads as
// null while it has a value, fails.
func (s *spStream) checkTahu(msg spMsg, m testkit.Message) {
	s.t.Helper()
	if s.tahu == nil {
		s.tahu = startTahu(s.t)
	}
	tp := s.tahu.decode(m.Topic, m.Payload)
	if len(tp.Metrics) != len(msg.p.Metrics) {
		s.t.Errorf("%s: Tahu reads %d metrics, the generated decoder %d", m.Topic, len(tp.Metrics), len(msg.p.Metrics))
		return
	}
	if want := strconv.FormatUint(msg.p.GetSeq(), 10); msg.p.Seq != nil && (tp.Seq == nil || *tp.Seq != want) {
		s.t.Errorf("%s: Tahu reads seq %v, want %s", m.Topic, tp.Seq, want)
	}
	for i, tm := range tp.Metrics {
		gm := msg.p.Metrics[i]
		if strings.HasSuffix(tm.Type, "Array") {
			continue // sparkplug-payload 1.0.3 decodes no arrays
		}
		if isNull := string(tm.Value) == "null" || tm.Value == nil; isNull != gm.GetIsNull() {
			s.t.Errorf("%s metric %d (alias %d): Tahu reads %s (%s), the generated decoder %v", m.Topic, i, gm.GetAlias(), tm.Value, tm.Type, gm)
		}
		if tm.IsHistorical != gm.GetIsHistorical() {
			s.t.Errorf("%s metric %d: Tahu reads is_historical %v", m.Topic, i, tm.IsHistorical)
		}
	}
}

// checkProtoc decodes payload with protoc against our .proto and checks
// what it reads against the generated decoder and the rules for births
// and data.
func (s *spStream) checkProtoc(msg spMsg, payload []byte) {
	s.t.Helper()
	text := protocDecode(s.t, payload)
	var seq string
	var metrics []string // each metric's text
	depth := 0
	for line := range strings.Lines(text) {
		trimmed := strings.TrimSpace(line)
		switch {
		case depth == 0 && strings.HasPrefix(trimmed, "seq: "):
			seq = strings.TrimPrefix(trimmed, "seq: ")
		case depth == 0 && trimmed == "metrics {":
			metrics = append(metrics, "")
		case depth == 1 && len(metrics) > 0:
			metrics[len(metrics)-1] += trimmed + "\n"
		}
		depth += strings.Count(trimmed, "{") - strings.Count(trimmed, "}")
	}
	if want := strconv.FormatUint(msg.p.GetSeq(), 10); msg.p.Seq != nil && seq != want || msg.p.Seq == nil && seq != "" {
		s.t.Errorf("%s: protoc reads seq %q, the generated decoder %v", msg.kind, seq, msg.p.Seq)
	}
	if len(metrics) != len(msg.p.Metrics) {
		s.t.Errorf("%s: protoc reads %d metrics, the generated decoder %d", msg.kind, len(metrics), len(msg.p.Metrics))
	}
	for i, m := range metrics {
		hasAlias := strings.Contains(m, "alias: ")
		dt := ""
		for l := range strings.Lines(m) {
			if v, ok := strings.CutPrefix(strings.TrimSpace(l), "datatype: "); ok {
				dt = v
			}
		}
		switch msg.kind {
		case "NBIRTH", "DBIRTH":
			if !hasAlias || dt == "" || dt == "0" {
				s.t.Errorf("%s metric %d as protoc reads it: alias %v, datatype %q:\n%s", msg.kind, i, hasAlias, dt, m)
			}
		case "DDATA":
			if !hasAlias || dt != "" || strings.Contains(m, "name: ") {
				s.t.Errorf("DDATA metric %d as protoc reads it: not by alias alone:\n%s", i, m)
			}
		}
	}
}

// protocDecode is protoc --decode of a Payload, with our .proto.
func protocDecode(t *testing.T, payload []byte) string {
	t.Helper()
	protoc, err := exec.LookPath("protoc")
	if err != nil {
		t.Fatalf("protoc, the third-party decoder of these tests, is missing (apt-get install -y protobuf-compiler): %v", err)
	}
	cmd := exec.Command(protoc, "--proto_path=../payload/sparkplugb", "--decode=tagbridge.sparkplugb.Payload", "sparkplug_b.proto")
	cmd.Stdin = bytes.NewReader(payload)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("protoc --decode: %v: %s", err, stderr.String())
	}
	return string(out)
}

// expect reads the next message and checks its type and device.
func (s *spStream) expect(kind, device string) spMsg {
	s.t.Helper()
	m := s.next()
	if m.kind != kind || m.device != device {
		s.t.Fatalf("got %s %s, want %s %s", m.kind, m.device, kind, device)
	}
	return m
}

func readBDSeqFile(t *testing.T, dir string) uint64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, bdSeqFile))
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// publishRaw publishes one message from a client of the test's own.
func publishRaw(t *testing.T, url, topic string, payload []byte) {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID(testkit.ClientID("sp-test-")))
	if tok := c.Connect(); !tok.WaitTimeout(wait) || tok.Error() != nil {
		t.Fatalf("test client connect: %v", tok.Error())
	}
	defer c.Disconnect(100)
	if tok := c.Publish(topic, 1, false, payload); !tok.WaitTimeout(wait) || tok.Error() != nil {
		t.Fatalf("test client publish: %v", tok.Error())
	}
}

// One session through a real Mosquitto, the publisher behind a proxy that
// can cut its connection: births and deaths of the node and of a PLC, seq
// across a wrap, the will with the bdSeq of its connection, historical
// values after an outage, a rebirth on request, the NDEATH on a clean stop.
func TestSparkplugSession(t *testing.T) {
	for _, qos := range []int{0, 1} {
		t.Run("qos"+strconv.Itoa(qos), func(t *testing.T) { testSparkplugSession(t, qos) })
	}
}

func testSparkplugSession(t *testing.T, qos int) {
	b := testkit.StartBroker(t)
	proxy := faultproxy.Start(t, strings.TrimPrefix(b.URL(), "tcp://"))
	cfg := testkit.SparkplugConfig("tcp://" + proxy.Addr())
	cfg.MQTT.QoS = qos
	cfg.Agent.SpoolDir = t.TempDir()
	log, sink := testkit.NewLogger(t, "publisher")
	p := newPublisher(t, cfg, log)
	s := &spStream{t: t, msgs: testkit.SubscribeAll(t, b.URL(), "spBv1.0/#", 1)}
	in := make(chan collectors.Event, 16)
	done := start(t, p, in)
	if opts := p.client.(mqtt.Client).OptionsReader(); !opts.CleanSession() {
		t.Errorf("mqtt.qos %d: CONNECT without Clean Session", qos)
	}

	nb := s.expect("NBIRTH", "").p
	bdSeq0 := testkit.MetricNamed(t, nb, "bdSeq").GetLongValue()
	if bdSeq0 != 0 {
		t.Errorf("first NBIRTH bdSeq %d, want 0", bdSeq0)
	}
	if rb := testkit.MetricNamed(t, nb, spRebirth); rb.GetDatatype() != uint32(sparkplugb.DataType_Boolean) || rb.GetBooleanValue() {
		t.Errorf("NBIRTH %s: %v", spRebirth, rb)
	}
	if bdSeq0 != readBDSeqFile(t, cfg.Agent.SpoolDir) {
		t.Errorf("NBIRTH bdSeq %d, file %d", bdSeq0, readBDSeqFile(t, cfg.Agent.SpoolDir))
	}

	// Streaming, datatypes unknown: the DBIRTH waits for the first values.
	in <- collectors.Event{State: &collectors.PLCState{PLC: "press1", State: collectors.StateStreaming, Since: time.Now()}}
	in <- collectors.Event{Batch: collectors.Batch{testkit.Sample("temperature", 21.5, collectors.TypeDouble), testkit.Sample("pressure", int64(-3), collectors.TypeInt32), testkit.Sample("temperature", 22.5, collectors.TypeDouble)}}
	db := s.expect("DBIRTH", "press1").p
	if m := testkit.MetricNamed(t, db, "temperature"); m.GetAlias() != 1 || m.GetDatatype() != uint32(sparkplugb.DataType_Double) || m.GetDoubleValue() != 22.5 {
		t.Errorf("DBIRTH temperature: %v, want the latest, 22.5", m)
	}
	if m := testkit.MetricNamed(t, db, "pressure"); m.GetAlias() != 2 || m.GetDatatype() != uint32(sparkplugb.DataType_Int32) || int32(m.GetIntValue()) != -3 {
		t.Errorf("DBIRTH pressure: %v", m)
	}
	// The DDATA leaves out what the DBIRTH holds: the earlier temperature only.
	dd := s.expect("DDATA", "press1").p
	if len(dd.Metrics) != 1 || dd.Metrics[0].GetAlias() != 1 || dd.Metrics[0].GetDoubleValue() != 21.5 || dd.Metrics[0].GetIsHistorical() {
		t.Errorf("DDATA after the DBIRTH: %v, want temperature 21.5 alone", dd)
	}

	// PLC lost and back: DDEATH, then DBIRTH at once (datatypes known).
	in <- collectors.Event{State: &collectors.PLCState{PLC: "press1", State: collectors.StateDisconnected, Reason: "connection refused", Since: time.Now()}}
	s.expect("DDEATH", "press1")
	in <- collectors.Event{State: &collectors.PLCState{PLC: "press1", State: collectors.StateStreaming, Since: time.Now()}}
	s.expect("DBIRTH", "press1")

	// seq wraps from 255 to 0 (spStream checks). One at a time: QoS 0
	// may lose what floods a subscriber.
	for i := range 300 {
		in <- collectors.Event{Batch: collectors.Batch{testkit.Sample("temperature", float64(i), collectors.TypeDouble)}}
		if m := s.expect("DDATA", "press1").p.Metrics[0]; m.GetDoubleValue() != float64(i) {
			t.Fatalf("DDATA %d: %v", i, m)
		}
	}

	// The link is cut: the broker sends the will, an NDEATH with this
	// connection's bdSeq. Values taken meanwhile come back historical,
	// after an NBIRTH with a later bdSeq and the device's DBIRTH.
	proxy.Refuse(true)
	proxy.Cut()
	if nd := s.expect("NDEATH", ""); testkit.MetricNamed(t, nd.p, "bdSeq").GetLongValue() != bdSeq0 || nd.qos != 1 {
		t.Errorf("will NDEATH at QoS %d: %v, want bdSeq %d at QoS 1", nd.qos, nd.p, bdSeq0)
	}
	sink.WaitFor(t, wait, "connection to broker lost")
	in <- collectors.Event{Batch: collectors.Batch{testkit.Sample("temperature", 98.0, collectors.TypeDouble)}}
	in <- collectors.Event{Batch: collectors.Batch{testkit.Sample("pressure", int64(6), collectors.TypeInt32)}}
	in <- collectors.Event{Batch: collectors.Batch{testkit.Sample("temperature", 99.0, collectors.TypeDouble)}}
	in <- collectors.Event{Batch: collectors.Batch{testkit.Sample("pressure", int64(7), collectors.TypeInt32)}}
	sink.WaitFor(t, wait, `"attempt":1`) // a refused reconnect uses no bdSeq up
	proxy.Refuse(false)
	nb = s.expect("NBIRTH", "").p
	bdSeq1 := testkit.MetricNamed(t, nb, "bdSeq").GetLongValue()
	if bdSeq1 != bdSeq0+1 || bdSeq1 != readBDSeqFile(t, cfg.Agent.SpoolDir) {
		t.Errorf("NBIRTH after the outage: bdSeq %d, before %d, file %d", bdSeq1, bdSeq0, readBDSeqFile(t, cfg.Agent.SpoolDir))
	}
	db = s.expect("DBIRTH", "press1").p
	if v := testkit.MetricNamed(t, db, "temperature").GetDoubleValue(); v != 99 {
		t.Errorf("DBIRTH after the outage: temperature %v, want the latest, 99", v)
	}
	// The spooled values, historical, but for the latest, which the DBIRTH holds.
	for _, want := range []uint64{1, 2} {
		m := s.expect("DDATA", "press1").p.Metrics[0]
		if m.GetAlias() != want || !m.GetIsHistorical() {
			t.Errorf("DDATA spooled in the outage: %v, want alias %d historical", m, want)
		}
	}

	// A host asks for a rebirth.
	ncmd, err := proto.Marshal(&sparkplugb.Payload{
		Timestamp: proto.Uint64(uint64(time.Now().UnixMilli())),
		Metrics: []*sparkplugb.Payload_Metric{{
			Name:     proto.String(spRebirth),
			Datatype: proto.Uint32(uint32(sparkplugb.DataType_Boolean)),
			Value:    &sparkplugb.Payload_Metric_BooleanValue{BooleanValue: true},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	publishRaw(t, b.URL(), "spBv1.0/plant1/NCMD/a1", ncmd)
	if got := testkit.MetricNamed(t, s.expect("NBIRTH", "").p, "bdSeq").GetLongValue(); got != bdSeq1 {
		t.Errorf("rebirth NBIRTH bdSeq %d, want %d (same connection)", got, bdSeq1)
	}
	s.expect("DBIRTH", "press1")
	in <- collectors.Event{Batch: collectors.Batch{testkit.Sample("pressure", int64(8), collectors.TypeInt32)}}
	if m := s.expect("DDATA", "press1").p.Metrics[0]; m.GetIsHistorical() || int32(m.GetIntValue()) != 8 {
		t.Errorf("DDATA after the rebirth: %v", m)
	}

	// A clean stop says NDEATH itself.
	close(in)
	if err := result(t, done); err != nil {
		t.Fatal(err)
	}
	nd := s.expect("NDEATH", "").p
	if testkit.MetricNamed(t, nd, "bdSeq").GetLongValue() != bdSeq1 {
		t.Errorf("NDEATH on stop: %v, want bdSeq %d", nd, bdSeq1)
	}
}

// Across a broker restart: NBIRTH again with a later bdSeq, the DBIRTH of
// the streaming device before any of its DDATA, seq from 0 again, and the
// values spooled while the broker was down marked historical.
func TestSparkplugBrokerRestart(t *testing.T) {
	b := testkit.StartBroker(t)
	// The proxy holds the publisher back until the subscriber is back:
	// NBIRTH goes out at QoS 0, which Mosquitto does not queue.
	proxy := faultproxy.Start(t, strings.TrimPrefix(b.URL(), "tcp://"))
	cfg := testkit.SparkplugConfig("tcp://" + proxy.Addr())
	log, sink := testkit.NewLogger(t, "publisher")
	p := newPublisher(t, cfg, log)
	s := &spStream{t: t, msgs: testkit.SubscribeAll(t, b.URL(), "spBv1.0/#", 1)}
	in := make(chan collectors.Event, 16)
	done := start(t, p, in)

	bdSeq0 := testkit.MetricNamed(t, s.expect("NBIRTH", "").p, "bdSeq").GetLongValue()
	in <- collectors.Event{State: &collectors.PLCState{PLC: "press1", State: collectors.StateStreaming, Since: time.Now()}}
	in <- collectors.Event{Batch: collectors.Batch{testkit.Sample("temperature", 1.0, collectors.TypeDouble)}}
	s.expect("DBIRTH", "press1") // holds 1: no DDATA repeats it
	in <- collectors.Event{Batch: collectors.Batch{testkit.Sample("temperature", 2.0, collectors.TypeDouble)}}
	if m := s.expect("DDATA", "press1").p.Metrics[0]; m.GetDoubleValue() != 2 {
		t.Errorf("DDATA: %v, want 2", m)
	}

	proxy.Refuse(true)
	b.Stop()
	sink.WaitFor(t, wait, "connection to broker lost")
	for i := range 3 {
		in <- collectors.Event{Batch: collectors.Batch{testkit.Sample("temperature", float64(10+i), collectors.TypeDouble)}}
	}
	b.Restart()
	// A probe through the broker shows the subscriber connected again.
	publishRaw(t, b.URL(), "spBv1.0/plant1/PROBE/a1", nil)
	for {
		m := receive(t, s.msgs, 1)[0]
		if strings.Contains(m.Topic, "/PROBE/") {
			break
		}
		// Only the will (as Mosquitto shut down) and messages Mosquitto
		// delivers again after its restart can come now.
		if strings.Contains(m.Topic, "/NBIRTH/") {
			t.Fatalf("NBIRTH before the publisher could reconnect")
		}
	}
	proxy.Refuse(false)

	nb := s.expect("NBIRTH", "").p
	if got := testkit.MetricNamed(t, nb, "bdSeq").GetLongValue(); got != bdSeq0+1 {
		t.Errorf("NBIRTH after the restart: bdSeq %d, want %d", got, bdSeq0+1)
	}
	if v := testkit.MetricNamed(t, s.expect("DBIRTH", "press1").p, "temperature").GetDoubleValue(); v != 12 {
		t.Errorf("DBIRTH after the restart: temperature %v, want the latest, 12", v)
	}
	for i := range 2 { // 12 is in the DBIRTH
		m := s.expect("DDATA", "press1").p.Metrics[0]
		if m.GetDoubleValue() != float64(10+i) || !m.GetIsHistorical() {
			t.Errorf("spooled DDATA %d: %v, want %d, historical", i, m, 10+i)
		}
	}
	in <- collectors.Event{Batch: collectors.Batch{testkit.Sample("temperature", 20.0, collectors.TypeDouble)}}
	if m := s.expect("DDATA", "press1").p.Metrics[0]; m.GetIsHistorical() || m.GetDoubleValue() != 20 {
		t.Errorf("DDATA after the restart: %v", m)
	}
	close(in) // and wait, so nothing writes to the spool directory as it is removed
	if err := result(t, done); err != nil {
		t.Fatal(err)
	}
}

// A crash with a full spool: the broker is away, the spool fills and drops
// its oldest values, the publisher stops hard. The next one, on the same
// spool, sends NBIRTH (the next bdSeq), then the device's DBIRTH with the
// datatypes announced before the crash, then the kept values, historical
// and in order, then new values after the intake's own DBIRTH.
func TestSparkplugCrashFullSpool(t *testing.T) {
	b := testkit.StartBroker(t)
	proxy := faultproxy.Start(t, strings.TrimPrefix(b.URL(), "tcp://"))
	cfg := testkit.SparkplugConfig("tcp://" + proxy.Addr())
	cfg.Agent.SpoolDir = t.TempDir()
	cfg.MQTT.Spool.MaxBytes = 64 << 10
	log, sink := testkit.NewLogger(t, "publisher")
	p := newPublisher(t, cfg, log)
	s := &spStream{t: t, msgs: testkit.SubscribeAll(t, b.URL(), "spBv1.0/#", 1)}
	in := make(chan collectors.Event)
	ctx, crash := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, in) }()

	if bd := testkit.MetricNamed(t, s.expect("NBIRTH", "").p, spBDSeq).GetLongValue(); bd != 0 {
		t.Errorf("NBIRTH bdSeq %d, want 0", bd)
	}
	in <- collectors.Event{State: &collectors.PLCState{PLC: "press1", State: collectors.StateStreaming, Since: time.Now()}}
	in <- collectors.Event{Batch: collectors.Batch{testkit.Sample("temperature", -1.0, collectors.TypeDouble), testkit.Sample("pressure", int64(5), collectors.TypeInt32)}}
	s.expect("DBIRTH", "press1") // and no DDATA: it would repeat the DBIRTH's values

	proxy.Refuse(true)
	proxy.Cut()
	s.expect("NDEATH", "")
	sink.WaitFor(t, wait, "connection to broker lost")
	const n = 3000
	for i := range n {
		in <- collectors.Event{Batch: collectors.Batch{testkit.Sample("temperature", float64(i), collectors.TypeDouble)}}
	}
	sink.WaitFor(t, wait, "spool full")
	crash()
	if err := result(t, done); err != nil {
		t.Fatal(err)
	}
	kept := p.Stats().Spooled
	if kept == 0 || kept >= n {
		t.Fatalf("spooled %d of %d: want a full spool that dropped some", kept, n)
	}

	proxy.Refuse(false)
	cfg.MQTT.ClientID += "-restarted"
	p2 := newPublisher(t, cfg, log)
	in2 := make(chan collectors.Event)
	done2 := start(t, p2, in2)
	if bd := testkit.MetricNamed(t, s.expect("NBIRTH", "").p, spBDSeq).GetLongValue(); bd != 1 {
		t.Errorf("NBIRTH after the crash: bdSeq %d, want 1", bd)
	}
	db := s.expect("DBIRTH", "press1").p
	for name, dt := range map[string]sparkplugb.DataType{"temperature": sparkplugb.DataType_Double, "pressure": sparkplugb.DataType_Int32} {
		if m := testkit.MetricNamed(t, db, name); m.GetDatatype() != uint32(dt) || !m.GetIsNull() {
			t.Errorf("DBIRTH before the spooled DDATA: %s %v, want %s, null (no value yet in this run)", name, m, dt)
		}
	}
	var got []float64
	for uint64(len(got)) < kept {
		for _, m := range s.expect("DDATA", "press1").p.Metrics {
			if !m.GetIsHistorical() || m.GetAlias() != 1 {
				t.Fatalf("spooled DDATA metric %v, want temperature, historical", m)
			}
			got = append(got, m.GetDoubleValue())
		}
	}
	for i, v := range got {
		if want := float64(n - int(kept) + i); v != want {
			t.Fatalf("spooled value %d: %v, want %v (the newest %d kept, in order)", i, v, want, kept)
		}
	}
	// The new run's first values: a DBIRTH with the latest as it is sent
	// (42 or 43), then the other in DDATA.
	in2 <- collectors.Event{Batch: collectors.Batch{testkit.Sample("temperature", 42.0, collectors.TypeDouble)}}
	in2 <- collectors.Event{Batch: collectors.Batch{testkit.Sample("temperature", 43.0, collectors.TypeDouble)}}
	born := testkit.MetricNamed(t, s.expect("DBIRTH", "press1").p, "temperature").GetDoubleValue()
	if born != 42 && born != 43 {
		t.Errorf("DBIRTH of the new run: temperature %v, want 42 or 43", born)
	}
	if m := s.expect("DDATA", "press1").p.Metrics[0]; m.GetIsHistorical() || m.GetDoubleValue() != 85-born {
		t.Errorf("DDATA of the new run: %v, want %v (the DBIRTH has %v)", m, 85-born, born)
	}
	close(in2)
	if err := result(t, done2); err != nil {
		t.Fatal(err)
	}
}

// QoS 0 with the spool: values written to a connection whose bytes never
// reach the broker (the link freezes, then breaks) stay in the spool until
// the broker confirms them, and go out again after the next NBIRTH and
// DBIRTH: none is lost.
func TestSparkplugFenceKeepsValues(t *testing.T) {
	b := testkit.StartBroker(t)
	proxy := faultproxy.Start(t, strings.TrimPrefix(b.URL(), "tcp://"))
	cfg := testkit.SparkplugConfig("tcp://" + proxy.Addr())
	log, sink := testkit.NewLogger(t, "publisher")
	p := newPublisher(t, cfg, log)
	s := &spStream{t: t, msgs: testkit.SubscribeAll(t, b.URL(), "spBv1.0/#", 1)}
	in := make(chan collectors.Event)
	done := start(t, p, in)

	s.expect("NBIRTH", "")
	in <- collectors.Event{State: &collectors.PLCState{PLC: "press1", State: collectors.StateStreaming, Since: time.Now()}}
	in <- collectors.Event{Batch: collectors.Batch{testkit.Sample("temperature", 0.0, collectors.TypeDouble)}}
	s.expect("DBIRTH", "press1") // the DDATA is left out: it repeats the DBIRTH
	waitStats(t, p, "the first value confirmed", wait, func(st Stats) bool { return st.Spooled == 0 })

	proxy.Freeze()
	const n = 20
	for i := 1; i <= n; i++ {
		in <- collectors.Event{Batch: collectors.Batch{testkit.Sample("temperature", float64(i), collectors.TypeDouble)}}
	}
	// Handed to the connection (QoS 0 is done there), not confirmed.
	st := waitStats(t, p, "the frozen values written", wait, func(st Stats) bool { return st.Published >= n+1 && st.InFlight == 0 })
	if st.Spooled != n {
		t.Fatalf("Stats = %+v: want the %d values written to the frozen link still spooled", st, n)
	}
	proxy.Cut()
	proxy.Thaw()
	s.expect("NDEATH", "")
	sink.WaitFor(t, wait, "connection to broker lost")
	s.expect("NBIRTH", "")
	if v := testkit.MetricNamed(t, s.expect("DBIRTH", "press1").p, "temperature").GetDoubleValue(); v != n {
		t.Errorf("DBIRTH after the break: temperature %v, want the latest, %d", v, n)
	}
	for i := 1; i < n; { // n is in the DBIRTH
		for _, m := range s.expect("DDATA", "press1").p.Metrics {
			if m.GetDoubleValue() != float64(i) {
				t.Fatalf("after the break: value %v, want %d (in order, none lost)", m.GetDoubleValue(), i)
			}
			i++
		}
	}
	close(in)
	if err := result(t, done); err != nil {
		t.Fatal(err)
	}
	if st := p.Stats(); st.Spooled != 0 || st.Resent != n {
		t.Errorf("Stats = %+v: want none spooled after a clean stop, %d resent", st, n)
	}
}

// With sparkplug.primary_host_id: no NBIRTH before the host's STATE says
// online; values taken meanwhile come after the births, historical; the
// host going offline ends the session (the broker sends the NDEATH will),
// and the node is born again, with the next bdSeq, once it is back.
func TestSparkplugPrimaryHost(t *testing.T) {
	b := testkit.StartBroker(t)
	cfg := testkit.SparkplugConfig(b.URL())
	cfg.MQTT.Sparkplug.PrimaryHostID = "scada1"
	log, sink := testkit.NewLogger(t, "publisher")
	p := newPublisher(t, cfg, log)
	msgs := testkit.SubscribeAll(t, b.URL(), "spBv1.0/#", 1)
	s := &spStream{t: t, msgs: msgs}
	state := func(online bool) {
		t.Helper()
		c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(b.URL()).SetClientID(testkit.ClientID("sp-host-")))
		if tok := c.Connect(); !tok.WaitTimeout(wait) || tok.Error() != nil {
			t.Fatalf("host connect: %v", tok.Error())
		}
		defer c.Disconnect(100)
		payload := fmt.Sprintf(`{"online":%v,"timestamp":%d}`, online, time.Now().UnixMilli())
		if tok := c.Publish("spBv1.0/STATE/scada1", 1, true, payload); !tok.WaitTimeout(wait) || tok.Error() != nil {
			t.Fatalf("host STATE: %v", tok.Error())
		}
	}
	in := make(chan collectors.Event)
	done := start(t, p, in)

	sink.WaitFor(t, wait, "connected to broker")
	in <- collectors.Event{State: &collectors.PLCState{PLC: "press1", State: collectors.StateStreaming, Since: time.Now()}}
	in <- collectors.Event{Batch: collectors.Batch{testkit.Sample("temperature", 0.5, collectors.TypeDouble)}}
	in <- collectors.Event{Batch: collectors.Batch{testkit.Sample("temperature", 1.0, collectors.TypeDouble)}}
	waitStats(t, p, "the values spooled", wait, func(st Stats) bool { return st.Spooled >= 3 }) // DBIRTH, DDATA, DDATA
	// A probe through the broker: whatever the node sent before it came first.
	publishRaw(t, b.URL(), "spBv1.0/plant1/PROBE/a1", nil)
	for m := receive(t, msgs, 1)[0]; !strings.Contains(m.Topic, "/PROBE/"); m = receive(t, msgs, 1)[0] {
		t.Fatalf("%s before the primary host is online", m.Topic)
	}
	if st := p.Stats(); st.Connected {
		t.Errorf("Stats = %+v: connected (ready to send) while the primary host is offline", st)
	}

	state(true)
	if bd := testkit.MetricNamed(t, s.expect("NBIRTH", "").p, spBDSeq).GetLongValue(); bd != 0 {
		t.Errorf("NBIRTH bdSeq %d, want 0", bd)
	}
	s.expect("DBIRTH", "press1") // with 1.0, the latest
	if m := s.expect("DDATA", "press1").p.Metrics[0]; m.GetDoubleValue() != 0.5 || !m.GetIsHistorical() {
		t.Errorf("DDATA taken while the host was offline: %v, want 0.5, historical", m)
	}
	in <- collectors.Event{Batch: collectors.Batch{testkit.Sample("temperature", 2.0, collectors.TypeDouble)}}
	if m := s.expect("DDATA", "press1").p.Metrics[0]; m.GetDoubleValue() != 2 || m.GetIsHistorical() {
		t.Errorf("DDATA with the host online: %v", m)
	}

	state(false)
	if nd := s.expect("NDEATH", ""); testkit.MetricNamed(t, nd.p, spBDSeq).GetLongValue() != 0 || nd.qos != 1 {
		t.Errorf("NDEATH when the host went offline: %v at QoS %d, want the will (bdSeq 0, QoS 1)", nd.p, nd.qos)
	}
	in <- collectors.Event{Batch: collectors.Batch{testkit.Sample("temperature", 2.5, collectors.TypeDouble)}}
	in <- collectors.Event{Batch: collectors.Batch{testkit.Sample("temperature", 3.0, collectors.TypeDouble)}}
	state(true)
	if bd := testkit.MetricNamed(t, s.expect("NBIRTH", "").p, spBDSeq).GetLongValue(); bd != 1 {
		t.Errorf("NBIRTH after the host came back: bdSeq %d, want 1", bd)
	}
	s.expect("DBIRTH", "press1") // with 3.0, the latest
	if m := s.expect("DDATA", "press1").p.Metrics[0]; m.GetDoubleValue() != 2.5 {
		t.Errorf("DDATA after the host came back: %v, want 2.5", m)
	}
	close(in)
	if err := result(t, done); err != nil {
		t.Fatal(err)
	}
	s.expect("NDEATH", "")
}

func TestSparkplugConfig(t *testing.T) {
	cfg := testkit.SparkplugConfig("tcp://127.0.0.1:1")
	cfg.Agent.SpoolDir = t.TempDir()
	cfg.MQTT.Retain = true
	if _, err := New(cfg, newNopLog(), nil); err == nil || !strings.Contains(err.Error(), "mqtt.retain") {
		t.Errorf("retain with sparkplug_b: %v", err)
	}
	cfg = testkit.SparkplugConfig("tcp://127.0.0.1:1")
	cfg.Agent.SpoolDir = t.TempDir()
	cfg.PLCs = append(cfg.PLCs, config.PLC{Name: "press/1"}, config.PLC{Name: "press+1"})
	if _, err := New(cfg, newNopLog(), nil); err == nil || !strings.Contains(err.Error(), `plc "press+1": sparkplug device id "press_1"`) {
		t.Errorf("two PLCs with one device id: %v", err)
	}
	// Ids and metric names that differ only in case, refused by validate.
	cfg = testkit.SparkplugConfig("tcp://127.0.0.1:1")
	cfg.Agent.SpoolDir = t.TempDir()
	cfg.PLCs = append(cfg.PLCs, config.PLC{Name: "Press1"})
	if err := CheckTopics(cfg); err == nil || err.Error() != `mqtt: plc "Press1": sparkplug device id "Press1" differs only in case from that of plc "press1"; rename one` {
		t.Errorf("device ids differing in case: %v", err)
	}
	cfg = testkit.SparkplugConfig("tcp://127.0.0.1:1")
	cfg.Agent.SpoolDir = t.TempDir()
	cfg.PLCs[0].Tags = append(cfg.PLCs[0].Tags, config.Tag{Name: "Temperature"})
	if err := CheckTopics(cfg); err == nil || err.Error() != `mqtt: plc "press1": tag "Temperature": sparkplug metric name differs only in case from tag "temperature"; rename one` {
		t.Errorf("metric names differing in case: %v", err)
	}
	// bdSeq goes on from the latest session's, one more per session the
	// broker accepted, and wraps after 255; a refused CONNECT uses none.
	cfg = testkit.SparkplugConfig("tcp://127.0.0.1:1")
	cfg.Agent.SpoolDir = t.TempDir()
	if err := os.WriteFile(filepath.Join(cfg.Agent.SpoolDir, bdSeqFile), []byte("253\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	willSeq := func(w payload.Message) uint64 {
		t.Helper()
		return testkit.MetricNamed(t, testkit.DecodeSparkplug(t, w.Payload), spBDSeq).GetLongValue()
	}
	for _, want := range []uint64{254, 254} { // two starts, no session
		f, err := newFormat(payload.FromConfig(cfg), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Open(); err != nil {
			t.Fatal(err)
		}
		w, _ := f.Will()
		if got := willSeq(w); got != want {
			t.Errorf("will bdSeq %d, want %d", got, want)
		}
	}
	f, err := newFormat(payload.FromConfig(cfg), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Open(); err != nil {
		t.Fatal(err)
	}
	if got := willSeq(f.Reconnecting()); got != 254 {
		t.Errorf("after a refused CONNECT: bdSeq %d, want 254", got)
	}
	if err := f.SessionStarted(); err != nil {
		t.Fatal(err)
	}
	if got := readBDSeqFile(t, cfg.Agent.SpoolDir); got != 254 {
		t.Errorf("file after the session: %d, want 254", got)
	}
	if got := willSeq(f.Reconnecting()); got != 255 {
		t.Errorf("after a session: bdSeq %d, want 255", got)
	}
	if err := f.SessionStarted(); err != nil {
		t.Fatal(err)
	}
	if got := willSeq(f.Reconnecting()); got != 0 {
		t.Errorf("after 255: bdSeq %d, want 0", got)
	}
	// The bdSeq metric has the same alias in NBIRTH and NDEATH, one of its
	// own after the tags'.
	nb := testkit.DecodeSparkplug(t, f.Connected()[0].Payload)
	nd := testkit.DecodeSparkplug(t, f.Stopping()[0].Payload)
	aliases := map[uint64]string{}
	for _, m := range nb.Metrics {
		if other, dup := aliases[m.GetAlias()]; dup || m.Alias == nil {
			t.Errorf("NBIRTH metric %q: alias %v, also %q", m.GetName(), m.Alias, other)
		}
		aliases[m.GetAlias()] = m.GetName()
	}
	if a := testkit.MetricNamed(t, nd, spBDSeq).GetAlias(); aliases[a] != spBDSeq || a <= 2 {
		t.Errorf("NDEATH bdSeq alias %d; NBIRTH aliases %v; tags have 1 and 2", a, aliases)
	}
}

// validate (CheckTopics) writes nothing: no spool directory, no state file.
func TestSparkplugValidateWritesNothing(t *testing.T) {
	cfg := testkit.SparkplugConfig("tcp://127.0.0.1:1")
	cfg.Agent.SpoolDir = filepath.Join(t.TempDir(), "spool")
	for range 2 {
		if err := CheckTopics(cfg); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(cfg.Agent.SpoolDir); !os.IsNotExist(err) {
		t.Fatalf("validate made the spool directory: %v", err)
	}
	// run makes them, as the user that runs; bdSeq once a session began.
	if _, err := New(cfg, newNopLog(), nil); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(cfg.Agent.SpoolDir)
	if err != nil {
		t.Fatal(err)
	}
	if uid := st.Sys().(*syscall.Stat_t).Uid; uid != uint32(os.Getuid()) {
		t.Errorf("spool directory owned by %d, not the user that runs (%d)", uid, os.Getuid())
	}
	if _, err := os.Stat(filepath.Join(cfg.Agent.SpoolDir, bdSeqFile)); !os.IsNotExist(err) {
		t.Errorf("a bdSeq file before any session: %v", err)
	}
}
