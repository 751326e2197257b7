package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/rs/zerolog"

	"github.com/tagbridge/tagbridge/internal/testkit"
	"github.com/tagbridge/tagbridge/scripts/faultproxy"
)

// syncBuffer is a bytes.Buffer that paho's goroutines may write to.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// levelOf returns the level of the first logged line containing msg, "" if
// none.
func (s *syncBuffer) levelOf(t *testing.T, msg string) string {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, line := range strings.Split(s.b.String(), "\n") {
		if !strings.Contains(line, msg) {
			continue
		}
		var rec struct{ Level string }
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		return rec.Level
	}
	return ""
}

// paho's CRITICAL "pingresp not received" (a frozen broker, here Mosquitto
// behind a proxy that stops forwarding) is at Debug: the publisher reports
// the lost connection with that reason as its own warning. paho's other
// CRITICAL messages, which nothing else reports, stay errors.
func TestPahoPingTimeoutAtDebug(t *testing.T) {
	// As run does. Not put back after: paho's goroutines read these
	// globals unsynchronised, and the next run sets them again.
	var out syncBuffer
	bridgeLibraryLoggers(zerolog.New(&out).Level(zerolog.DebugLevel))

	broker := testkit.StartBroker(t)
	proxy := faultproxy.Start(t, strings.TrimPrefix(broker.URL(), "tcp://"))
	lost := make(chan error, 1)
	opts := mqtt.NewClientOptions().AddBroker("tcp://" + proxy.Addr()).SetClientID(testkit.ClientID("paholog-")).
		SetKeepAlive(time.Second).SetPingTimeout(time.Second).SetAutoReconnect(false).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) { lost <- err })
	c := mqtt.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect through the proxy: %v", tok.Error())
	}
	proxy.Freeze()
	select {
	case err := <-lost:
		if !strings.Contains(err.Error(), "pingresp not received") {
			t.Fatalf("connection lost with %v, want the ping timeout", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the frozen broker was not noticed within 15 s")
	}
	if got := (&out).levelOf(t, "pingresp not received"); got != "debug" {
		t.Errorf("paho's ping timeout logged at %q, want debug", got)
	}

	// A store lookup that fails is paho's CRITICAL too, reported by nothing else.
	store := mqtt.NewMemoryStore()
	store.Open()
	store.Get("o.7")
	if got := (&out).levelOf(t, "memorystore get: message 7 not found"); got != "error" {
		t.Errorf("paho's other CRITICAL logged at %q, want error", got)
	}
}
