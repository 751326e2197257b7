package publish

import "time"

// keepAliver is a format that sends keep-alive messages for writers that
// have been quiet (Part 14's ua-keepalive).
type keepAliver interface {
	keepAlives(now time.Time) []Message
}

// keepAlive, on Run's goroutine, publishes the format's due keep-alives
// at QoS 0 while the link is up.
func (p *Publisher) keepAlive() {
	k, ok := p.format.(keepAliver)
	if !ok || !p.linkUp() {
		return
	}
	for _, m := range k.keepAlives(time.Now()) {
		if p.publishMessage(m) == nil {
			return // link down
		}
	}
}
