package publish

import (
	"bytes"
	"maps"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/config"
	"github.com/tagbridge/tagbridge/internal/testkit"
	"github.com/tagbridge/tagbridge/payload"
)

// TestSilence: a PLC entry recovering for longer than its watchdog is
// reported disconnected once; one that streams, disconnects or stops
// before is not; a new reason while recovering keeps the timer.
func TestSilence(t *testing.T) {
	cfg := &config.Config{PLCs: []config.PLC{
		{Name: "fast", PublishingInterval: config.Duration(100 * time.Millisecond), WatchdogIntervals: 10}, // 1 s: the 5 s floor
		{Name: "slow", PublishingInterval: config.Duration(time.Second), WatchdogIntervals: 10,
			Tags: []config.Tag{{Name: "t", PublishingInterval: config.Duration(2 * time.Second)}}}, // 20 s
	}}
	rec := func(plc string) collectors.PLCState {
		return collectors.PLCState{PLC: plc, State: collectors.StateRecovering, Reason: "channel lost"}
	}
	st := func(plc, state string) collectors.PLCState { return collectors.PLCState{PLC: plc, State: state} }
	tests := []struct {
		name  string
		steps []collectors.PLCState // one per second
		wait  time.Duration         // after the steps
		want  []string              // "plc state" of what was queued, in order
	}{
		{"fast expires at 5 s", []collectors.PLCState{rec("fast")}, 5 * time.Second,
			[]string{"fast recovering", "fast disconnected no values for 5s while recovering"}},
		{"fast not before 5 s", []collectors.PLCState{rec("fast")}, 5*time.Second - time.Millisecond,
			[]string{"fast recovering"}},
		{"slow expires at 20 s", []collectors.PLCState{rec("slow")}, 20 * time.Second,
			[]string{"slow recovering", "slow disconnected no values for 20s while recovering"}},
		{"streams again", []collectors.PLCState{rec("fast"), st("fast", collectors.StateStreaming)}, time.Minute,
			[]string{"fast recovering", "fast streaming"}},
		{"disconnects", []collectors.PLCState{rec("fast"), st("fast", collectors.StateDisconnected)}, time.Minute,
			[]string{"fast recovering", "fast disconnected"}},
		{"new reason keeps the timer", []collectors.PLCState{rec("fast"), {PLC: "fast", State: collectors.StateRecovering, Reason: "other"}}, 4 * time.Second,
			[]string{"fast recovering", "fast recovering", "fast disconnected no values for 5s while recovering"}},
		{"again after streaming", []collectors.PLCState{rec("fast"), st("fast", collectors.StateStreaming), rec("fast")}, 5 * time.Second,
			[]string{"fast recovering", "fast streaming", "fast recovering", "fast disconnected no values for 5s while recovering"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var mu sync.Mutex
				var got []string
				queue := func(st collectors.PLCState) {
					mu.Lock()
					defer mu.Unlock()
					g := st.PLC + " " + st.State
					if st.Reason != "" && st.State != collectors.StateRecovering {
						g += " " + st.Reason
					}
					got = append(got, g)
				}
				var s *silence
				s = newSilence(payload.FromConfig(cfg).PLCs, func(a *armed) {
					if st, ok := s.expire(a); ok {
						queue(st)
					}
				})
				defer s.stop()
				for i, step := range tt.steps {
					if i > 0 {
						time.Sleep(time.Second)
					}
					s.note(step)
					queue(step)
				}
				time.Sleep(tt.wait)
				synctest.Wait()
				mu.Lock()
				defer mu.Unlock()
				if !slices.Equal(got, tt.want) {
					t.Errorf("queued %q, want %q", got, tt.want)
				}
			})
		})
	}
}

// TestSilenceReachesFormats: a PLC recovering past its watchdog is, in the
// default JSON, a retained status "disconnected", and in opcua_json a Bad
// key frame with Bad_NoCommunication that node-opcua-json reads as Bad.
func TestSilenceReachesFormats(t *testing.T) {
	const badNoCommunication = 0x80310000
	cfg := testkit.UAJSONConfig("tcp://127.0.0.1:1")
	for i := range cfg.PLCs {
		cfg.PLCs[i].PublishingInterval = config.Duration(time.Second)
		cfg.PLCs[i].WatchdogIntervals = 10
	}
	var frame []byte
	var status []payload.Message
	synctest.Test(t, func(t *testing.T) {
		ua, err := newFormat(payload.FromConfig(cfg), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		jsCfg := *cfg
		jsCfg.MQTT.Payload = config.PayloadJSON
		js, err := newFormat(payload.FromConfig(&jsCfg), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		queue := func(st collectors.PLCState) {
			mu.Lock()
			defer mu.Unlock()
			ua.PLCState(st, func(_ string, payload []byte) { frame = slices.Clone(payload) })
			status = append(status, js.PLCState(st, nil)...)
		}
		var s *silence
		s = newSilence(payload.FromConfig(cfg).PLCs, func(a *armed) {
			if st, ok := s.expire(a); ok {
				queue(st)
			}
		})
		defer s.stop()
		recovering := collectors.PLCState{PLC: "press1", State: collectors.StateRecovering, Reason: "channel lost"}
		s.note(recovering)
		queue(recovering)
		time.Sleep(10*time.Second - time.Millisecond)
		synctest.Wait()
		mu.Lock()
		if frame != nil || len(status) != 1 {
			t.Fatalf("before the watchdog: frame %s, %d statuses", frame, len(status))
		}
		mu.Unlock()
		time.Sleep(time.Millisecond)
		synctest.Wait()
	})
	if len(status) != 2 || status[1].Topic != "tagbridge/a1/press1/status" || !status[1].Retain ||
		!bytes.Contains(status[1].Payload, []byte(`"state":"disconnected","reason":"no values for 10s while recovering"`)) {
		t.Fatalf("json statuses: %+v", status)
	}
	data, _ := testkit.UASchemas(t)
	testkit.SchemaCheck(t, data, frame)
	m := testkit.DecodeUA[testkit.UANetworkMessage](t, frame)
	dm := m.Messages[0]
	if dm.MessageType != "ua-keyframe" || dm.Status == nil || dm.Status.Code != badNoCommunication || len(dm.Payload) != 2 {
		t.Fatalf("key frame: %s", frame)
	}
	fields := map[string][]byte{}
	for tag, dv := range dm.Payload {
		fields[tag] = dv
	}
	for tag, r := range testkit.DecodeWithNode(t, fields, slices.Sorted(maps.Keys(fields))) {
		if r.Error != "" || r.Status != badNoCommunication {
			t.Errorf("%s: node-opcua-json decodes status 0x%08X (%s), want Bad_NoCommunication", tag, r.Status, r.Error)
		}
	}
}
