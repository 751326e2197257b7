// Package pahostore is the publisher's session store for paho (mqtt.Store):
// messages in flight kept in the order they were stored, with the counts and
// signals the publisher paces resends and stops by.
package pahostore

import (
	"cmp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// Store is paho's in-memory session store (mqtt.Store), ours for three
// reasons. paho's MemoryStore lists its keys in map order and resume()
// resends in that order, so a reconnect would shuffle the messages in
// flight; Store lists them in the order they were first stored. It tells
// the publisher when resume() has read it (All) and when every outgoing
// message has been acknowledged, which Run waits for after a reconnect and
// before disconnecting. And it counts acknowledgements: for QoS 1 and 2
// these, not tokens, say what the broker has (see Publisher.reap).
type Store struct {
	mu      sync.Mutex
	seq     uint64
	msgs    map[string]stored
	out     int           // outgoing entries ("o." keys): unacknowledged PUBLISH or PUBREL
	lists   uint64        // calls of All; paho makes one in each resume()
	changed chan struct{} // closed and replaced when lists grows or out drops to 0
	acked   atomic.Uint64 // outgoing entries deleted: PUBACK or PUBCOMP received

	// With oneByOne, Get hands resume() an outgoing PUBLISH only once it
	// is the oldest stored, that is once the broker has acknowledged the
	// ones before it, so that resume() resends one at a time (paho's own
	// MaxResumePubInFlight has a data race in v1.5.1). release, closed
	// when the connection is lost, and a timeout end the waiting.
	oneByOne bool
	release  chan struct{}
	deleted  chan struct{} // closed and replaced when an outgoing entry is deleted

	// results are the topics of command results being published now
	// (commands.go): those are resent like the rest, but kept outside out,
	// acked, strikes and the one-by-one order, which number and pace the
	// spool's messages.
	results map[string]int
}

type stored struct {
	seq     uint64
	p       packets.ControlPacket
	strikes int // connections that ended without its acknowledgement
	result  bool
}

var _ mqtt.Store = (*Store)(nil)

// New returns an empty store.
func New() *Store {
	return &Store{msgs: map[string]stored{}, changed: make(chan struct{}), release: make(chan struct{}), deleted: make(chan struct{})}
}

// Open and Close are no-ops: the store lives as long as its Publisher.
func (s *Store) Open()  {}
func (s *Store) Close() {}

func (s *Store) Put(key string, p packets.ControlPacket) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.msgs[key]; ok {
		// A PUBREL replacing its PUBLISH (QoS 2) keeps its place.
		s.msgs[key] = stored{old.seq, p, old.strikes, old.result}
		return
	}
	s.seq++
	if pub, ok := p.(*packets.PublishPacket); ok && outgoing(key) && s.results[pub.TopicName] > 0 {
		s.msgs[key] = stored{seq: s.seq, p: p, result: true}
		return
	}
	s.msgs[key] = stored{seq: s.seq, p: p}
	if outgoing(key) {
		s.out++
	}
}

// PublishingResult marks what is stored for topic until done is called
// as a command result; paho stores a PUBLISH within its Publish call.
func (s *Store) PublishingResult(topic string) (done func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.results == nil {
		s.results = map[string]int{}
	}
	s.results[topic]++
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.results[topic]--; s.results[topic] == 0 {
			delete(s.results, topic)
		}
	}
}

func (s *Store) Get(key string) packets.ControlPacket {
	var timeout <-chan time.Time
	for {
		s.mu.Lock()
		m, ok := s.msgs[key]
		_, isPub := m.p.(*packets.PublishPacket)
		if !ok || !s.oneByOne || !isPub || !outgoing(key) || m.result || s.oldestPublish() == m.seq {
			s.mu.Unlock()
			return m.p
		}
		deleted, release := s.deleted, s.release
		s.mu.Unlock()
		if timeout == nil {
			timeout = time.After(oneByOneWait)
		}
		select {
		case <-deleted:
		case <-release:
			return m.p
		case <-timeout:
			s.ResumeAll()
			return m.p
		}
	}
}

// oneByOneWait bounds how long Get waits for the acknowledgement of the
// message before.
const oneByOneWait = 10 * time.Second

// ResumeOneByOne makes the next resume() resend one message at a time.
func (s *Store) ResumeOneByOne() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.oneByOne = true
	s.release = make(chan struct{})
}

// ResumeAll ends ResumeOneByOne: the connection is lost, or the client stops.
func (s *Store) ResumeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.oneByOne {
		s.oneByOne = false
		close(s.release)
	}
}

// oldestPublish returns the order of the oldest outgoing PUBLISH, 0 if
// none; s.mu is held.
func (s *Store) oldestPublish() (order uint64) {
	for k, m := range s.msgs {
		if _, isPub := m.p.(*packets.PublishPacket); isPub && outgoing(k) && !m.result && (order == 0 || m.seq < order) {
			order = m.seq
		}
	}
	return order
}

// All returns the keys in the order they were first stored.
func (s *Store) All() []string {
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

func (s *Store) Del(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.msgs[key]
	if !ok {
		return
	}
	delete(s.msgs, key)
	if outgoing(key) && !m.result {
		close(s.deleted)
		s.deleted = make(chan struct{})
		s.acked.Add(1)
		s.out--
		if s.out == 0 {
			s.signal()
		}
	}
}

func (s *Store) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.msgs)
	if s.out > 0 {
		s.out = 0
		s.signal()
	}
}

// Strike counts a connection that ended with the oldest outgoing PUBLISH
// unacknowledged, and returns its order and how many connections have
// ended so.
func (s *Store) Strike() (order uint64, strikes int, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	order = s.oldestPublish()
	for k, m := range s.msgs {
		if m.seq == order && outgoing(k) {
			m.strikes++
			s.msgs[k] = m
			return order, m.strikes, true
		}
	}
	return 0, 0, false
}

// SetAside takes the PUBLISH of this order out of the resending: it
// returns its topic and payload and puts a PUBREL with its packet id in
// its place, which paho sends on resume instead. Every broker answers a
// PUBREL with a PUBCOMP (MQTT 3.1.1, 4.3.3), which completes the message's
// token and frees its id in paho, and deletes the entry here.
func (s *Store) SetAside(order uint64) (topic string, payload []byte, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, m := range s.msgs {
		pub, isPub := m.p.(*packets.PublishPacket)
		if m.seq != order || !isPub || !outgoing(k) {
			continue
		}
		rel := packets.NewControlPacket(packets.Pubrel).(*packets.PubrelPacket)
		rel.MessageID = pub.MessageID
		s.msgs[k] = stored{seq: m.seq, p: rel}
		return pub.TopicName, pub.Payload, true
	}
	return "", nil, false
}

// State returns the number of All calls so far, the outgoing messages
// awaiting acknowledgement, and a channel closed when either changes as
// described at changed.
func (s *Store) State() (lists uint64, out int, changed <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lists, s.out, s.changed
}

// signal wakes the waiters of State; s.mu is held.
func (s *Store) signal() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func outgoing(key string) bool { return strings.HasPrefix(key, "o.") }

// Acked is how many outgoing entries were deleted: PUBACK or PUBCOMP
// received (command results not counted).
func (s *Store) Acked() uint64 { return s.acked.Load() }
