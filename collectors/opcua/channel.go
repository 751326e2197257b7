package opcua

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/ua"
	"github.com/gopcua/opcua/uasc"
)

// gopcua v0.9.1 renews the secure channel token on its own and tells
// nobody: no hook, and a failed renewal is dropped. So the session looks at
// the channel's active token, under the channel's own lock, through the
// unexported fields of uasc.SecureChannel. The layout is checked once
// against the pinned v0.9.1 (TestChannelLayout pins it); when it does not
// match, nothing is read or repaired and the watchdog is the safety net.
//
// PLC clocks off by hours break gopcua's token bookkeeping (uasc
// secure_channel.go):
//   - every token goes into instances[channelID]; incoming messages are
//     verified against that list, newest first;
//   - scheduleExpiration waits until the server's createdAt + 1.25 x
//     lifetime on our clock (at once with the PLC's clock behind, hours
//     late with it ahead), then removes the token's id from
//     instances[tokenID]: the wrong key. When tokenID != channelID nothing
//     goes (old tokens pile up: a leak with short tokens); when tokenID ==
//     channelID the token in use goes. node-opcua numbers channels from 1
//     and tokens per channel from 1, so channel N on its N-th token.
//   - with the token in use gone, replies under it are verified against
//     older tokens only: with policy None any token passes, but an empty
//     list (channel 1's first token) finds none; with Sign or
//     SignAndEncrypt they fail (BadSecurityChecksFailed). gopcua drops such
//     replies silently while the TCP connection lives: requests time out
//     until the next renewal.
//
// A new channel does not help: its tokens count from 1 towards its new,
// higher id. So the session repairs the list instead (repairTokens): it
// puts the token in use back and keeps only the one before it. It looks
// once a second; every 5 ms while connecting, and once a token is seen
// cleaned up before its renewal (PLC clock behind by over a quarter of the
// lifetime). On channel 1, whose first token goes at once, it waits for
// the clean-up before the first request (settleToken), except inside
// gopcua's Connect (policy None: a first attempt may time out). Servers
// answer a request under the token it came with (node-opcua does), so the
// first reply under a new token comes a round trip after the renewal,
// mostly after the token is back. A reply lost anyway is a PublishResponse
// whose notification the gap check republishes, or a request that times
// out and moves the session to a new channel (recover): no value is lost.
// Not repaired: with the PLC's clock ahead, gopcua keeps a goroutine per
// token, waiting hours for its clean-up.

// chanLayout holds the offsets of the fields read.
type chanLayout struct {
	mu, instances, active              uintptr // in uasc.SecureChannel
	instancesType, activeType          reflect.Type
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
		mu: mu.Offset, instances: inst.Offset, active: active.Offset, instancesType: inst.Type, activeType: active.Type,
		createdAt: created.Offset, lifetime: life.Offset, chanID: chanID.Offset, token: token.Offset,
	}
})

// tokenInfo is the state of a channel's active security token.
type tokenInfo struct {
	channelID, tokenID uint32
	createdAt          time.Time // the server's clock
	lifetime           time.Duration
	dropped            bool // gopcua had removed it from the channel's list; put back
	pruned             int  // older tokens removed from the list
}

// keepTokens is how many tokens before the active one stay in a channel's
// list: the server answers a request under the token it came with, so
// replies to requests sent before a renewal come under the previous one.
const keepTokens = 1

// repairTokens reads sc's active token under sc's lock and repairs the
// channel's token list: the active token is put back when gopcua's
// clean-up removed it, and tokens older than keepTokens before it go. ok
// is false before the channel opened or when the layout is unknown.
func repairTokens(sc *uasc.SecureChannel) (info tokenInfo, ok bool) {
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
	key := reflect.ValueOf(info.channelID)
	list := m.MapIndex(key)
	n := 0
	if list.IsValid() {
		n = list.Len()
	}
	held := false
	for i := range n {
		held = held || list.Index(i).UnsafePointer() == active
	}
	if held && n <= keepTokens+1 {
		return info, true
	}
	info.dropped = !held
	// A new slice: gopcua hands its readers the slice itself, unlocked.
	fixed := reflect.MakeSlice(l.instancesType.Elem(), 0, keepTokens+1)
	for i := range n {
		if v := list.Index(i); v.UnsafePointer() != active {
			fixed = reflect.Append(fixed, v)
		}
	}
	if old := fixed.Len() - keepTokens; old > 0 {
		info.pruned = old
		fixed = fixed.Slice(old, fixed.Len())
	}
	fixed = reflect.Append(fixed, reflect.NewAt(l.activeType.Elem(), active))
	m.SetMapIndex(key, fixed)
	return info, true
}

// cleanedEarly tells whether gopcua's clean-up of this token falls within
// its lifetime on our clock, so before the renewal replaces it: the PLC's
// clock is behind ours by more than a quarter of the lifetime, and the
// guard must watch closely.
func (i tokenInfo) cleanedEarly(now time.Time) bool {
	return i.lifetime > 0 && i.createdAt.Add(i.lifetime*5/4).Before(now.Add(i.lifetime))
}

// guardEvery is how often a channel whose tokens expire at once is
// repaired: well within the time from a renewal to the server's first reply
// under the new token (a publishing interval or so).
const guardEvery = 5 * time.Millisecond

// guardTokens repairs c's channel every guardEvery until c closes or moves
// to another channel, counting the tokens it put back in restored.
func guardTokens(c *opcua.Client, sc *uasc.SecureChannel, restored *atomic.Int64) {
	t := time.NewTicker(guardEvery)
	defer t.Stop()
	for range t.C {
		if c.SecureChannel() != sc {
			return
		}
		if info, ok := repairTokens(sc); ok && info.dropped {
			restored.Add(1)
		}
	}
}

// guardDial repairs c's channel every guardEvery until stop is called:
// around connecting, before the session looks at the token itself. A
// channel whose id is 1 loses its first token at once with the PLC's
// clock behind, and every reply with it.
func guardDial(c *opcua.Client, restored *atomic.Int64) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(guardEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if info, ok := repairTokens(c.SecureChannel()); ok && info.dropped {
					restored.Add(1)
				}
			}
		}
	}()
	return func() { close(done); <-finished }
}

// settleToken runs after a channel opened and before its first request:
// when gopcua's clean-up of the first token is due at once and takes the
// token in use (token id == channel id: channel 1), it waits for it (a
// goroutine gopcua just started) and puts the token back. A round trip on a
// fast network beats the guard's 5 ms.
func settleToken(ctx context.Context, sc *uasc.SecureChannel, restored *atomic.Int64) {
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	deadline := time.Now().Add(time.Second)
	for {
		info, ok := repairTokens(sc)
		if info.dropped {
			restored.Add(1)
		}
		now := time.Now()
		if !ok || info.dropped || info.tokenID != info.channelID ||
			!info.createdAt.Add(info.lifetime*5/4).Before(now) || now.After(deadline) {
			return
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

// getEndpoints is opcua.GetEndpoints with the channel guarded (guardDial).
func getEndpoints(ctx context.Context, endpoint string, restored *atomic.Int64) ([]*ua.EndpointDescription, error) {
	c, err := opcua.NewClient(endpoint, opcua.DialTimeout(dialTimeout), opcua.AutoReconnect(false))
	if err != nil {
		return nil, err
	}
	stop := guardDial(c, restored)
	defer stop()
	if err := c.Dial(ctx); err != nil {
		return nil, err
	}
	defer c.Close(ctx)
	settleToken(ctx, c.SecureChannel(), restored)
	res, err := c.GetEndpoints(ctx)
	if err != nil {
		return nil, err
	}
	return res.Endpoints, nil
}

// chanWatch follows one session's channel and token across polls.
type chanWatch struct {
	channelID, tokenID uint32
	seen               time.Time // when this token was first seen, our clock
	lifetime           time.Duration
	failed             bool // this token's renewal failure is counted
	warned             bool // the layout explanation was logged
	skewWarned         bool // the clock explanation was logged
	guarded            *uasc.SecureChannel
	restored           atomic.Int64 // tokens put back, by the guard and the poll
	reported           int64        // restored at the last debug log
}

// watchChannel polls c's token: it records the channel and token, counts
// renewals and renewal failures, and repairs gopcua's token list (see the
// top of this file). fresh starts over on a new client.
func (s *Session) watchChannel(c *opcua.Client, fresh bool) error {
	w := &s.chanWatch
	if err := channelLayout().err; err != nil {
		if !w.warned {
			w.warned = true
			s.log.Warn().Err(err).Msg("gopcua's secure channel is not laid out as in v0.9.1: token counters are off")
		}
		return nil
	}
	sc := c.SecureChannel()
	info, ok := repairTokens(sc)
	if !ok {
		return nil
	}
	now := time.Now()
	if info.dropped {
		w.restored.Add(1)
	}
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
	if w.guarded != sc && info.cleanedEarly(now) {
		w.guarded = sc
		go guardTokens(c, sc, &w.restored)
	}
	restored := w.restored.Load()
	if restored == w.reported {
		return nil
	}
	w.reported = restored
	skew := info.createdAt.Sub(now).Round(time.Second)
	ev := s.log.Debug()
	if !w.skewWarned {
		w.skewWarned = true
		ev = s.log.Warn()
	}
	ev.Dur("clock_offset", skew).Str("offset", skew.String()).Uint32("channel", info.channelID).Uint32("token", info.tokenID).
		Int64("restored", restored).
		Msg("gopcua discarded the security token in use, as it schedules a token's clean-up from the PLC's clock, which is off; " +
			"the token is put back each time (no values are lost)")
	return nil
}
