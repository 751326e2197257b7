package config

import "testing"

func TestMemoryLimit(t *testing.T) {
	tags := make([]Tag, 1000)
	tests := []struct {
		name    string
		setting string
		batch   bool
		payload string
		want    int64
	}{
		{"auto in batch mode", MemoryLimitAuto, true, PayloadJSON, 24<<20 + 520*2000},
		{"auto with one message per value", MemoryLimitAuto, false, PayloadJSON, 0},
		{"auto with sparkplug_b", MemoryLimitAuto, true, PayloadSparkplugB, 0},
		{"off", MemoryLimitOff, true, PayloadJSON, 0},
		{"a size", "96MiB", false, PayloadJSON, 96 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Config{
				Agent: Agent{MemoryLimit: tt.setting},
				MQTT:  MQTT{Batch: tt.batch, Payload: tt.payload},
				PLCs:  []PLC{{Tags: tags}, {Tags: tags}},
			}
			if got := c.MemoryLimit(); got != tt.want {
				t.Errorf("MemoryLimit() = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestMemoryLimitBelowLeast(t *testing.T) {
	v := &validator{c: &Config{File: "c.yaml"}}
	v.memoryLimit("8MiB")
	v.memoryLimit("16MiB")
	if len(v.errs) != 1 || v.errs[0].Error() != "c.yaml: agent.memory_limit: 8MiB is below the least of 16MiB" {
		t.Errorf("errors %v, want one for 8MiB", v.errs)
	}
}
