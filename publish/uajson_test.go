package publish

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/internal/testkit"
	"github.com/tagbridge/tagbridge/payload"
	"github.com/tagbridge/tagbridge/scripts/faultproxy"
)

type uaStatus struct {
	MessageID   string `json:"MessageId"`
	MessageType string
	PublisherID string `json:"PublisherId"`
	IsCyclic    bool
	Status      int
}

// receiveUA takes the next message, checks it against its schema and
// returns it. ua-metadata and ua-keepalive messages are checked against
// theirs and passed over.

// PubSubState values (Part 14, 6.2.1) and the status code of the Bad key
// frame (Part 6, A.2), as a consumer knows them.
const (
	pubSubDisabled     = 0
	pubSubOperational  = 2
	pubSubError        = 3
	badNoCommunication = 0x80310000
)

func receiveUA(t *testing.T, msgs <-chan testkit.Message, data, status *jsonschema.Schema) testkit.Message {
	t.Helper()
	for {
		m := receive(t, msgs, 1)[0]
		switch {
		case strings.HasPrefix(m.Topic, "opcua/json/status/"):
			testkit.SchemaCheck(t, status, m.Payload)
		case strings.HasPrefix(m.Topic, "opcua/json/data/"):
			testkit.SchemaCheck(t, data, m.Payload)
			if bytes.Contains(m.Payload, []byte(`"MessageType":"ua-keepalive"}]}`)) {
				continue // a slow test's quiet writer (see TestUAJSONKeepAliveOnBroker)
			}
		case strings.HasPrefix(m.Topic, "opcua/json/connection/"):
			wantConnection(t, m)
			continue
		case strings.HasPrefix(m.Topic, "opcua/json/metadata/"):
			testkit.SchemaCheck(t, testkit.UAMetaSchema(t), m.Payload)
			if !m.Retained && m.Topic != "opcua/json/metadata/a1/tagbridge/press1" && m.Topic != "opcua/json/metadata/a1/tagbridge/press2" {
				t.Fatalf("metadata on %s", m.Topic)
			}
			continue
		default:
			t.Fatalf("unexpected topic %s", m.Topic)
		}
		return m
	}
}

// uaConnection is what a consumer reads of a ua-connection message to find
// the writers and their topics.
type uaConnection struct {
	MessageID   string `json:"MessageId"`
	MessageType string
	PublisherID string `json:"PublisherId"`
	Connection  struct {
		WriterGroups []struct {
			DataSetWriters []struct {
				Name              string
				DataSetWriterID   int `json:"DataSetWriterId"`
				TransportSettings struct {
					UaBody struct{ QueueName, MetaDataQueueName string }
				}
			}
		}
	}
}

// wantConnection checks that m is the ua-connection of agent a1 naming
// both writers of testkit.UAJSONConfig with their topics; it returns the
// MessageId.
func wantConnection(t *testing.T, m testkit.Message) string {
	t.Helper()
	var c uaConnection
	if err := json.Unmarshal(m.Payload, &c); err != nil {
		t.Fatalf("ua-connection %s: %v", m.Payload, err)
	}
	var writers []string
	for _, g := range c.Connection.WriterGroups {
		for _, w := range g.DataSetWriters {
			ts := w.TransportSettings.UaBody
			if ts.QueueName != "opcua/json/data/a1/tagbridge/"+w.Name || ts.MetaDataQueueName != "opcua/json/metadata/a1/tagbridge/"+w.Name {
				t.Errorf("writer %s: topics %+v", w.Name, ts)
			}
			writers = append(writers, w.Name+"="+strconv.Itoa(w.DataSetWriterID))
		}
	}
	if m.Topic != "opcua/json/connection/a1" || c.MessageType != "ua-connection" || c.PublisherID != "a1" ||
		c.MessageID == "" || strings.Join(writers, " ") != "press1=1 press2=2" {
		t.Fatalf("ua-connection on %s: %s", m.Topic, m.Payload)
	}
	return c.MessageID
}

func wantStatus(t *testing.T, m testkit.Message, state int) {
	t.Helper()
	if m.Topic != "opcua/json/status/a1" {
		t.Fatalf("want the status on opcua/json/status/a1, got %s %s", m.Topic, m.Payload)
	}
	st := testkit.DecodeUA[uaStatus](t, m.Payload)
	if st.MessageType != "ua-status" || st.PublisherID != "a1" || st.IsCyclic || st.Status != state {
		t.Fatalf("want status %d, got %s", state, m.Payload)
	}
}

// On a real broker: the retained ua-status Operational before any data,
// every message valid, sequence numbers without gaps per writer, the Bad key
// frame in order with the data when a PLC is lost, Disabled on a clean stop.
func TestUAJSONOnBroker(t *testing.T) {
	data, status := testkit.UASchemas(t)
	b := testkit.StartBroker(t)
	cfg := testkit.UAJSONConfig(b.URL())
	log, _ := testkit.NewLogger(t, "publisher")
	p := newPublisher(t, cfg, log)
	msgs := testkit.SubscribeAll(t, b.URL(), "opcua/json/#", 1)
	in := make(chan collectors.Event, 64)
	done := start(t, p, in)

	wantStatus(t, receiveUA(t, msgs, data, status), pubSubOperational)

	const n = 20
	for i := range n {
		in <- collectors.Event{Batch: collectors.Batch{
			{PLC: "press1", Tag: "temperature", Value: int32(i), Type: collectors.TypeInt32},
			{PLC: "press2", Tag: "t", Value: int64(i), Type: collectors.TypeInt64},
		}}
	}
	in <- collectors.Event{State: &collectors.PLCState{PLC: "press1", State: collectors.StateDisconnected, Reason: "EOF", Since: time.Now()}}
	in <- collectors.Event{State: &collectors.PLCState{PLC: "press1", State: collectors.StateDisconnected, Reason: "connection refused", Since: time.Now()}}

	seqs := map[string][]uint32{}
	badAt := -1
	take := func() {
		m := receiveUA(t, msgs, data, status)
		nm := testkit.DecodeUA[testkit.UANetworkMessage](t, m.Payload)
		if len(nm.Messages) != 1 || m.Topic != "opcua/json/data/a1/tagbridge/"+nm.Messages[0].DataSetWriterName {
			t.Fatalf("%s: %s", m.Topic, m.Payload)
		}
		dm := nm.Messages[0]
		seqs[dm.DataSetWriterName] = append(seqs[dm.DataSetWriterName], dm.SequenceNumber)
		if dm.MessageType == "ua-keyframe" {
			if badAt >= 0 {
				t.Fatalf("second Bad key frame for one loss: %s", m.Payload)
			}
			badAt = len(seqs["press1"])
			if dm.Status == nil || dm.Status.Code != badNoCommunication || dm.Status.Symbol != "BadNoCommunication" || len(dm.Payload) != 2 {
				t.Fatalf("PLC loss: %s", m.Payload)
			}
			for tag, dv := range dm.Payload {
				if string(dv) != `{"Status":{"Code":2150694912,"Symbol":"BadNoCommunication"},"StatusCode":{"Code":2150694912,"Symbol":"BadNoCommunication"}}` {
					t.Errorf("%s after the PLC loss: %s", tag, dv)
				}
			}
			return
		}
		if v := string(dm.Payload["temperature"]) + string(dm.Payload["t"]); !strings.Contains(v, `"Value":`) {
			t.Fatalf("data: %s", m.Payload)
		}
	}
	for range 2*n + 1 {
		take()
	}
	if badAt != n+1 {
		t.Errorf("Bad key frame is message %d of press1, want %d (after the data taken before it)", badAt, n+1)
	}
	// The same loss again with another reason adds nothing; values go on.
	in <- collectors.Event{Batch: collectors.Batch{{PLC: "press1", Tag: "temperature", Value: int32(n), Type: collectors.TypeInt32}}}
	take()
	for plc, s := range seqs {
		for i, q := range s {
			if q != uint32(i+1) {
				t.Fatalf("%s: sequence numbers %v, want 1, 2, ... without gaps", plc, s)
			}
		}
	}
	if len(seqs["press1"]) != n+2 || len(seqs["press2"]) != n {
		t.Fatalf("messages per writer: %v", seqs)
	}

	late := testkit.SubscribeAll(t, b.URL(), "opcua/json/status/+", 1)
	r := receiveUA(t, late, data, status)
	if !r.Retained {
		t.Fatalf("status not retained: %+v", r)
	}
	wantStatus(t, r, pubSubOperational)

	close(in)
	if err := result(t, done); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, receiveUA(t, msgs, data, status), pubSubDisabled)
	late = testkit.SubscribeAll(t, b.URL(), "opcua/json/status/+", 1)
	wantStatus(t, receiveUA(t, late, data, status), pubSubDisabled)
}

// runUA runs p until the test ends, and waits for Run to return before the
// spool's directory is removed.
func runUA(t *testing.T, p *Publisher, in <-chan collectors.Event) {
	done := start(t, p, in)
	t.Cleanup(func() {
		if err := result(t, done); err != nil {
			t.Error(err)
		}
	})
}

// An unclean loss of the connection: the broker publishes the will, ua-status
// Error, retained; after the reconnect the agent is Operational again.
func TestUAJSONWill(t *testing.T) {
	data, status := testkit.UASchemas(t)
	b := testkit.StartBroker(t)
	px := faultproxy.Start(t, strings.TrimPrefix(b.URL(), "tcp://"))
	cfg := testkit.UAJSONConfig("tcp://" + px.Addr())
	log, sink := testkit.NewLogger(t, "publisher")
	p := newPublisher(t, cfg, log)
	msgs := testkit.SubscribeAll(t, b.URL(), "opcua/json/status/+", 1)
	runUA(t, p, make(chan collectors.Event))
	wantStatus(t, receiveUA(t, msgs, data, status), pubSubOperational)

	px.Refuse(true)
	px.Cut()
	sink.WaitFor(t, wait, "connection to broker lost")
	will := receiveUA(t, msgs, data, status)
	wantStatus(t, will, pubSubError)
	late := testkit.SubscribeAll(t, b.URL(), "opcua/json/status/+", 1)
	r := receiveUA(t, late, data, status)
	if !r.Retained || !bytes.Equal(r.Payload, will.Payload) {
		t.Fatalf("retained after the loss: %+v %s", r, r.Payload)
	}

	px.Refuse(false)
	wantStatus(t, receiveUA(t, msgs, data, status), pubSubOperational)

	// The next loss publishes a will with a MessageId of its own.
	px.Cut()
	sink.WaitFor(t, wait, "connection to broker lost")
	m := receiveUA(t, msgs, data, status)
	for ; m.Retained; m = receiveUA(t, msgs, data, status) {
	}
	wantStatus(t, m, pubSubError)
	first, second := testkit.DecodeUA[uaStatus](t, will.Payload), testkit.DecodeUA[uaStatus](t, m.Payload)
	if first.MessageID == second.MessageID {
		t.Fatalf("both wills have MessageId %s", first.MessageID)
	}
}

// Across a broker restart: the new ua-status Operational comes before the
// values spooled during the outage, and the sequence numbers go on. (A
// record already handed to paho when the connection died is resent by
// paho ahead of it; that is why the values are taken after the loss.)
func TestUAJSONBrokerRestart(t *testing.T) {
	data, status := testkit.UASchemas(t)
	b := testkit.StartBroker(t)
	// The agent connects through a proxy, so that the test can hold it off
	// until the subscriber is back: a QoS 0 status published while the
	// subscriber is away is not queued for it.
	px := faultproxy.Start(t, strings.TrimPrefix(b.URL(), "tcp://"))
	cfg := testkit.UAJSONConfig("tcp://" + px.Addr())
	log, sink := testkit.NewLogger(t, "publisher")
	p := newPublisher(t, cfg, log)
	msgs := testkit.SubscribeAll(t, b.URL(), "opcua/#", 1) // a persistent session
	in := make(chan collectors.Event, 16)
	runUA(t, p, in)
	wantStatus(t, receiveUA(t, msgs, data, status), pubSubOperational)
	batch := func(i int) collectors.Batch {
		return collectors.Batch{{PLC: "press1", Tag: "temperature", Value: int32(i), Type: collectors.TypeInt32}}
	}
	in <- collectors.Event{Batch: batch(1)}
	if m := receiveUA(t, msgs, data, status); testkit.DecodeUA[testkit.UANetworkMessage](t, m.Payload).Messages[0].SequenceNumber != 1 {
		t.Fatalf("first value: %s", m.Payload)
	}

	px.Refuse(true)
	b.Stop()
	sink.WaitFor(t, wait, "connection to broker lost")
	for i := 2; i <= 4; i++ {
		in <- collectors.Event{Batch: batch(i)}
	}
	b.Restart()
	// The subscriber subscribes again when it reconnects, and gets the
	// retained status: it is back.
	for m := receiveUA(t, msgs, data, status); !m.Retained; m = receiveUA(t, msgs, data, status) {
		if strings.HasPrefix(m.Topic, "opcua/json/data/") &&
			testkit.DecodeUA[testkit.UANetworkMessage](t, m.Payload).Messages[0].SequenceNumber != 1 { // 1 may come again: at least once
			t.Fatalf("before the agent is back: %s %s", m.Topic, m.Payload)
		}
	}
	px.Refuse(false)
	var seen []string
	var seqs []uint32
	for len(seqs) < 3 {
		m := receiveUA(t, msgs, data, status)
		if m.Retained {
			continue // replayed from the broker's store, not published anew
		}
		if strings.HasPrefix(m.Topic, "opcua/json/status/") {
			st := testkit.DecodeUA[uaStatus](t, m.Payload)
			if st.Status == pubSubError {
				continue // the will, which Mosquitto may deliver around its restart
			}
			seen = append(seen, "status="+strconv.Itoa(st.Status))
			continue
		}
		dm := testkit.DecodeUA[testkit.UANetworkMessage](t, m.Payload).Messages[0]
		if dm.SequenceNumber == 1 {
			continue // delivered again by the broker: at least once
		}
		if len(seqs) == 0 {
			seen = append(seen, "data")
		}
		seqs = append(seqs, dm.SequenceNumber)
	}
	if strings.Join(seen, " ") != "status=2 data" {
		t.Fatalf("after the restart: %q, want the Operational status before the spooled data", seen)
	}
	if seqs[0] != 2 || seqs[1] != 3 || seqs[2] != 4 {
		t.Fatalf("sequence numbers after the restart: %v, want 2 3 4", seqs)
	}
}

// Through a real broker: a writer with no data for its KeepAliveTime (5 s,
// the floor) sends a ua-keepalive, whose SequenceNumber is the next one.
func TestUAJSONKeepAliveOnBroker(t *testing.T) {
	data, _ := testkit.UASchemas(t)
	b := testkit.StartBroker(t)
	cfg := testkit.UAJSONConfig(b.URL())
	cfg.Agent.SpoolDir = t.TempDir()
	log, _ := testkit.NewLogger(t, "publisher")
	p := newPublisher(t, cfg, log)
	msgs := testkit.SubscribeAll(t, b.URL(), "opcua/json/data/#", 1)
	started := time.Now()
	runUA(t, p, make(chan collectors.Event))
	seen := map[string]bool{}
	for len(seen) < 2 {
		m := receive(t, msgs, 1)[0]
		testkit.SchemaCheck(t, data, m.Payload)
		dm := testkit.DecodeUA[testkit.UANetworkMessage](t, m.Payload).Messages[0]
		if dm.MessageType != "ua-keepalive" || dm.SequenceNumber != 1 || m.Retained {
			t.Fatalf("%s: %s", m.Topic, m.Payload)
		}
		if el := time.Since(started); el < payload.MinSilence {
			t.Fatalf("keep-alive after %v, before the KeepAliveTime", el)
		}
		seen[dm.DataSetWriterName] = true
	}
}

// On a real broker: the retained ua-connection is there for a consumer that
// comes after the connect, names every writer, and is published anew (a new
// MessageId) when the agent connects again after a broker restart.
func TestUAJSONConnectionOnBroker(t *testing.T) {
	b := testkit.StartBroker(t)
	cfg := testkit.UAJSONConfig(b.URL())
	cfg.Agent.SpoolDir = t.TempDir()
	log, sink := testkit.NewLogger(t, "publisher")
	p := newPublisher(t, cfg, log)
	status := testkit.SubscribeAll(t, b.URL(), "opcua/json/status/+", 1)
	runUA(t, p, make(chan collectors.Event))
	receive(t, status, 1)
	// A consumer that subscribes now gets the retained message, once the
	// agent has published one other than notID.
	late := func(notID string) string {
		t.Helper()
		deadline := time.After(wait)
		for {
			sub := testkit.SubscribeAll(t, b.URL(), "opcua/json/connection/+", 1)
			select {
			case m := <-sub:
				if !m.Retained {
					continue
				}
				if id := wantConnection(t, m); id != notID {
					return id
				}
				time.Sleep(100 * time.Millisecond)
			case <-time.After(500 * time.Millisecond):
			case <-deadline:
				t.Fatalf("no retained ua-connection other than %q within %v", notID, wait)
			}
		}
	}
	first := late("")
	b.Stop()
	sink.WaitFor(t, wait, "connection to broker lost")
	b.Restart()
	late(first)
}
