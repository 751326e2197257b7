package publish

import "time"

// keepAlive, on Run's goroutine, publishes the format's due keep-alives
// at QoS 0 while the link is up.
func (p *Publisher) keepAlive() {
	if !p.linkUp() {
		return
	}
	for _, m := range p.format.KeepAlives(time.Now()) {
		if p.publishMessage(m) == nil {
			return // link down
		}
	}
}
