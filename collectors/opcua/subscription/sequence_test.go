package subscription

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gopcua/opcua/ua"
	"github.com/rs/zerolog"
)

const testSub = 7 // the subscription id the scripted server grants

// scripted is a server as far as the engine sees one: it answers
// Republish from what it still holds, and Publish from a queue the test
// fills (see run_test.go).
type scripted struct {
	mu          sync.Mutex
	held        map[uint32]bool // sequence numbers Republish returns with data
	empty       map[uint32]bool // ... returns without data
	refuse      ua.StatusCode   // Republish of any other number; 0: BadMessageNotAvailable
	republished []uint32
	publishes   chan *publishCall // nil: Publish blocks until ctx ends
}

type publishCall struct {
	req    *ua.PublishRequest
	answer chan publishAnswer
}

type publishAnswer struct {
	res *ua.PublishResponse
	err error
}

func (sv *scripted) Send(ctx context.Context, req ua.Request) (ua.Response, error) {
	switch r := req.(type) {
	case *ua.RepublishRequest:
		sv.mu.Lock()
		defer sv.mu.Unlock()
		n := r.RetransmitSequenceNumber
		sv.republished = append(sv.republished, n)
		switch {
		case r.SubscriptionID != testSub:
			return nil, ua.StatusBadSubscriptionIDInvalid
		case sv.held[n]:
			return &ua.RepublishResponse{NotificationMessage: dataMessage(n)}, nil
		case sv.empty[n]:
			return &ua.RepublishResponse{NotificationMessage: &ua.NotificationMessage{SequenceNumber: n}}, nil
		case sv.refuse != 0:
			return nil, sv.refuse
		default:
			return nil, ua.StatusBadMessageNotAvailable
		}
	case *ua.PublishRequest:
		if sv.publishes == nil {
			<-ctx.Done()
			return nil, ctx.Err()
		}
		call := &publishCall{req: r, answer: make(chan publishAnswer, 1)}
		select {
		case sv.publishes <- call:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		select {
		case a := <-call.answer:
			return a.res, a.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return nil, ua.StatusBadServiceUnsupported
}

// dataMessage is notification seq, whose one item carries seq as its
// client handle, so a delivery names the notification it came from.
func dataMessage(seq uint32) *ua.NotificationMessage {
	return &ua.NotificationMessage{
		SequenceNumber: seq,
		NotificationData: []*ua.ExtensionObject{{Value: &ua.DataChangeNotification{
			MonitoredItems: []*ua.MonitoredItemNotification{{ClientHandle: seq}},
		}}},
	}
}

// recorder collects what an engine hands on and logs.
type recorder struct {
	delivered []uint32
	alive     int
	log       bytes.Buffer
}

func newTestEngine(rec *recorder) *Engine {
	e := New(Config{
		Log: zerolog.New(&rec.log),
		Deliver: func(ctx context.Context, n *ua.DataChangeNotification) {
			rec.delivered = append(rec.delivered, n.MonitoredItems[0].ClientHandle)
		},
		Alive: func() { rec.alive++ },
	})
	e.subs = []*sub{{id: testSub, interval: 50 * time.Millisecond}}
	return e
}

// step is one thing that happens to the engine: a PublishResponse of
// subscription testSub (data, or a keep-alive announcing next), or time
// passing beyond the gap wait.
type step struct {
	data      uint32
	keepAlive uint32
	avail     []uint32
	sleep     time.Duration // then the gap check runs
}

func data(seq uint32, avail ...uint32) step       { return step{data: seq, avail: avail} }
func keepAlive(next uint32, avail ...uint32) step { return step{keepAlive: next, avail: avail} }

func sleep(d time.Duration) step { return step{sleep: d} }

var waitGap = sleep(minGapWait)

func seqs(from, to uint32) []uint32 {
	var s []uint32
	for n := from; n <= to; n++ {
		s = append(s, n)
	}
	return s
}

func (st step) response() *ua.PublishResponse {
	msg := &ua.NotificationMessage{SequenceNumber: st.keepAlive}
	if st.data != 0 {
		msg = dataMessage(st.data)
	}
	return &ua.PublishResponse{SubscriptionID: testSub, NotificationMessage: msg, AvailableSequenceNumbers: st.avail}
}

func ackedSeqs(acks []*ua.SubscriptionAcknowledgement) []uint32 {
	var s []uint32
	for _, a := range acks {
		s = append(s, a.SequenceNumber)
	}
	return s
}

func TestSequence(t *testing.T) {
	const far = 4_000_000_000
	tests := []struct {
		name        string
		start       uint32 // last number handed on before the steps (as after a move)
		reactivated bool
		held        []uint32
		empty       []uint32
		refuse      ua.StatusCode
		steps       []step

		delivered   []uint32
		acked       []uint32
		republished []uint32
		lost        uint64
		logs        map[string]int // message fragment: lines wanted
	}{
		{
			name:      "in order",
			steps:     []step{data(1), data(2), data(3)},
			delivered: []uint32{1, 2, 3}, acked: []uint32{1, 2, 3},
		},
		{
			name:      "answers out of order wait for the missing number",
			steps:     []step{data(1), data(3), data(2)},
			delivered: []uint32{1, 2, 3}, acked: []uint32{1, 2, 3},
		},
		{
			name:      "a gap is given time before republishing",
			held:      []uint32{2},
			steps:     []step{data(1), data(3, 2, 3)},
			delivered: []uint32{1}, acked: []uint32{1},
		},
		{
			name:      "a gap waits a little less than the gap wait",
			held:      []uint32{2},
			steps:     []step{data(1), data(3, 2, 3), sleep(minGapWait - time.Millisecond)},
			delivered: []uint32{1}, acked: []uint32{1},
		},
		{
			name:      "a gap is republished once the gap wait passed",
			held:      []uint32{2},
			steps:     []step{data(1), data(3, 2, 3), sleep(minGapWait - time.Millisecond), sleep(time.Millisecond)},
			delivered: []uint32{1, 2, 3}, acked: []uint32{1, 2, 3}, republished: []uint32{2},
		},
		{
			name:      "a gap is republished in order",
			held:      []uint32{2},
			steps:     []step{data(1), data(3, 2, 3), waitGap},
			delivered: []uint32{1, 2, 3}, acked: []uint32{1, 2, 3}, republished: []uint32{2},
		},
		{
			name:      "a gap closes once every request in flight was answered",
			held:      []uint32{2},
			steps:     []step{data(1), data(3, 2, 3), keepAlive(4, 2, 3), keepAlive(4, 2, 3), keepAlive(4, 2, 3), keepAlive(4, 2, 3)},
			delivered: []uint32{1, 2, 3}, acked: []uint32{1, 2, 3}, republished: []uint32{2},
		},
		{
			name:      "a number the server does not hold is lost without asking",
			steps:     []step{data(1), data(3, 3), waitGap},
			delivered: []uint32{1, 3}, acked: []uint32{1, 3}, lost: 1,
			logs: map[string]int{"notifications lost": 1},
		},
		{
			name:      "a republish the server refuses is lost",
			refuse:    ua.StatusBadSequenceNumberUnknown,
			steps:     []step{data(1), data(3, 2, 3), waitGap},
			delivered: []uint32{1, 3}, acked: []uint32{1, 3}, republished: []uint32{2}, lost: 1,
			logs: map[string]int{`"status":"BadSequenceNumberUnknown"`: 1},
		},
		{
			name:      "an empty republished message loses nothing",
			empty:     []uint32{2},
			steps:     []step{data(1), data(3, 2, 3), waitGap},
			delivered: []uint32{1, 3}, acked: []uint32{1, 3}, republished: []uint32{2},
		},
		{
			name:      "a keep-alive announces a gap",
			held:      []uint32{2, 3},
			steps:     []step{data(1), keepAlive(4, 2, 3), waitGap, data(4)},
			delivered: []uint32{1, 2, 3, 4}, acked: []uint32{1, 2, 3, 4}, republished: []uint32{2, 3},
		},
		{
			name:      "a number sent twice is acknowledged again, handed on once",
			steps:     []step{data(1), data(2), data(2), data(1)},
			delivered: []uint32{1, 2}, acked: []uint32{1, 2, 2, 1},
		},
		{
			name:      "a number far ahead is one range, not a walk",
			steps:     []step{data(1), data(far), waitGap, data(far + 1)},
			delivered: []uint32{1, far, far + 1}, acked: []uint32{1, far, far + 1}, lost: far - 2,
			logs: map[string]int{"notifications lost": 1, `"first":2,"last":3999999999`: 1},
		},
		{
			name:      "far ahead with some numbers held: republish those, the rest is lost",
			held:      []uint32{2, far - 1},
			steps:     []step{data(1), data(far, 2, far-1, far), waitGap},
			delivered: []uint32{1, 2, far - 1, far}, acked: []uint32{1, 2, far - 1, far}, republished: []uint32{2, far - 1},
			lost: far - 4, logs: map[string]int{"notifications lost": 1, `"ranges":1`: 1},
		},
		{
			name:        "only the newest numbers held are asked for again",
			held:        seqs(2, 299),
			steps:       []step{data(1), data(300, seqs(2, 300)...), waitGap},
			delivered:   append(append([]uint32{1}, seqs(200, 299)...), 300),
			acked:       append(append([]uint32{1}, seqs(200, 299)...), 300),
			republished: seqs(200, 299), lost: 198,
		},
		{
			name:      "two gaps are logged at Error once, then at Debug",
			steps:     []step{data(1), data(3, 3), waitGap, data(5, 5), waitGap},
			delivered: []uint32{1, 3, 5}, acked: []uint32{1, 3, 5}, lost: 2,
			logs: map[string]int{`"level":"error"`: 1, `"level":"debug","subscription":7,"first":4`: 1},
		},
		{
			name:      "numbering restarted far behind is followed",
			start:     1_000_000,
			steps:     []step{data(1), data(2)},
			delivered: []uint32{1, 2}, acked: []uint32{1, 2},
			logs: map[string]int{"restarted the sequence numbers": 1},
		},
		{
			name:      "a number shortly behind is a resend",
			start:     1_000,
			steps:     []step{data(990), data(1001)},
			delivered: []uint32{1001}, acked: []uint32{990, 1001},
		},
		{
			name:        "after a move, numbers handed on but still held are acknowledged again",
			start:       5,
			reactivated: true,
			steps:       []step{data(6, 4, 5, 6), data(7, 4, 5, 6, 7)},
			delivered:   []uint32{6, 7}, acked: []uint32{4, 5, 6, 7},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				rec := &recorder{}
				e := newTestEngine(rec)
				e.subs[0].lastSeq, e.subs[0].sent = tc.start, tc.start
				if tc.reactivated {
					e.Reactivated()
				}
				sv := &scripted{held: map[uint32]bool{}, empty: map[uint32]bool{}, refuse: tc.refuse}
				for _, n := range tc.held {
					sv.held[n] = true
				}
				for _, n := range tc.empty {
					sv.empty[n] = true
				}
				for i, st := range tc.steps {
					var err error
					if st.sleep > 0 {
						time.Sleep(st.sleep)
						err = e.closeGaps(t.Context(), sv)
					} else {
						err = e.published(t.Context(), sv, publishResult{res: st.response()})
					}
					if err != nil {
						t.Fatalf("step %d: %v", i, err)
					}
				}
				if !slices.Equal(rec.delivered, tc.delivered) {
					t.Errorf("delivered %v, want %v", short(rec.delivered), short(tc.delivered))
				}
				if got := ackedSeqs(e.acks); !slices.Equal(got, tc.acked) {
					t.Errorf("acknowledged %v, want %v", short(got), short(tc.acked))
				}
				if !slices.Equal(sv.republished, tc.republished) {
					t.Errorf("republish asked for %v, want %v", short(sv.republished), short(tc.republished))
				}
				if e.Lost() != tc.lost {
					t.Errorf("lost %d, want %d", e.Lost(), tc.lost)
				}
				for frag, n := range tc.logs {
					if got := strings.Count(rec.log.String(), frag); got != n {
						t.Errorf("%d log lines with %q, want %d:\n%s", got, frag, n, rec.log.String())
					}
				}
				if tc.lost == 0 && strings.Contains(rec.log.String(), "lost") {
					t.Errorf("loss logged where none was:\n%s", rec.log.String())
				}
			})
		})
	}
}

// short abbreviates long lists of numbers in failure messages.
func short(s []uint32) any {
	if len(s) <= 12 {
		return s
	}
	return struct {
		Len         int
		First, Last []uint32
	}{len(s), s[:5], s[len(s)-5:]}
}

func TestPublishOutcome(t *testing.T) {
	statusChange := func(code ua.StatusCode) *ua.PublishResponse {
		return &ua.PublishResponse{SubscriptionID: testSub, NotificationMessage: &ua.NotificationMessage{
			SequenceNumber:   1,
			NotificationData: []*ua.ExtensionObject{{Value: &ua.StatusChangeNotification{Status: code}}},
		}}
	}
	pending := []*ua.SubscriptionAcknowledgement{{SubscriptionID: testSub, SequenceNumber: 9}}
	tests := []struct {
		name     string
		result   publishResult
		want     error // nil: the stream goes on
		wantText string
		requeued bool // the request's acknowledgements go out again
	}{
		{name: "no answer in time", result: publishResult{err: ua.StatusBadTimeout, acks: pending}, requeued: true},
		{name: "too many requests", result: publishResult{err: ua.StatusBadTooManyPublishRequests, acks: pending}, requeued: true},
		{name: "no subscription", result: publishResult{err: ua.StatusBadNoSubscription, acks: pending}, want: ErrGone, requeued: true},
		{name: "session closed", result: publishResult{err: ua.StatusBadSessionClosed, acks: pending}, want: ErrSessionGone, requeued: true},
		{name: "session id invalid", result: publishResult{err: ua.StatusBadSessionIDInvalid}, want: ErrSessionGone},
		{name: "channel failure", result: publishResult{err: errors.New("connection reset")}, wantText: "publish: connection reset"},
		{
			name:   "acknowledgement to a subscription the server lost",
			result: publishResult{res: &ua.PublishResponse{SubscriptionID: testSub, NotificationMessage: &ua.NotificationMessage{SequenceNumber: 1}, Results: []ua.StatusCode{ua.StatusBadSubscriptionIDInvalid}}, acks: pending},
			want:   ErrGone,
		},
		{
			name:   "acknowledgement of a number the server no longer holds",
			result: publishResult{res: &ua.PublishResponse{SubscriptionID: testSub, NotificationMessage: &ua.NotificationMessage{SequenceNumber: 1}, Results: []ua.StatusCode{ua.StatusBadSequenceNumberUnknown}}, acks: pending},
		},
		{name: "subscription expired", result: publishResult{res: statusChange(ua.StatusBadTimeout)}, want: ErrGone},
		{name: "subscription status changed", result: publishResult{res: statusChange(ua.StatusBadShutdown)}, wantText: "subscription 7: status changed to BadShutdown"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEngine(&recorder{})
			err := e.published(t.Context(), &scripted{}, tc.result)
			switch {
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Errorf("error %v, want %v", err, tc.want)
			case tc.wantText != "" && (err == nil || err.Error() != tc.wantText):
				t.Errorf("error %v, want %q", err, tc.wantText)
			case tc.want == nil && tc.wantText == "" && err != nil:
				t.Errorf("error %v, want the stream to go on", err)
			}
			if got := ackedSeqs(e.acks); tc.requeued != slices.Equal(got, []uint32{9}) {
				t.Errorf("pending acknowledgements %v after the failure (requeued: %v)", got, tc.requeued)
			}
		})
	}
}
