package opcua

import (
	"time"

	"github.com/tagbridge/tagbridge/collectors/opcua/uaclient"
	"github.com/tagbridge/tagbridge/collectors/opcua/uasc"
)

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
		s.status.SetChannel(st.ChannelID, st.TokenID)
		s.noteTokenClock(st)
	}
	for ; w.renewals < st.Renewals; w.renewals++ {
		s.status.NoteRenewal(true, st.LastRenewal)
	}
	for ; w.failures < st.RenewalFailures; w.failures++ {
		s.status.NoteRenewal(false, time.Now())
	}
	if st.TokenID != w.tokenID {
		w.tokenID = st.TokenID
		s.status.SetChannel(st.ChannelID, st.TokenID)
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
