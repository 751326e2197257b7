package opcua

import (
	"fmt"
	"reflect"
	"sync"
	"time"
	"unsafe"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/uasc"
)

// gopcua v0.9.1 renews the secure channel token on its own and tells
// nobody: no hook, and a failed renewal is dropped. So the session looks
// at the channel's active token once a second, under the channel's own
// lock, through the unexported fields of uasc.SecureChannel. The layout is
// checked once against the pinned v0.9.1 (TestChannelLayout pins it); when
// it does not match, the counters are off and everything else works.
//
// The same look finds what breaks PLCs with a wrong clock: gopcua schedules
// a token's clean-up at the server's createdAt + 1.25 x lifetime, on our
// clock. With the server's clock behind, that fires at once and, because it
// indexes the per-channel instance list by token id, it deletes the token in
// use whenever the token id equals the channel id (node-opcua counts tokens
// per channel from 1, so channel N on its N-th token). Replies under that
// token then fail to verify (Sign, SignAndEncrypt) or, with no instance
// left, are dropped: the channel is dead though the TCP connection lives.
// The session sees the token missing from the list and moves to a new
// channel at once, keeping its session and values (see recover).

// chanLayout holds the offsets of the fields read.
type chanLayout struct {
	mu, instances, active              uintptr // in uasc.SecureChannel
	instancesType                      reflect.Type
	createdAt, lifetime, chanID, token uintptr // in uasc's channelInstance
	err                                error
}

var channelLayout = sync.OnceValue(func() chanLayout {
	var l chanLayout
	sc := reflect.TypeFor[uasc.SecureChannel]()
	field := func(t reflect.Type, name string, want reflect.Type, kind reflect.Kind) (reflect.StructField, bool) {
		f, ok := t.FieldByName(name)
		if !ok || len(f.Index) != 1 || (want != nil && f.Type != want) || (want == nil && f.Type.Kind() != kind) {
			l.err = fmt.Errorf("field %s.%s is missing or of another type", t.Name(), name)
			return f, false
		}
		return f, true
	}
	mu, ok1 := field(sc, "instancesMu", reflect.TypeFor[sync.Mutex](), 0)
	inst, ok2 := field(sc, "instances", nil, reflect.Map)
	active, ok3 := field(sc, "activeInstance", nil, reflect.Pointer)
	if !ok1 || !ok2 || !ok3 {
		return l
	}
	it := active.Type.Elem()
	if it.Kind() != reflect.Struct || it.Name() != "channelInstance" ||
		inst.Type.Key().Kind() != reflect.Uint32 || inst.Type.Elem() != reflect.SliceOf(active.Type) {
		l.err = fmt.Errorf("SecureChannel.instances or activeInstance has another type")
		return l
	}
	created, ok4 := field(it, "createdAt", reflect.TypeFor[time.Time](), 0)
	life, ok5 := field(it, "revisedLifetime", reflect.TypeFor[time.Duration](), 0)
	chanID, ok6 := field(it, "secureChannelID", reflect.TypeFor[uint32](), 0)
	token, ok7 := field(it, "securityTokenID", reflect.TypeFor[uint32](), 0)
	if !ok4 || !ok5 || !ok6 || !ok7 {
		return l
	}
	return chanLayout{
		mu: mu.Offset, instances: inst.Offset, active: active.Offset, instancesType: inst.Type,
		createdAt: created.Offset, lifetime: life.Offset, chanID: chanID.Offset, token: token.Offset,
	}
})

// tokenInfo is the state of a channel's active security token.
type tokenInfo struct {
	channelID, tokenID uint32
	createdAt          time.Time // the server's clock
	lifetime           time.Duration
	held               bool // still in the channel's instance list
}

// readToken reads sc's active token under sc's lock; ok is false before
// the channel opened or when the layout is unknown.
func readToken(sc *uasc.SecureChannel) (info tokenInfo, ok bool) {
	l := channelLayout()
	if l.err != nil || sc == nil {
		return info, false
	}
	base := unsafe.Pointer(sc)
	mu := (*sync.Mutex)(unsafe.Add(base, l.mu))
	mu.Lock()
	defer mu.Unlock()
	active := *(*unsafe.Pointer)(unsafe.Add(base, l.active))
	if active == nil {
		return info, false
	}
	info.channelID = *(*uint32)(unsafe.Add(active, l.chanID))
	info.tokenID = *(*uint32)(unsafe.Add(active, l.token))
	info.createdAt = *(*time.Time)(unsafe.Add(active, l.createdAt))
	info.lifetime = *(*time.Duration)(unsafe.Add(active, l.lifetime))
	m := reflect.NewAt(l.instancesType, unsafe.Add(base, l.instances)).Elem()
	if list := m.MapIndex(reflect.ValueOf(info.channelID)); list.IsValid() {
		for i := range list.Len() {
			if list.Index(i).UnsafePointer() == active {
				info.held = true
			}
		}
	}
	return info, true
}

// chanWatch follows one session's channel and token across polls.
type chanWatch struct {
	channelID, tokenID uint32
	seen               time.Time // when this token was first seen, our clock
	lifetime           time.Duration
	failed             bool // this token's renewal failure is counted
	warned             bool // the layout or clock explanation was logged
}

// watchChannel polls c's token: it records the channel and token, counts
// renewals and renewal failures, and reports the channel lost when gopcua
// dropped the token in use. fresh starts over on a new client.
func (s *Session) watchChannel(c *opcua.Client, fresh bool) error {
	w := &s.chanWatch
	if err := channelLayout().err; err != nil {
		if !w.warned {
			w.warned = true
			s.log.Warn().Err(err).Msg("gopcua's secure channel is not laid out as in v0.9.1: token counters are off")
		}
		return nil
	}
	info, ok := readToken(c.SecureChannel())
	if !ok {
		return nil
	}
	now := time.Now()
	switch {
	case fresh || info.channelID != w.channelID:
		w.channelID, w.tokenID, w.seen, w.lifetime, w.failed = info.channelID, info.tokenID, now, info.lifetime, false
		s.status.SetChannel(info.channelID, info.tokenID)
	case info.tokenID != w.tokenID:
		w.tokenID, w.seen, w.lifetime, w.failed = info.tokenID, now, info.lifetime, false
		s.status.SetChannel(info.channelID, info.tokenID)
		s.status.NoteRenewal(true, now)
		s.log.Debug().Uint32("channel", info.channelID).Uint32("token", info.tokenID).Dur("lifetime", info.lifetime).Msg("secure channel token renewed")
	case !w.failed && w.lifetime > 0 && now.Sub(w.seen) > w.lifetime:
		w.failed = true
		s.status.NoteRenewal(false, now)
		s.log.Warn().Uint32("channel", info.channelID).Uint32("token", info.tokenID).Dur("lifetime", w.lifetime).
			Msg("secure channel token not renewed within its lifetime")
	}
	if info.held {
		return nil
	}
	if !w.warned {
		w.warned = true
		skew := info.createdAt.Sub(now).Round(time.Second)
		s.log.Warn().Dur("clock_offset", skew).Str("offset", skew.String()).Uint32("channel", info.channelID).Uint32("token", info.tokenID).
			Msg("gopcua discarded the security token in use: it schedules a token's clean-up from the PLC's clock, " +
				"which is off; moving the session to a new channel each time this happens (no values are lost)")
	}
	return fmt.Errorf("%w: gopcua discarded security token %d of channel %d", errChannelLost, info.tokenID, info.channelID)
}
