package opcua

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/collectors/opcua/uaclient"
	"github.com/tagbridge/tagbridge/collectors/opcua/uasc"
)

// Link is how a session reaches its PLC, the collectors.PLCState.Link of
// its entries: the endpoint security in use, the server certificate's
// fingerprint, the secure channel and its token. The JSON names are the
// fields /status shows.
type Link struct {
	Policy            string `json:"policy,omitempty"` // security policy in use, e.g. "Basic256Sha256"
	Mode              string `json:"mode,omitempty"`   // message security mode in use
	ServerFingerprint string `json:"server_fingerprint,omitempty"`

	ChannelID            uint32    `json:"channel_id"`
	TokenID              uint32    `json:"token_id"`
	TokenRenewals        uint64    `json:"token_renewals"`
	TokenRenewalFailures uint64    `json:"token_renewal_failures"`
	LastRenewal          time.Time `json:"last_renewal,omitzero"`
}

// Security is the policy and mode in use, "Basic256Sha256 SignAndEncrypt";
// "" before the first connection.
func (l Link) Security() string { return strings.TrimSpace(l.Policy + " " + l.Mode) }

// LinkOf is the OPC UA link of an entry's status, live or read back from
// /status; zero when it has none.
func LinkOf(st collectors.PLCState) Link {
	switch l := st.Link.(type) {
	case Link:
		return l
	case collectors.RawLink:
		var out Link
		_ = json.Unmarshal(l, &out) // an entry of another protocol: zero
		return out
	}
	return Link{}
}

// updateLink changes the Link of the session's entries.
func (s *Session) updateLink(fn func(l *Link)) {
	s.states.UpdateLink(func(old collectors.Link) collectors.Link {
		l, _ := old.(Link)
		fn(&l)
		return l
	})
}

// chanWatch is what status last heard of the session's secure channel. The
// channel renews its tokens on its own clock (package uasc); the publish
// loop polls its counters into status and metrics.
type chanWatch struct {
	ch                 *uasc.Channel
	tokenID            uint32
	renewals, failures int
	skewWarned         bool // the PLC's token clock offset was logged
}

// watchChannel reports c's channel and token to status, counts renewals
// and failed renewals, and returns an error once the channel failed (a
// failed renewal ends it: the session then moves to a new channel).
func (s *Session) watchChannel(c *uaclient.Client) error {
	w := &s.chanWatch
	ch := c.Channel()
	st := ch.Stats()
	if w.ch != ch {
		*w = chanWatch{ch: ch, tokenID: st.TokenID, skewWarned: w.skewWarned}
		s.updateLink(func(l *Link) { l.ChannelID, l.TokenID = st.ChannelID, st.TokenID })
		s.noteTokenClock(st)
	}
	if renewed, failed := st.Renewals-w.renewals, st.RenewalFailures-w.failures; renewed > 0 || failed > 0 {
		w.renewals, w.failures = st.Renewals, st.RenewalFailures
		s.updateLink(func(l *Link) {
			l.TokenRenewals += uint64(renewed)
			l.TokenRenewalFailures += uint64(failed)
			if renewed > 0 {
				l.LastRenewal = st.LastRenewal
			}
		})
	}
	if st.TokenID != w.tokenID {
		w.tokenID = st.TokenID
		s.updateLink(func(l *Link) { l.ChannelID, l.TokenID = st.ChannelID, st.TokenID })
		s.log.Debug().Uint32("channel", st.ChannelID).Uint32("token", st.TokenID).Dur("lifetime_ms", st.Lifetime).Msg("secure channel token renewed")
	}
	select {
	case <-ch.Done():
		return ch.Err()
	default:
		return nil
	}
}

// noteTokenClock logs, once per session, a PLC clock that is off by more
// than the warning threshold as its tokens' CreatedAt tells: the channel's
// schedule runs on our clock and is not affected.
func (s *Session) noteTokenClock(st uasc.Stats) {
	if s.chanWatch.skewWarned || st.ServerClockOffset.Abs() <= s.plc.ClockSkewWarning.Duration() {
		return
	}
	s.chanWatch.skewWarned = true
	s.log.Info().Dur("clock_offset_ms", st.ServerClockOffset).Str("offset", st.ServerClockOffset.Round(time.Second).String()).
		Msg("the PLC's secure channel tokens carry a clock that differs from ours; renewals follow our own clock")
}
