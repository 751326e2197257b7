package main

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// stats counts and checks what the subscriber receives.
type stats struct {
	mu            sync.Mutex
	want          int
	first         map[string]struct{} // by tagKey
	lastFirst     time.Time           // arrival of the last tag's first value
	last          map[string]int64    // Int32 counters, by tagKey
	lastMsg       map[string]int64    // the message that brought last's value, by tagKey
	msgs          int64               // messages received: the current one's number
	msgValues     int                 // values in the current message
	gaps, dups    int64
	inWindow      bool
	windowCount   int64
	latencies     []float64 // ms, in the window
	parseErrs     int64
	firstParseErr string
	firstDups     []dupNote // the first few duplicates, to be traced
}

// dupNote is one duplicate: the tag, the highest value seen before it and
// its own, when it arrived, and the messages (numbered in arrival order,
// with their number of values) that brought the first copy and this one:
// a whole message received twice shows as notes with the same two
// messages, of the same size.
type dupNote struct {
	key          string
	prev, value  int64
	arrived      time.Time
	inWindow     bool
	prevMsg, msg int64
	msgValues    int
}

const maxDupNotes = 10

func newStats(want int) *stats {
	return &stats{want: want, first: make(map[string]struct{}, want), last: make(map[string]int64, want), lastMsg: make(map[string]int64, want)}
}

func (s *stats) seenCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.first)
}

func (s *stats) window(on bool) {
	s.mu.Lock()
	s.inWindow = on
	s.mu.Unlock()
}

// message is what the harness needs of a payload. tagbridge writes the keys
// in a fixed order ({"plc":..,"tag":..,"node":..,"value":..,...,
// "source_time":..}); a scan for them keeps the subscriber cheap enough not
// to compete with tagbridge for the CPU at 100,000 values/s.
type message struct {
	key        []byte // from the plc name to the end of the tag name: unique per tag
	tag        []byte
	value      []byte // the JSON value
	sourceTime time.Time
}

var (
	plcField    = []byte(`"plc":"`)
	tagField    = []byte(`","tag":"`)
	valueField  = []byte(`,"value":`)
	typeField   = []byte(`,"type":"`)
	sourceField = []byte(`"source_time":"`)
)

func parseMessage(b []byte) (message, error) {
	var m message
	i := bytes.Index(b, plcField)
	if i < 0 {
		return m, errors.New("no plc")
	}
	rest := b[i+len(plcField):]
	j := bytes.Index(rest, tagField)
	if j < 0 {
		return m, errors.New("no tag after plc")
	}
	tag := rest[j+len(tagField):]
	k := bytes.IndexByte(tag, '"')
	if k < 0 {
		return m, errors.New("unterminated tag")
	}
	m.tag = tag[:k]
	m.key = rest[:j+len(tagField)+k]
	if v := bytes.Index(b, valueField); v >= 0 {
		val := b[v+len(valueField):]
		if e := bytes.Index(val, typeField); e >= 0 {
			m.value = val[:e]
		}
	}
	if m.value == nil {
		return m, errors.New("no value")
	}
	if t := bytes.Index(b, sourceField); t >= 0 {
		ts := b[t+len(sourceField):]
		if e := bytes.IndexByte(ts, '"'); e >= 0 {
			st, err := time.Parse(time.RFC3339Nano, string(ts[:e]))
			if err != nil {
				return m, fmt.Errorf("source_time: %w", err)
			}
			m.sourceTime = st
		}
	}
	return m, nil
}

var (
	int32Prefix = []byte("int32_")
	objectStart = []byte(`{"plc":`)
)

// add counts and checks one message: a JSON object, or with mqtt.batch an
// array of them.
func (s *stats) add(body []byte, arrived time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs++
	if len(body) == 0 || body[0] != '[' {
		s.msgValues = 1
		s.addOne(body, arrived)
		return
	}
	s.msgValues = bytes.Count(body, objectStart)
	// The objects of an array, split where the next one starts: plcsim's
	// strings ("v123") never hold the key sequence.
	rest := body[1:]
	if !bytes.HasPrefix(rest, objectStart) {
		s.parseErr(errors.New("empty array, or not an array of objects"), body)
		return
	}
	for {
		i := bytes.Index(rest[1:], objectStart)
		if i < 0 {
			s.addOne(rest, arrived)
			return
		}
		s.addOne(rest[:i+1], arrived)
		rest = rest[i+1:]
	}
}

func (s *stats) parseErr(err error, body []byte) {
	s.parseErrs++
	if s.firstParseErr == "" {
		s.firstParseErr = fmt.Sprintf("%v: %.200s", err, body)
	}
}

// addOne counts one object; s.mu is held.
func (s *stats) addOne(body []byte, arrived time.Time) {
	m, err := parseMessage(body)
	if err != nil {
		s.parseErr(err, body)
		return
	}
	if _, ok := s.first[string(m.key)]; !ok {
		s.first[string(m.key)] = struct{}{}
		s.lastFirst = arrived
	}
	if bytes.HasPrefix(m.tag, int32Prefix) {
		v, err := strconv.ParseInt(string(m.value), 10, 64)
		if err != nil {
			s.parseErr(fmt.Errorf("int32 value: %w", err), body)
			return
		}
		prev, ok := s.last[string(m.key)]
		if ok {
			switch d := v - prev; {
			case d > 1:
				s.gaps += d - 1
			case d < 1:
				s.dups++ // a repeat, or an older value after a newer one
				if len(s.firstDups) < maxDupNotes {
					s.firstDups = append(s.firstDups, dupNote{string(m.key), prev, v, arrived, s.inWindow, s.lastMsg[string(m.key)], s.msgs, s.msgValues})
				}
			}
		}
		if !ok || v > prev {
			s.last[string(m.key)] = v
			s.lastMsg[string(m.key)] = s.msgs
		}
	}
	if s.inWindow {
		s.windowCount++
		if !m.sourceTime.IsZero() {
			s.latencies = append(s.latencies, float64(arrived.Sub(m.sourceTime))/float64(time.Millisecond))
		}
	}
}

func subscribe(addr, clientID string, st *stats) (mqtt.Client, error) {
	o := mqtt.NewClientOptions().
		AddBroker("tcp://" + addr).
		SetClientID(clientID).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetOrderMatters(true).
		SetConnectTimeout(10 * time.Second)
	c := mqtt.NewClient(o)
	if t := c.Connect(); !t.WaitTimeout(10*time.Second) || t.Error() != nil {
		return nil, fmt.Errorf("subscriber: connect %s: %v", addr, t.Error())
	}
	t := c.Subscribe("tagbridge/#", 1, func(_ mqtt.Client, m mqtt.Message) {
		if strings.HasSuffix(m.Topic(), "/status") {
			return // the agent's and the PLCs' status, not values
		}
		st.add(m.Payload(), time.Now())
	})
	if !t.WaitTimeout(10*time.Second) || t.Error() != nil {
		c.Disconnect(250)
		return nil, fmt.Errorf("subscriber: subscribe: %v", t.Error())
	}
	return c, nil
}
