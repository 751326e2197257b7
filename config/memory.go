package config

// agent.memory_limit's words; any other value is a size.
const (
	MemoryLimitAuto = "auto"
	MemoryLimitOff  = "off"
)

// The automatic soft limit in batch mode: a base for the runtime, the
// broker link and the buffers, and what a tag keeps in the heap (its
// configuration, the session's tables; about 0.4 KiB at 100,000 tags)
// with room for the collector: it caps the start-up's peak, and binds
// little in the steady state, where a tighter limit cost a third more CPU
// at 20,000 values/s and more at 100,000 (docs/performance.md, "Session 6").
const (
	autoMemoryBase   = 24 << 20
	autoMemoryPerTag = 520

	// minMemoryLimit refuses a limit under which the collector would run
	// without pause whatever the tags.
	minMemoryLimit = 16 << 20
)

// MemoryLimit is the soft memory limit (runtime/debug.SetMemoryLimit)
// that agent.memory_limit asks for, 0 for none. auto gives one only in
// batch mode (mqtt.batch), where the heap follows the tag count: with one
// message per value a backlog of messages lives in the heap, and a limit
// under it makes the collector run without pause (at 100,000 tags ×5.4
// the CPU per value and a third of the throughput), so auto sets none there.
func (c *Config) MemoryLimit() int64 {
	switch c.Agent.MemoryLimit {
	case MemoryLimitOff, "":
		return 0
	case MemoryLimitAuto:
		if !c.MQTT.Batch || c.MQTT.Payload != PayloadJSON {
			return 0
		}
		return autoMemoryBase + autoMemoryPerTag*int64(c.TagCount())
	}
	s, err := parseSize(c.Agent.MemoryLimit)
	if err != nil {
		return 0
	}
	return int64(s)
}

func (v *validator) memoryLimit(s string) {
	if s == MemoryLimitAuto || s == MemoryLimitOff {
		return
	}
	size, err := parseSize(s)
	switch {
	case err != nil:
		v.add("agent.memory_limit", "%q is not auto, off or a size such as 96MiB", s)
	case size < minMemoryLimit:
		v.add("agent.memory_limit", "%s is below the least of %s", size, Size(minMemoryLimit))
	}
}
