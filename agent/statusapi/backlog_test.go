package statusapi

import (
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tagbridge/tagbridge/config"
)

// TestBacklogAge: the age of the oldest waiting value, from the counters
// sampled each second, as values flow, then as a frozen broker stops
// acknowledging while "connected".
func TestBacklogAge(t *testing.T) {
	t0 := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	var b backlog
	steps := []struct {
		sec       int
		published uint64
		spooled   uint64
		want      time.Duration
	}{
		{0, 0, 0, 0},
		{1, 0, 10, 0},                   // 10 arrived since t0+0: the oldest came at t0+1 at the latest
		{2, 10, 0, 0},                   // all out
		{3, 10, 5, 0},                   // 5 more, just now
		{4, 12, 8, time.Second},         // 3 of the 5 from t0+3 still wait, 5 new
		{5, 15, 10, time.Second},        // those from t0+3 out; the oldest of t0+4's wait... arrived by t0+4
		{30, 15, 260, 26 * time.Second}, // frozen: nothing acknowledged since, the oldest from t0+4
		{31, 275, 0, 0},                 // thawed
		{32, 0, 3, 0},                   // a new publisher after a reload: counters from 0
		{40, 0, 50, 8 * time.Second},
	}
	for _, s := range steps {
		got := b.observe(t0.Add(time.Duration(s.sec)*time.Second), Broker{Published: s.published, SpoolValues: s.spooled})
		if got != s.want {
			t.Errorf("t0+%ds (published %d, waiting %d): age %s, want %s", s.sec, s.published, s.spooled, got, s.want)
		}
	}
	if len(b.samples) > 2 {
		t.Errorf("%d samples kept with nothing waiting, want at most 2", len(b.samples))
	}
}

// TestBacklogHealth: a connected broker that acknowledges nothing for
// longer than the maximum backlog age makes the agent unhealthy.
func TestBacklogHealth(t *testing.T) {
	src := healthySource()
	src.broker = Broker{Connected: true, Published: 100, SpoolValues: 1640}
	s, err := New("127.0.0.1:0", config.Secret(token), "ipc01", src, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.ln.Close()
	s.SetMaxBacklogAge(30 * time.Second)
	s.backlog = backlog{} // New's own look at the metrics sampled "now" already
	s.backlog.observe(time.Now().Add(-43*time.Second), Broker{Published: 100, SpoolValues: 1})
	st := s.Snapshot()
	if st.Healthy || st.Broker.OldestUnsentSeconds < 43 || len(st.Problems) != 1 ||
		!strings.HasPrefix(st.Problems[0], "broker: the oldest value not yet delivered waits for 43s (more than agent.status_max_backlog_age, 30s)") {
		t.Errorf("healthy %v, oldest %.1fs, problems %q; want unhealthy at 43 s with the backlog named", st.Healthy, st.Broker.OldestUnsentSeconds, st.Problems)
	}
	s.SetMaxBacklogAge(0)
	if st := s.Snapshot(); !st.Healthy {
		t.Errorf("with no maximum: problems %q, want healthy", st.Problems)
	}
}
