package opcua

import (
	"strings"
	"testing"
	"time"

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
			r, s := startSessionValue(t, recoveryPLC(t, peer.Endpoint, tc.security))
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
