package config

import "fmt"

// Heartbeat values: what a heartbeat repeats.
const (
	HeartbeatLast     = "last"      // the last value, whatever its status
	HeartbeatLastGood = "last_good" // the last Good value
)

// applyHeartbeatDefaults gives each tag its PLC's heartbeat unless it has
// its own.
func (p *PLC) applyHeartbeatDefaults() {
	orString(&p.HeartbeatValue, HeartbeatLast)
	p.applyEventDefaults()
	for j := range p.Tags {
		orDuration(&p.Tags[j].Heartbeat, p.Heartbeat.Duration())
	}
}

func (v *validator) heartbeat(path string, p *PLC) {
	v.oneOf(path+".heartbeat_value", p.HeartbeatValue, "heartbeat value", []string{HeartbeatLast, HeartbeatLastGood})
	v.events(path, p)
	if p.Heartbeat < 0 {
		v.add(path+".heartbeat", "must not be negative")
	}
	for j, t := range p.Tags {
		if t.Heartbeat < 0 {
			v.add(fmt.Sprintf("%s.tags[%d].heartbeat", path, j), "must not be negative")
		}
	}
}

// keyFrames checks mqtt.opcua_json: the Part 14 key frames that repeat
// every value, as heartbeats repeat one.
func (v *validator) keyFrames(m *MQTT) {
	if m.UAJSON.KeyFrameCount < 0 {
		v.add("mqtt.opcua_json.keyframe_count", "must not be negative")
	}
}
