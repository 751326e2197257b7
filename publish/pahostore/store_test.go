package pahostore

import (
	"testing"

	"github.com/eclipse/paho.mqtt.golang/packets"
)

// A command result stored at QoS 1 is resent like the values but neither
// counted as one of theirs when acknowledged nor awaited before a stop.
func TestStoreKeepsResultsApart(t *testing.T) {
	s := New()
	pub := func(topic string) *packets.PublishPacket {
		p := packets.NewControlPacket(packets.Publish).(*packets.PublishPacket)
		p.TopicName, p.Qos = topic, 1
		return p
	}
	s.Put("o.1", pub("plant/value"))
	done := s.PublishingResult("plant/x/set/result")
	s.Put("o.2", pub("plant/x/set/result"))
	done()
	s.Put("o.3", pub("plant/x/set/result")) // after done: a value on that topic
	if _, out, _ := s.State(); out != 2 {
		t.Errorf("%d outgoing awaited, want 2 (the result not among them)", out)
	}
	if keys := s.All(); len(keys) != 3 {
		t.Errorf("resent %v, want all 3", keys)
	}
	if order := s.oldestPublish(); order != 1 {
		t.Errorf("oldest publish %d, want 1", order)
	}
	s.Del("o.2")
	if n := s.acked.Load(); n != 0 {
		t.Errorf("the result's acknowledgement counted: acked %d", n)
	}
	s.Del("o.1")
	s.Del("o.3")
	if n := s.acked.Load(); n != 2 {
		t.Errorf("acked %d, want 2", n)
	}
}
