package payload

import (
	"strings"
	"testing"
)

// checkTopic refuses what a broker may drop the connection for; validate
// runs it on every rendered topic (CheckTopics).
func TestCheckTopicRefuses(t *testing.T) {
	for _, tc := range []struct {
		topic string
		ok    bool
	}{
		{"tagbridge/a1/press1/Temperatur-ü", true},
		{"tagbridge/a1/press1/tab\there", false},
		{"tagbridge/a1/press1/del\x7f", false},
		{"tagbridge/a1/press1/c1\u0085", false},
		{"tagbridge/a1/press1/\uffff", false},
		{"tagbridge/a1/press1/\ufdd0", false},
		{"tagbridge/a1/press1/\U0010fffe", false},
		{"tagbridge/a1/press1/\xff", false},
		{"$SYS/broker/x", false},
	} {
		if err := CheckTopic(tc.topic); (err == nil) != tc.ok {
			t.Errorf("CheckTopic(%q) = %v, want ok %v", tc.topic, err, tc.ok)
		}
		if l := Level(tc.topic[1:]); CheckTopic("x/"+strings.ReplaceAll(l, "/", "_")) != nil {
			t.Errorf("level(%q) = %q: still refused", tc.topic[1:], l)
		}
	}
}
