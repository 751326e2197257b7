package publish

import (
	"cmp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// store is paho's in-memory session store (mqtt.Store), ours for three
// reasons. paho's MemoryStore lists its keys in map order and resume()
// resends in that order, so a reconnect would shuffle the messages in
// flight; store lists them in the order they were first stored. It tells
// the publisher when resume() has read it (All) and when every outgoing
// message has been acknowledged, which Run waits for after a reconnect and
// before disconnecting. And it counts acknowledgements: for QoS 1 and 2
// these, not tokens, say what the broker has (see Publisher.reap).
type store struct {
	mu      sync.Mutex
	seq     uint64
	msgs    map[string]stored
	out     int           // outgoing entries ("o." keys): unacknowledged PUBLISH or PUBREL
	lists   uint64        // calls of All; paho makes one in each resume()
	changed chan struct{} // closed and replaced when lists grows or out drops to 0
	acked   atomic.Uint64 // outgoing entries deleted: PUBACK or PUBCOMP received
}

type stored struct {
	seq uint64
	p   packets.ControlPacket
}

var _ mqtt.Store = (*store)(nil)

func newStore() *store {
	return &store{msgs: map[string]stored{}, changed: make(chan struct{})}
}

// Open and Close are no-ops: the store lives as long as its Publisher.
func (s *store) Open()  {}
func (s *store) Close() {}

func (s *store) Put(key string, p packets.ControlPacket) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.msgs[key]; ok {
		// A PUBREL replacing its PUBLISH (QoS 2) keeps its place.
		s.msgs[key] = stored{old.seq, p}
		return
	}
	s.seq++
	s.msgs[key] = stored{s.seq, p}
	if outgoing(key) {
		s.out++
	}
}

func (s *store) Get(key string) packets.ControlPacket {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.msgs[key].p
}

// All returns the keys in the order they were first stored.
func (s *store) All() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]string, 0, len(s.msgs))
	for k := range s.msgs {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return cmp.Compare(s.msgs[a].seq, s.msgs[b].seq) })
	s.lists++
	s.signal()
	return keys
}

func (s *store) Del(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.msgs[key]; !ok {
		return
	}
	delete(s.msgs, key)
	if outgoing(key) {
		s.acked.Add(1)
		s.out--
		if s.out == 0 {
			s.signal()
		}
	}
}

func (s *store) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.msgs)
	if s.out > 0 {
		s.out = 0
		s.signal()
	}
}

// state returns the number of All calls so far, the outgoing messages
// awaiting acknowledgement, and a channel closed when either changes as
// described at changed.
func (s *store) state() (lists uint64, out int, changed <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lists, s.out, s.changed
}

// signal wakes the waiters of state; s.mu is held.
func (s *store) signal() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func outgoing(key string) bool { return strings.HasPrefix(key, "o.") }
