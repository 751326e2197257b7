package publish

import (
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/internal/testkit"
	"github.com/tagbridge/tagbridge/payload"
	"github.com/tagbridge/tagbridge/scripts/faultproxy"
)

// holdingFormat runs hold, once armed, on Run's goroutine when the next
// DDATA goes out (in pump, after newConnection): the test acts there
// while Run is busy.
type holdingFormat struct {
	payload.Format
	hold atomic.Pointer[func()]
}

func (f *holdingFormat) Outgoing(topic string, b []byte) []byte {
	if strings.Contains(topic, "/DDATA/") {
		if h := f.hold.Swap(nil); h != nil {
			(*h)()
		}
	}
	return f.Format.Outgoing(topic, b)
}

// TestFenceAnsweredThenReconnect: the broker answers a fence, then the
// connection breaks and paho reconnects, all before Run has taken the
// answer (Run's select may choose a pump first, which then sees the new
// connection). The spool is read again from the first record the fence
// did not confirm: those it confirmed are the broker's, and sending them
// again would make duplicates. Real Mosquitto, a real fence and reconnect;
// only the select's choice is made by the test, calling newConnection as
// that pump would.
func TestFenceAnsweredThenReconnect(t *testing.T) {
	b := testkit.StartBroker(t)
	proxy := faultproxy.Start(t, strings.TrimPrefix(b.URL(), "tcp://"))
	cfg := testkit.SparkplugConfig("tcp://" + proxy.Addr())
	log, sink := testkit.NewLogger(t, "publisher")
	p := newPublisher(t, cfg, log)
	format := &holdingFormat{Format: p.format}
	p.format = format
	s := &spStream{t: t, msgs: testkit.SubscribeAll(t, b.URL(), "spBv1.0/#", 1)}
	in := make(chan collectors.Event)
	done := start(t, p, in)

	s.expect("NBIRTH", "")
	in <- collectors.Event{State: &collectors.PLCState{PLC: "press1", State: collectors.StateStreaming, Since: time.Now()}}
	in <- collectors.Event{Batch: collectors.Batch{testkit.Sample("temperature", 0.0, collectors.TypeDouble)}}
	s.expect("DBIRTH", "press1")
	waitStats(t, p, "the first value confirmed", wait, func(st Stats) bool { return st.Spooled == 0 })

	// Values written to a frozen link: the fence written after them waits
	// for its answer.
	proxy.Freeze()
	const n = 20
	for i := 1; i <= n; i++ {
		in <- collectors.Event{Batch: collectors.Batch{testkit.Sample("temperature", float64(i), collectors.TypeDouble)}}
	}
	waitStats(t, p, "the frozen values written", wait, func(st Stats) bool { return st.Published >= n+1 && st.InFlight == 0 })

	checked := make(chan string, 1)
	hold := func() {
		deadline := time.Now().Add(wait)
		fenced := p.fencedTo
		proxy.Thaw() // the held records reach the broker, and the fence its answer
		for p.confirmed.Load() <= fenced {
			if time.Now().After(deadline) {
				checked <- "the fence was not answered"
				return
			}
			time.Sleep(time.Millisecond)
		}
		confirmed := p.confirmed.Load()
		old := p.readConn
		proxy.Cut()
		for p.conn.Load() == old || !p.linkUp() {
			if time.Now().After(deadline) {
				checked <- "no new connection"
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		p.newConnection() // as the pump Run's select chose would
		if acked := p.spool.Next() - p.spool.Stats().Values; acked != confirmed {
			checked <- "the spool is read again from record " + itoa(acked) + ", but the broker confirmed every record before " + itoa(confirmed)
			return
		}
		checked <- ""
	}
	format.hold.Store(&hold)
	in <- collectors.Event{Batch: collectors.Batch{testkit.Sample("temperature", float64(n+1), collectors.TypeDouble)}}
	select {
	case msg := <-checked:
		if msg != "" {
			t.Fatal(msg)
		}
	case <-time.After(2 * wait):
		t.Fatal("the held DDATA never went out")
	}
	sink.WaitFor(t, wait, "connection to broker lost")
	close(in)
	if err := result(t, done); err != nil {
		t.Fatal(err)
	}
	if st := p.Stats(); st.Spooled != 0 {
		t.Errorf("Stats = %+v: want none spooled after a clean stop", st)
	}
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }
