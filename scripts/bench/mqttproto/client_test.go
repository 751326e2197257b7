package mqttproto

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tagbridge/tagbridge/internal/testkit"
)

// connect dials the broker at url (tcp://host:port) and connects.
func connect(t *testing.T, url string, o Options) *Client {
	t.Helper()
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(url, "tcp://"), 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	c, err := Connect(t.Context(), conn, o)
	if err != nil {
		conn.Close()
		t.Fatalf("connect to %s: %v", url, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// positions records what Acked reports and fails if it ever goes back.
type positions struct {
	t    *testing.T
	mu   sync.Mutex
	last uint64
	back bool
	at   chan uint64
}

func newPositions(t *testing.T) *positions {
	return &positions{t: t, at: make(chan uint64, 1<<16)}
}

func (p *positions) acked(n uint64) {
	p.mu.Lock()
	if n <= p.last {
		p.back = true
	}
	p.last = n
	p.mu.Unlock()
	select {
	case p.at <- n:
	default:
	}
}

// waitFor waits until the position reaches n.
func (p *positions) waitFor(n uint64) {
	p.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		p.mu.Lock()
		last, back := p.last, p.back
		p.mu.Unlock()
		if back {
			p.t.Fatal("Acked reported a position not beyond the one before")
		}
		if last >= n {
			return
		}
		select {
		case <-p.at:
		case <-deadline:
			p.t.Fatalf("acknowledged up to %d, want %d", last, n)
		}
	}
}

// receive takes n values off msgs and counts each index i of the payload "i".
func receive(t *testing.T, msgs <-chan testkit.Message, n int, seen map[int]int) {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for range n {
		select {
		case m := <-msgs:
			i, err := strconv.Atoi(string(m.Payload))
			if err != nil {
				t.Fatalf("payload %q on %s: %v", m.Payload, m.Topic, err)
			}
			seen[i]++
		case <-deadline:
			t.Fatalf("received %d distinct values, want more (%d so far in total)", len(seen), n)
		}
	}
}

func TestPublishQoS0And1Arrive(t *testing.T) {
	b := testkit.StartBroker(t)
	msgs := testkit.Subscribe(t, b.URL(), "proto/#", 1)
	pos := newPositions(t)
	c := connect(t, b.URL(), Options{ClientID: "proto-qos", CleanSession: true, Window: 64, Acked: pos.acked})

	const n = 3000 // far beyond the window: Publish must wait for PUBACKs
	var qos1 uint64
	for i := range n {
		m := Message{Topic: fmt.Sprintf("proto/t%d", i%100), Payload: []byte(strconv.Itoa(i)), QoS: 1}
		if i%10 == 0 {
			m.QoS = 0
		}
		got, err := c.Publish(m)
		if err != nil {
			t.Fatal(err)
		}
		if m.QoS == 1 {
			qos1++
			if got != qos1 {
				t.Fatalf("message %d got number %d, want %d", i, got, qos1)
			}
		} else if got != 0 {
			t.Fatalf("QoS 0 message %d got number %d", i, got)
		}
	}
	pos.waitFor(qos1)
	if first, un := c.Unacked(); len(un) != 0 {
		t.Fatalf("all acknowledged, yet Unacked gives %d from %d", len(un), first)
	}

	seen := map[int]int{}
	receive(t, msgs, n, seen)
	for i := range n {
		if seen[i] != 1 {
			t.Fatalf("value %d arrived %d times", i, seen[i])
		}
	}
}

func TestKeepAliveAndWill(t *testing.T) {
	b := testkit.StartBroker(t)
	wills := testkit.SubscribeAll(t, b.URL(), "will/#", 1)
	will := &Message{Topic: "will/a", Payload: []byte("gone"), QoS: 1}
	c := connect(t, b.URL(), Options{ClientID: "proto-will", CleanSession: true, KeepAlive: time.Second, Will: will})

	// Idle for 2.5 keep-alive periods: the client must ping, and the
	// broker must not drop it (it would after 1.5 s of silence).
	time.Sleep(2500 * time.Millisecond)
	if err := c.Err(); err != nil {
		t.Fatalf("connection ended while idle: %v", err)
	}
	if p := c.Pings(); p < 2 {
		t.Fatalf("%d PINGRESPs in 2.5 s with a keep-alive of 1 s, want at least 2", p)
	}

	// A connection that ends without DISCONNECT: the broker sends the will.
	c.conn.Close()
	select {
	case m := <-wills:
		if m.Topic != "will/a" || string(m.Payload) != "gone" {
			t.Fatalf("will: got %s %q", m.Topic, m.Payload)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no will within 5 s of the connection dropping")
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the client did not notice its connection closed")
	}

	// Close sends DISCONNECT: no will. A marker published afterwards on
	// the same topic arrives first and alone.
	d := connect(t, b.URL(), Options{ClientID: "proto-will2", CleanSession: true, Will: &Message{Topic: "will/b", Payload: []byte("gone"), QoS: 1}})
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	e := connect(t, b.URL(), Options{ClientID: "proto-marker", CleanSession: true})
	if _, err := e.Publish(Message{Topic: "will/b", Payload: []byte("marker"), QoS: 1}); err != nil {
		t.Fatal(err)
	}
	e.Close()
	select {
	case m := <-wills:
		if string(m.Payload) != "marker" {
			t.Fatalf("after a clean close: got %s %q, want the marker", m.Topic, m.Payload)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no marker within 5 s")
	}
}

// TestBrokerRestart: the connection ends with messages in flight; what it
// reports unacknowledged, published again on a new connection, completes
// the stream (QoS 1: at least once).
func TestBrokerRestart(t *testing.T) {
	b := testkit.StartBroker(t)
	msgs := testkit.Subscribe(t, b.URL(), "proto/#", 1)
	const n = 20000
	pos := newPositions(t)
	o := Options{ClientID: "proto-restart", KeepAlive: 5 * time.Second, Acked: pos.acked}
	c := connect(t, b.URL(), o)

	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		pos.waitFor(2000)
		b.Stop() // SIGTERM: the broker saves its sessions
	}()
	sent := 0
	for ; sent < n; sent++ {
		if sent == n/2 {
			<-stopped // however slow the broker is to stop, it stops in between
		}
		if _, err := c.Publish(Message{Topic: "proto/r", Payload: []byte(strconv.Itoa(sent)), QoS: 1}); err != nil {
			break
		}
	}
	<-stopped
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the client did not notice the broker stopping")
	}
	if sent == n {
		t.Fatalf("all %d messages published, though the broker stopped after %d", n, n/2)
	}
	confirmed := c.Confirmed()
	first, unacked := c.Unacked()
	if confirmed < 2000 {
		t.Fatalf("confirmed %d, want at least 2000 (Acked reported that)", confirmed)
	}
	// Every message is either confirmed or reported, in order.
	if int(confirmed)+len(unacked) != sent {
		t.Fatalf("confirmed %d + unacknowledged %d != published %d", confirmed, len(unacked), sent)
	}
	for i, m := range unacked {
		if want := strconv.Itoa(int(first) - 1 + i); string(m.Payload) != want {
			t.Fatalf("unacknowledged message %d is %q, want %q", i, m.Payload, want)
		}
	}
	t.Logf("broker stopped after %d published: %d confirmed, %d unacknowledged", sent, confirmed, len(unacked))

	b.Restart()
	pos2 := newPositions(t)
	o.Acked = pos2.acked
	c2 := connect(t, b.URL(), o)
	for _, m := range unacked {
		if _, err := c2.Publish(m); err != nil {
			t.Fatal(err)
		}
	}
	for i := sent; i < n; i++ {
		if _, err := c2.Publish(Message{Topic: "proto/r", Payload: []byte(strconv.Itoa(i)), QoS: 1}); err != nil {
			t.Fatal(err)
		}
	}
	pos2.waitFor(uint64(len(unacked) + n - sent))

	// Every value arrives; values around the restart may arrive twice.
	seen := map[int]int{}
	receive(t, msgs, n, seen)
	for len(seen) < n {
		receive(t, msgs, n-len(seen), seen)
	}
	for i := range n {
		if seen[i] == 0 {
			t.Fatalf("value %d never arrived", i)
		}
	}
}

// TestAckAcrossPacketIDWrap: packet ids cycle over 1..65535; PUBACKs out of
// order move the position only over a complete front, and a PUBACK for a
// message already confirmed changes nothing.
func TestAckAcrossPacketIDWrap(t *testing.T) {
	var reported []uint64
	c := &Client{window: make([]inflight, 8), opts: Options{Acked: func(n uint64) { reported = append(reported, n) }}}
	c.room.L = &c.mu
	c.confirmed, c.published = 65530, 65538 // ids 65531..65535, then 1, 2, 3
	for _, step := range []struct {
		id   uint16
		want uint64
	}{
		{packetID(65532), 65530}, // not the front
		{packetID(65531), 65532}, // the front, and the one after it
		{packetID(65531), 65532}, // repeated: already confirmed
		{2, 65532},               // message 65537, beyond the wrap
		{packetID(65533), 65533},
		{packetID(65534), 65534},
		{packetID(65535), 65535},
		{1, 65537}, // 65536, then 65537 acknowledged before
		{9, 65537}, // no message in flight has it
		{3, 65538},
	} {
		c.ack(step.id)
		if c.confirmed != step.want {
			t.Fatalf("after PUBACK %d: confirmed %d, want %d", step.id, c.confirmed, step.want)
		}
	}
	if want := []uint64{65532, 65533, 65534, 65535, 65537, 65538}; !slices.Equal(reported, want) {
		t.Fatalf("Acked reported %v, want %v", reported, want)
	}
	if packetID(65535) != 65535 || packetID(65536) != 1 {
		t.Fatalf("packet ids: %d after 65534, %d after 65535", packetID(65535), packetID(65536))
	}
}
