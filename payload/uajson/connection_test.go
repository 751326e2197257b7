package uajson

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tagbridge/tagbridge/config"
	"github.com/tagbridge/tagbridge/internal/testkit"
	"github.com/tagbridge/tagbridge/payload"
)

// uaConnection is a ua-connection message as a consumer decodes it (Part
// 14, 7.2.5.5.6), every field tagbridge may write and no other.
type uaConnection struct {
	MessageID   string `json:"MessageId"`
	MessageType string
	PublisherID string `json:"PublisherId"`
	Timestamp   time.Time
	Connection  struct {
		Name        string
		Enabled     bool
		PublisherID struct {
			UaType int
			Value  string
		} `json:"PublisherId"`
		TransportProfileURI string `json:"TransportProfileUri"`
		WriterGroups        []struct {
			Name                  string
			Enabled               bool
			SecurityMode          int
			MaxNetworkMessageSize uint32
			WriterGroupID         uint16 `json:"WriterGroupId"`
			KeepAliveTime         float64
			DataSetWriters        []struct {
				Name                    string
				Enabled                 bool
				DataSetWriterID         uint16 `json:"DataSetWriterId"`
				DataSetFieldContentMask uint32
				KeyFrameCount           uint32
				DataSetName             string
				TransportSettings       struct {
					UaTypeID string `json:"UaTypeId"`
					UaBody   struct{ QueueName, MetaDataQueueName string }
				}
			}
		}
	}
}

// Every connect publishes one retained ua-connection on
// opcua/json/connection/<agent id> naming each writer with its id and the
// topics of its data and metadata; a retag that changes a writer's fields
// publishes it again, with a new MessageId.
func TestUAJSONConnection(t *testing.T) {
	cfg := testkit.UAJSONConfig("tcp://127.0.0.1:1")
	cfg.Agent.SpoolDir = t.TempDir()
	cfg.MQTT.UAJSON.KeyFrameCount = 10
	f, err := newUAJSONFormat(payload.FromConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	connections := func(msgs []payload.Message) []uaConnection {
		var out []uaConnection
		for _, m := range msgs {
			if !strings.Contains(m.Topic, "/connection/") {
				continue
			}
			if m.Topic != "opcua/json/connection/a1" || !m.Retain {
				t.Fatalf("connection on %s, retained %v", m.Topic, m.Retain)
			}
			out = append(out, testkit.DecodeUA[uaConnection](t, m.Payload))
		}
		return out
	}
	cs := connections(f.Connected())
	if len(cs) != 1 {
		t.Fatalf("%d ua-connection messages on connect, want 1", len(cs))
	}
	c := cs[0]
	if c.MessageType != "ua-connection" || c.PublisherID != "a1" || c.MessageID == "" || time.Since(c.Timestamp) > time.Minute ||
		c.Connection.Name != "a1" || !c.Connection.Enabled || c.Connection.PublisherID.UaType != 12 || c.Connection.PublisherID.Value != "a1" ||
		c.Connection.TransportProfileURI != "http://opcfoundation.org/UA-Profile/Transport/pubsub-mqtt-json" || len(c.Connection.WriterGroups) != 1 {
		t.Fatalf("connection: %+v", c)
	}
	g := c.Connection.WriterGroups[0]
	if g.Name != "tagbridge" || !g.Enabled || g.SecurityMode != 1 || g.WriterGroupID != 1 || g.MaxNetworkMessageSize != uint32(f.maxPacket) ||
		g.KeepAliveTime != float64(payload.MinSilence.Milliseconds()) {
		t.Fatalf("writer group: %+v", g)
	}
	var names []string
	for _, w := range g.DataSetWriters {
		names = append(names, w.Name)
		ts := w.TransportSettings
		if !w.Enabled || w.DataSetName != w.Name || w.DataSetFieldContentMask != 7 || w.KeyFrameCount != 10 || ts.UaTypeID != "i=15669" ||
			ts.UaBody.QueueName != "opcua/json/data/a1/tagbridge/"+w.Name || ts.UaBody.MetaDataQueueName != "opcua/json/metadata/a1/tagbridge/"+w.Name {
			t.Errorf("writer: %+v", w)
		}
		if want := slices.IndexFunc(cfg.PLCs, func(p config.PLC) bool { return p.Name == w.Name }) + 1; int(w.DataSetWriterID) != want {
			t.Errorf("writer %s has DataSetWriterId %d, want %d", w.Name, w.DataSetWriterID, want)
		}
	}
	if strings.Join(names, ",") != "press1,press2" {
		t.Fatalf("writers %v, want press1,press2", names)
	}

	cfg.PLCs[1].Tags = append(cfg.PLCs[1].Tags, config.Tag{Name: "u"})
	again := connections(f.Retag(payload.FromConfig(cfg)))
	if len(again) != 1 || again[0].MessageID == c.MessageID || len(again[0].Connection.WriterGroups[0].DataSetWriters) != 2 {
		t.Fatalf("connection after a retag: %+v", again)
	}
	if same := connections(f.Retag(payload.FromConfig(cfg))); len(same) != 0 {
		t.Fatalf("connection sent again for a retag that changed nothing: %+v", same)
	}
}
