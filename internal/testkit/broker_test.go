package testkit

import (
	"fmt"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

func publish(t *testing.T, url, topic, payload string, retain bool) {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID(fmt.Sprintf("pub-%d", time.Now().UnixNano())))
	if err := waitToken(c.Connect()); err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(100)
	if err := waitToken(c.Publish(topic, 1, retain, payload)); err != nil {
		t.Fatal(err)
	}
}

func receive(t *testing.T, msgs <-chan Message) Message {
	t.Helper()
	select {
	case m := <-msgs:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no message within 10 s")
	}
	return Message{}
}

func TestSubscribeAcrossRestart(t *testing.T) {
	b := StartBroker(t)
	msgs := Subscribe(t, b.URL(), "a/#", 1)
	publish(t, b.URL(), "a/b", "one", false)
	if m := receive(t, msgs); m.Topic != "a/b" || string(m.Payload) != "one" || m.Retained {
		t.Errorf("got %+v", m)
	}

	b.Stop()
	b.Restart()
	// The subscriber's session survived: a message published before it
	// reconnects is queued for it.
	publish(t, b.URL(), "a/c", "two", true)
	if m := receive(t, msgs); m.Topic != "a/c" || string(m.Payload) != "two" || m.Retained {
		t.Errorf("got %+v", m)
	}
	// Retained messages come with the flag on subscribing.
	if m := receive(t, Subscribe(t, b.URL(), "a/c", 0)); !m.Retained || string(m.Payload) != "two" {
		t.Errorf("got %+v", m)
	}
}

func TestWithUser(t *testing.T) {
	b := StartBroker(t, WithUser("alice", "s3cret"))
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(b.URL()).SetProtocolVersion(4))
	if err := waitToken(c.Connect()); err == nil {
		c.Disconnect(0)
		t.Fatal("anonymous connect accepted")
	}
	url := "tcp://alice:s3cret@" + b.URL()[len("tcp://"):]
	msgs := Subscribe(t, url, "x", 1)
	publish(t, url, "x", "hi", false)
	if m := receive(t, msgs); string(m.Payload) != "hi" {
		t.Errorf("got %+v", m)
	}
}
