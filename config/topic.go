package config

import (
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// The MQTT topic rules, defined once: config checks the templates and the
// names that become topic levels, payload the topics it renders (payload
// imports config, so they live here).

var placeholders = []string{"{agent}", "{plc}", "{tag}"}

// topicError returns what is wrong with a topic template, or "".
func topicError(t string) string {
	if t == "" {
		return "topic template must not be empty"
	}
	if i := strings.IndexAny(t, "+#\x00"); i >= 0 {
		return fmt.Sprintf("%q is not allowed in a topic template", t[i:i+1])
	}
	for rest := t; rest != ""; {
		open := strings.IndexAny(rest, "{}")
		if open < 0 {
			break
		}
		if rest[open] == '}' {
			return fmt.Sprintf("unbalanced \"}\" in topic template %q", t)
		}
		end := strings.IndexAny(rest[open+1:], "{}")
		if end < 0 || rest[open+1+end] == '{' {
			return fmt.Sprintf("unbalanced \"{\" in topic template %q", t)
		}
		ph := rest[open : open+2+end]
		if !slices.Contains(placeholders, ph) {
			return fmt.Sprintf("unknown placeholder %q in topic template (use {agent}, {plc}, {tag})", ph)
		}
		rest = rest[open+2+end:]
	}
	return ""
}

// topicLevel checks that s can stand as one MQTT topic level.
func (v *validator) topicLevel(path, s string) {
	switch {
	case s == "":
		v.add(path, "required")
	case strings.ContainsFunc(s, BreaksTopicLevel):
		v.add(path, `%q is not a valid MQTT topic level (no "/", "+", "#" or NUL)`, s)
	}
}

// BreaksTopicLevel reports whether r cannot stand in one level of a
// published topic: a separator, a wildcard, or a character the broker
// refuses.
func BreaksTopicLevel(r rune) bool {
	return r == '/' || r == '+' || r == '#' || unpublishable(r)
}

// unpublishable reports whether a broker may refuse r in a topic, by
// dropping the connection: NUL, the control characters and the
// noncharacters (MQTT 3.1.1, 1.5.3; Mosquitto refuses them all).
func unpublishable(r rune) bool {
	return r <= 0x1f || r >= 0x7f && r <= 0x9f ||
		r >= 0xfdd0 && r <= 0xfdef || r&0xfffe == 0xfffe
}

// CheckTopic rejects what the broker would refuse in a PUBLISH topic.
func CheckTopic(topic string) error {
	switch {
	case topic == "":
		return fmt.Errorf("renders empty")
	case strings.ContainsAny(topic, "+#"):
		return fmt.Errorf("renders to %q: wildcards + and # are not allowed when publishing", topic)
	case !utf8.ValidString(topic):
		return fmt.Errorf("renders to %q: must be valid UTF-8", topic)
	case strings.ContainsFunc(topic, unpublishable):
		return fmt.Errorf("renders to %q: control characters and noncharacters (such as U+FFFF) are not allowed", topic)
	case topic[0] == '$':
		return fmt.Errorf("renders to %q: topics starting with $ are the broker's ($SYS)", topic)
	case len(topic) > 65535:
		return fmt.Errorf("renders longer than 65535 bytes")
	}
	return nil
}
