package opcua

import (
	"context"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/ua"
	"github.com/gopcua/opcua/uasc"

	"github.com/tagbridge/tagbridge/scripts/faultproxy"
	"github.com/tagbridge/tagbridge/scripts/opcua-peer/peerproc"
)

// The layout that channel.go reads and repairs is gopcua v0.9.1's.
func TestChannelLayout(t *testing.T) {
	if err := channelLayout().err; err != nil {
		t.Fatal(err)
	}
}

const skewTrust = "trust: fingerprint_and_expiry, auto_accept: true, verify_hostname: false"

// A PLC clock 2 h off with 3 s tokens: gopcua's clean-up of each token is
// due at once (behind) or hours late (ahead); values flow on without a
// gap, on the one channel and session.
func TestClockSkewKeepsValues(t *testing.T) {
	skipShortTokensUnderRace(t)
	cases := []struct {
		name     string
		offset   time.Duration
		security string
		restored bool // gopcua discards the token in use: put back, and said once
	}{
		{"behind/None", -2 * time.Hour, "", true},
		{"behind/Basic256Sha256 SignAndEncrypt", -2 * time.Hour, "policy: Basic256Sha256, mode: SignAndEncrypt, " + skewTrust, true},
		// The peer's own certificate would start in 2 h: policy None.
		{"ahead/None", 2 * time.Hour, "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			peer := peerproc.Start(t, peerproc.Options{Tags: 8, ClockOffset: tc.offset,
				TokenLifetime: 3 * time.Second, MinTokenLifetime: time.Second})
			r, s := startSessionValue(t, shortTokens(recoveryPLC(t, peer.Endpoint, tc.security)))
			// node-opcua numbers tokens per channel from 1: past token 6
			// every channel up to id 6 has met token id == channel id.
			waitUntil(t, "six token renewals", 60*time.Second, func() bool { return s.Status().Snapshot()[0].TokenRenewals >= 6 })
			r.shutdown(t)
			st := s.Status().Snapshot()[0]
			if st.TokenRenewalFailures != 0 || st.Recoveries != 0 || st.Reconnects != 0 {
				t.Errorf("status %+v: want renewals on one channel, no failure, recovery or reconnect", st)
			}
			warns := strings.Count(r.logs.String(), "gopcua discarded the security token in use")
			if restored := s.chanWatch.restored.Load(); tc.restored && (restored == 0 || warns == 0) {
				t.Errorf("%d tokens put back, %d log lines: want the token in use put back and said", restored, warns)
			} else if !tc.restored && restored != 0 {
				t.Errorf("%d tokens put back with the PLC's clock ahead, want none", restored)
			}
			if n := countLines(r.logs.String(), `"level":"warn"`, "gopcua discarded the security token"); tc.restored && n != 1 {
				t.Errorf("%d warnings about discarded tokens, want one per session:\n%s", n, r.logs.String())
			}
			checkNoGap(t, r, 100)
		})
	}
}

// The same PLC clock 2 h behind, and the connection cut twice: the session
// is reactivated on new channels, whose tokens gopcua discards in turn,
// without a gap.
func TestClockSkewCutKeepsValues(t *testing.T) {
	skipShortTokensUnderRace(t)
	peer := peerproc.Start(t, peerproc.Options{Tags: 8, ClockOffset: -2 * time.Hour,
		TokenLifetime: 3 * time.Second, MinTokenLifetime: time.Second})
	proxy := faultproxy.Start(t, strings.TrimPrefix(peer.Endpoint, "opc.tcp://"))
	r, s := startSessionValue(t, shortTokens(recoveryPLC(t, "opc.tcp://"+proxy.Addr(), "policy: Basic256Sha256, mode: SignAndEncrypt, "+skewTrust)))
	renewals := func() uint64 { return s.Status().Snapshot()[0].TokenRenewals }
	for i := uint64(1); i <= 2; i++ {
		from := renewals()
		waitUntil(t, "three token renewals", 30*time.Second, func() bool { return renewals() >= from+3 })
		proxy.Cut()
		waitUntil(t, "a recovery", 30*time.Second, func() bool { return s.Status().Snapshot()[0].Recoveries >= i })
	}
	from := renewals()
	waitUntil(t, "three token renewals after the cuts", 30*time.Second, func() bool { return renewals() >= from+3 })
	r.shutdown(t)
	if st := s.Status().Snapshot()[0]; st.Reconnects != 0 || st.TokenRenewalFailures != 0 {
		t.Errorf("status %+v: want the session reactivated, no reconnect, no renewal failure", st)
	}
	if n := s.chanWatch.restored.Load(); n < 2 {
		// Channel 1 (GetEndpoints) on its first token, and the
		// session's channels 3 and 4 on their third and fourth.
		t.Errorf("%d tokens in use put back, want at least two", n)
	}
	checkNoGap(t, r, 100)
}

// countLines counts the lines of s that contain every one of subs.
func countLines(s string, subs ...string) int {
	n := 0
	for _, line := range strings.Split(s, "\n") {
		all := true
		for _, sub := range subs {
			all = all && strings.Contains(line, sub)
		}
		if all {
			n++
		}
	}
	return n
}

// tokenIDs lists the tokens in sc's list for its channel, under sc's lock.
func tokenIDs(t *testing.T, sc *uasc.SecureChannel) []uint32 {
	t.Helper()
	l := channelLayout()
	base := unsafe.Pointer(sc)
	mu := (*sync.Mutex)(unsafe.Add(base, l.mu))
	mu.Lock()
	defer mu.Unlock()
	active := *(*unsafe.Pointer)(unsafe.Add(base, l.active))
	if active == nil {
		t.Fatal("no active token")
	}
	list := reflect.NewAt(l.instancesType, unsafe.Add(base, l.instances)).Elem().
		MapIndex(reflect.ValueOf(*(*uint32)(unsafe.Add(active, l.chanID))))
	var ids []uint32
	for i := range list.Len() {
		ids = append(ids, *(*uint32)(unsafe.Add(list.Index(i).UnsafePointer(), l.token)))
	}
	return ids
}

// gopcua never removes a channel's old tokens (it looks them up under the
// token id); repairTokens keeps the one before the active one.
func TestRepairTokensPrunesOldTokens(t *testing.T) {
	skipShortTokensUnderRace(t)
	peer := peerproc.Start(t, peerproc.Options{Tags: 1, TokenLifetime: 2 * time.Second, MinTokenLifetime: time.Second})
	c, err := opcua.NewClient(peer.Endpoint, opcua.SecurityMode(ua.MessageSecurityModeNone),
		opcua.Lifetime(2*time.Second), opcua.AutoReconnect(false))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Dial(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.WithoutCancel(t.Context())) })
	sc := c.SecureChannel()
	waitUntil(t, "four tokens", 30*time.Second, func() bool { return len(tokenIDs(t, sc)) >= 4 })
	info, ok := repairTokens(sc)
	ids := tokenIDs(t, sc)
	if !ok || info.dropped || info.pruned < 2 || len(ids) != 2 || ids[1] != info.tokenID || ids[0] != info.tokenID-1 {
		t.Errorf("after repair: %+v, tokens %v; want the active token %d and the one before", info, ids, info.tokenID)
	}
	// The channel still works on the tokens that follow.
	waitUntil(t, "a renewal", 30*time.Second, func() bool { return slices.Max(tokenIDs(t, sc)) > info.tokenID })
	if _, err := c.GetEndpoints(t.Context()); err != nil {
		t.Errorf("get endpoints after the repair: %v", err)
	}
}
