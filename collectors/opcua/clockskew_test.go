package opcua

import (
	"strings"
	"testing"
	"time"

	"github.com/tagbridge/tagbridge/config"
	"github.com/tagbridge/tagbridge/scripts/faultproxy"
	"github.com/tagbridge/tagbridge/scripts/opcua-peer/peerproc"
	"github.com/tagbridge/tagbridge/scripts/open62541/o62proc"
)

const skewTrust = "trust: fingerprint_and_expiry, auto_accept: true, verify_hostname: false"

// skewPeer is a PLC of either stack with its clock shifted and 3 s tokens.
type skewPeer func(t *testing.T, offset time.Duration, security string) config.PLC

var skewPeers = map[string]skewPeer{
	"node-opcua": func(t *testing.T, offset time.Duration, security string) config.PLC {
		peer := peerproc.Start(t, peerproc.Options{Tags: 8, ClockOffset: offset, TokenLifetime: 3 * time.Second, MinTokenLifetime: time.Second})
		return exceptionBased(shortTokens(recoveryPLC(t, peer.Endpoint, security)))
	},
	"open62541": func(t *testing.T, offset time.Duration, security string) config.PLC {
		// Sampled on every write: a timer sampler starved of CPU on a
		// loaded machine skips a change now and then.
		srv := o62proc.Start(t, o62proc.Options{Tags: 8, Interval: 250 * time.Millisecond, ClockOffset: offset,
			Policies: []string{"None", "Basic256Sha256"}, TokenLifetime: 3 * time.Second})
		return exceptionBased(shortTokens(recoveryPLCTags(t, srv.Endpoint, security, o62Tags(8))))
	},
}

// A PLC clock 2 h off with 3 s tokens: renewals follow our clock (75 % of
// the lifetime from the response's arrival), so values flow on without a
// gap, on the one channel and session, under the race detector too.
func TestClockSkewKeepsValues(t *testing.T) {
	cases := []struct {
		name     string
		offset   time.Duration
		security string
	}{
		{"behind/None", -2 * time.Hour, ""},
		{"behind/Basic256Sha256 SignAndEncrypt", -2 * time.Hour, "policy: Basic256Sha256, mode: SignAndEncrypt, " + skewTrust},
		// The peer's own certificate would start in 2 h: policy None.
		{"ahead/None", 2 * time.Hour, ""},
	}
	for peerName, start := range skewPeers {
		for _, tc := range cases {
			t.Run(peerName+"/"+tc.name, func(t *testing.T) {
				r, s := startSessionValue(t, start(t, tc.offset, tc.security))
				waitUntil(t, "six token renewals", 60*time.Second, func() bool { return LinkOf(s.States().Snapshot()[0]).TokenRenewals >= 6 })
				r.shutdown(t)
				st := s.States().Snapshot()[0]
				if LinkOf(st).TokenRenewalFailures != 0 || st.Recoveries != 0 || st.Reconnects != 0 {
					t.Errorf("status %+v: want renewals on one channel, no failure, recovery or reconnect", st)
				}
				checkNoGap(t, r, 40)
				checkServerClockShifted(t, r, tc.offset)
				t.Logf("SKEW %s %s values=%d renewals=%d recoveries=%d reconnects=%d", peerName, tc.name,
					len(r.counterValues("int32_0001")), LinkOf(st).TokenRenewals, st.Recoveries, st.Reconnects)
			})
		}
	}
}

// checkServerClockShifted fails unless the peer's server timestamps are off
// by about offset: the test proves nothing if the clock was not shifted.
func checkServerClockShifted(t *testing.T, r *runSession, offset time.Duration) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	samples := r.samples["int32_0001"]
	for i := len(samples) - 1; i >= 0; i-- {
		st := samples[i].ServerTime
		if st.IsZero() {
			continue
		}
		// The last value came in during the last seconds of the test.
		if off := time.Until(st); (off - offset).Abs() > time.Minute {
			t.Errorf("the peer's last server timestamp %s is %s from now, want about %s (is libfaketime applied?)", st, off.Round(time.Second), offset)
		}
		return
	}
	t.Errorf("no server timestamp from the peer to check its clock offset")
}

// The PLC clock 2 h behind, and the connection cut twice: the session is
// reactivated on new channels, without a gap.
func TestClockSkewCutKeepsValues(t *testing.T) {
	peer := peerproc.Start(t, peerproc.Options{Tags: 8, ClockOffset: -2 * time.Hour,
		TokenLifetime: 3 * time.Second, MinTokenLifetime: time.Second})
	proxy := faultproxy.Start(t, strings.TrimPrefix(peer.Endpoint, "opc.tcp://"))
	r, s := startSessionValue(t, exceptionBased(shortTokens(recoveryPLC(t, "opc.tcp://"+proxy.Addr(), "policy: Basic256Sha256, mode: SignAndEncrypt, "+skewTrust))))
	renewals := func() uint64 { return LinkOf(s.States().Snapshot()[0]).TokenRenewals }
	for i := uint64(1); i <= 2; i++ {
		from := renewals()
		waitUntil(t, "three token renewals", 30*time.Second, func() bool { return renewals() >= from+3 })
		proxy.Cut()
		waitUntil(t, "a recovery", 30*time.Second, func() bool { return s.States().Snapshot()[0].Recoveries >= i })
	}
	from := renewals()
	waitUntil(t, "three token renewals after the cuts", 30*time.Second, func() bool { return renewals() >= from+3 })
	r.shutdown(t)
	if st := s.States().Snapshot()[0]; st.Reconnects != 0 || LinkOf(st).TokenRenewalFailures != 0 {
		t.Errorf("status %+v: want the session reactivated, no reconnect, no renewal failure", st)
	}
	checkNoGap(t, r, 100)
}

// exceptionBased asks node-opcua to report every change as it happens
// rather than sample on a timer: on a loaded machine its event loop stalls
// for a few hundred milliseconds now and then, its value timer then fires
// twice in a row and a sampling timer sees only the second value, a gap
// that is the peer's, not the agent's.
func exceptionBased(plc config.PLC) config.PLC {
	for i := range plc.Tags {
		plc.Tags[i].SamplingInterval = 0
	}
	return plc
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
