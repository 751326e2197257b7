package subscription

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gopcua/opcua/ua"
)

// runEngine runs e on sv in the background; the result arrives on the
// returned channel.
func runEngine(ctx context.Context, e *Engine, sv *scripted, check func(context.Context) error) <-chan error {
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx, sv, check) }()
	return done
}

// answer takes the next PublishRequest waiting at sv and answers it.
func answer(t *testing.T, sv *scripted, res *ua.PublishResponse, err error) *ua.PublishRequest {
	t.Helper()
	select {
	case call := <-sv.publishes:
		call.answer <- publishAnswer{res: res, err: err}
		return call.req
	default:
		t.Fatal("no PublishRequest waiting at the server")
		return nil
	}
}

func TestRunAcknowledgesAfterDelivery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		e := newTestEngine(rec)
		sv := &scripted{publishes: make(chan *publishCall, maxPublishesInFlight)}
		ctx, cancel := context.WithCancel(t.Context())
		done := runEngine(ctx, e, sv, nil)
		synctest.Wait()
		if n := len(sv.publishes); n != publishesInFlight {
			t.Fatalf("%d PublishRequests in flight, want %d", n, publishesInFlight)
		}
		// Each answer is followed by a new request; an acknowledgement
		// goes out on the first request after its notification was handed on.
		var acked []uint32
		for seq := uint32(1); seq <= 5; seq++ {
			req := answer(t, sv, data(seq).response(), nil)
			acked = append(acked, ackedSeqs(req.SubscriptionAcknowledgements)...)
			synctest.Wait()
			if n := len(sv.publishes); n != publishesInFlight {
				t.Fatalf("after answer %d: %d PublishRequests in flight, want %d", seq, n, publishesInFlight)
			}
		}
		// The three requests in flight carry 2, 3 and 4; 5's rides on
		// the next.
		for range publishesInFlight {
			req := answer(t, sv, keepAlive(6).response(), nil)
			acked = append(acked, ackedSeqs(req.SubscriptionAcknowledgements)...)
			synctest.Wait()
		}
		if want := []uint32{1, 2, 3, 4}; !slices.Equal(acked, want) {
			t.Errorf("acknowledged %v, want %v, each once and after delivery", acked, want)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v, want nil on cancel", err)
		}
		if want := []uint32{1, 2, 3, 4, 5}; !slices.Equal(rec.delivered, want) {
			t.Errorf("delivered %v, want %v", rec.delivered, want)
		}
		if rec.alive != 8 {
			t.Errorf("Alive heard %d answers, want 8", rec.alive)
		}
	})
}

func TestRunResendsAcknowledgementsOfAFailedRequest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newTestEngine(&recorder{})
		sv := &scripted{publishes: make(chan *publishCall, maxPublishesInFlight)}
		done := runEngine(t.Context(), e, sv, nil)
		synctest.Wait()
		answer(t, sv, data(1).response(), nil)
		synctest.Wait()
		// Keep-alives until the request carrying the acknowledgement of 1
		// comes up: it times out. The acknowledgement goes out again.
		var carried, failed int
		for range 8 {
			call := <-sv.publishes
			acks := ackedSeqs(call.req.SubscriptionAcknowledgements)
			if slices.Equal(acks, []uint32{1}) {
				carried++
			} else if len(acks) != 0 {
				t.Fatalf("request carried %v", acks)
			}
			if carried == 1 && failed == 0 {
				failed++
				call.answer <- publishAnswer{err: ua.StatusBadTimeout}
			} else {
				call.answer <- publishAnswer{res: keepAlive(2).response()}
			}
			synctest.Wait()
		}
		if carried != 2 {
			t.Errorf("the acknowledgement of 1 went out %d times, want twice: once more after the request carrying it failed", carried)
		}
		select {
		case err := <-done:
			t.Fatalf("Run ended: %v", err)
		default:
		}
	})
}

func TestRunFewerRequestsWhenTheServerHasTooMany(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newTestEngine(&recorder{})
		sv := &scripted{publishes: make(chan *publishCall, maxPublishesInFlight)}
		runEngine(t.Context(), e, sv, nil)
		synctest.Wait()
		answer(t, sv, nil, ua.StatusBadTooManyPublishRequests)
		synctest.Wait()
		if n := len(sv.publishes); n != publishesInFlight-1 {
			t.Errorf("%d PublishRequests in flight, want %d", n, publishesInFlight-1)
		}
	})
}

func TestRunMoreRequestsForMoreSubscriptions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for _, tc := range []struct{ subs, want int }{{1, 3}, {2, 3}, {5, 6}, {40, maxPublishesInFlight}} {
			e := newTestEngine(&recorder{})
			e.subs = nil
			for i := range tc.subs {
				e.subs = append(e.subs, &sub{id: uint32(i + 1)})
			}
			sv := &scripted{publishes: make(chan *publishCall, maxPublishesInFlight)}
			ctx, cancel := context.WithCancel(t.Context())
			done := runEngine(ctx, e, sv, nil)
			synctest.Wait()
			if n := len(sv.publishes); n != tc.want {
				t.Errorf("%d subscriptions: %d PublishRequests in flight, want %d", tc.subs, n, tc.want)
			}
			cancel()
			<-done
		}
	})
}

func TestRunSilence(t *testing.T) {
	tests := []struct {
		name      string
		keepAlive time.Duration // revised keep-alive period; 0: the server never answers
		answerAt  time.Duration // the server answers each request after this long
		run       time.Duration // Run is stopped after this long
		wantAfter time.Duration // Run ends with ErrSilent after this long; 0: nil at the stop
	}{
		{name: "a server that never answers", keepAlive: 5 * time.Second, run: time.Minute, wantAfter: minSilence},
		{name: "keep-alives keep a quiet stream", keepAlive: 5 * time.Second, answerAt: 5 * time.Second, run: time.Minute},
		{name: "a slow subscription's keep-alives are waited for", keepAlive: 30 * time.Second, answerAt: 30 * time.Second, run: 5 * time.Minute},
		{name: "three keep-alive periods of a slow subscription", keepAlive: 30 * time.Second, run: 5 * time.Minute, wantAfter: 90 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newTestEngine(&recorder{})
				e.subs[0].keepAlive = tc.keepAlive
				sv := &scripted{publishes: make(chan *publishCall, maxPublishesInFlight)}
				ctx, cancel := context.WithTimeout(t.Context(), tc.run)
				defer cancel()
				go func() { // the server: answers each request after answerAt
					for {
						select {
						case call := <-sv.publishes:
							if tc.answerAt == 0 {
								continue
							}
							go func() {
								select {
								case <-time.After(tc.answerAt):
									call.answer <- publishAnswer{res: keepAlive(1).response()}
								case <-ctx.Done():
								}
							}()
						case <-ctx.Done():
							return
						}
					}
				}()
				start := time.Now()
				err := e.Run(ctx, sv, nil)
				took := time.Since(start)
				cancel()
				switch {
				case tc.wantAfter == 0 && err != nil:
					t.Errorf("Run: %v after %v, want nil at the stop", err, took)
				case tc.wantAfter != 0 && !errors.Is(err, ErrSilent):
					t.Errorf("Run: %v, want ErrSilent", err)
				case tc.wantAfter != 0 && (took <= tc.wantAfter || took > tc.wantAfter+minGapWait):
					t.Errorf("Run ended after %v, want just after %v", took, tc.wantAfter)
				}
			})
		})
	}
}

func TestRunHandsOnWhatArrivedWhenStopped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		e := newTestEngine(rec)
		sv := &scripted{publishes: make(chan *publishCall, maxPublishesInFlight)}
		ctx, cancel := context.WithCancel(t.Context())
		done := runEngine(ctx, e, sv, nil)
		synctest.Wait()
		answer(t, sv, data(1).response(), nil)
		answer(t, sv, data(3, 2, 3).response(), nil) // 2 never comes
		synctest.Wait()
		if !slices.Equal(rec.delivered, []uint32{1}) {
			t.Fatalf("delivered %v before the stop, want [1]", rec.delivered)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run: %v", err)
		}
		if !slices.Equal(rec.delivered, []uint32{1, 3}) {
			t.Errorf("delivered %v, want [1 3]: what waited behind the gap is handed on", rec.delivered)
		}
	})
}

func TestRunCheck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newTestEngine(&recorder{})
		sv := &scripted{}
		calls := 0
		bad := errors.New("health check: server state shutdown")
		start := time.Now()
		err := e.Run(t.Context(), sv, func(context.Context) error {
			calls++
			if calls == 3 {
				return bad
			}
			return nil
		})
		if !errors.Is(err, bad) || calls != 3 || time.Since(start) != 3*checkEvery {
			t.Errorf("Run: %v after %d checks and %v, want the check's error after 3 and %v", err, calls, time.Since(start), 3*checkEvery)
		}
	})
}

// senderFunc answers requests with a function.
type senderFunc func(ctx context.Context, req ua.Request) (ua.Response, error)

func (f senderFunc) Send(ctx context.Context, req ua.Request) (ua.Response, error) {
	return f(ctx, req)
}

func TestCreate(t *testing.T) {
	tests := []struct {
		name                     string
		interval                 time.Duration
		revisedMS                float64
		revisedKeepAlive         uint32
		revisedLifetime          uint32
		wantKeepAliveCount       uint32
		wantKeepAlive, wantLifet time.Duration
	}{
		{name: "as asked", interval: 50 * time.Millisecond, revisedMS: 50, revisedKeepAlive: 100, revisedLifetime: 1200,
			wantKeepAliveCount: 100, wantKeepAlive: 5 * time.Second, wantLifet: time.Minute},
		{name: "slower than the keep-alive target", interval: 10 * time.Second, revisedMS: 10_000, revisedKeepAlive: 1, revisedLifetime: 12,
			wantKeepAliveCount: 1, wantKeepAlive: 10 * time.Second, wantLifet: 2 * time.Minute},
		{name: "absurd revisions are bounded", interval: time.Second, revisedMS: 1e12, revisedKeepAlive: 1 << 31, revisedLifetime: 1<<32 - 1,
			wantKeepAliveCount: 5, wantKeepAlive: maxRevised, wantLifet: maxRevised},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got *ua.CreateSubscriptionRequest
			snd := senderFunc(func(_ context.Context, req ua.Request) (ua.Response, error) {
				got = req.(*ua.CreateSubscriptionRequest)
				return &ua.CreateSubscriptionResponse{SubscriptionID: 42, RevisedPublishingInterval: tc.revisedMS,
					RevisedMaxKeepAliveCount: tc.revisedKeepAlive, RevisedLifetimeCount: tc.revisedLifetime}, nil
			})
			e := New(Config{})
			id, err := e.Create(t.Context(), snd, tc.interval, 10_000)
			if err != nil || id != 42 {
				t.Fatalf("Create: %d, %v", id, err)
			}
			if got.MaxNotificationsPerPublish != 10_000 || got.RequestedMaxKeepAliveCount != tc.wantKeepAliveCount ||
				got.RequestedLifetimeCount != tc.wantKeepAliveCount*lifetimeKeepAlives || !got.PublishingEnabled {
				t.Errorf("request %+v", got)
			}
			if s := e.subs[0]; s.keepAlive != tc.wantKeepAlive || s.lifetime != tc.wantLifet {
				t.Errorf("keep-alive %v, lifetime %v; want %v, %v", s.keepAlive, s.lifetime, tc.wantKeepAlive, tc.wantLifet)
			}
			if w := e.Window(10 * time.Second); w != max(10*time.Second, tc.wantLifet) {
				t.Errorf("window %v", w)
			}
		})
	}
}

func TestTransfer(t *testing.T) {
	tests := []struct {
		name        string
		results     []*ua.TransferResult
		wantErr     string
		wantDeleted []uint32
	}{
		{name: "every subscription moved", results: []*ua.TransferResult{{StatusCode: ua.StatusOK}, {StatusCode: ua.StatusOK}}},
		{
			name:    "one refused: the moved one is deleted, all are recreated",
			results: []*ua.TransferResult{{StatusCode: ua.StatusOK}, {StatusCode: ua.StatusBadSubscriptionIDInvalid}},
			wantErr: "transfer subscription 2: The subscription id is not valid. StatusBadSubscriptionIDInvalid", wantDeleted: []uint32{1},
		},
		{name: "results missing", results: []*ua.TransferResult{{StatusCode: ua.StatusOK}}, wantErr: "transfer subscriptions: 1 results for 2 subscriptions"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var deleted []uint32
			snd := senderFunc(func(_ context.Context, req ua.Request) (ua.Response, error) {
				switch r := req.(type) {
				case *ua.TransferSubscriptionsRequest:
					return &ua.TransferSubscriptionsResponse{Results: tc.results}, nil
				case *ua.DeleteSubscriptionsRequest:
					deleted = append(deleted, r.SubscriptionIDs...)
					return &ua.DeleteSubscriptionsResponse{}, nil
				}
				return nil, ua.StatusBadServiceUnsupported
			})
			e := New(Config{})
			e.subs = []*sub{{id: 1}, {id: 2}}
			err := e.Transfer(t.Context(), snd)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("Transfer: %v, want %q", err, tc.wantErr)
			}
			if !slices.Equal(deleted, tc.wantDeleted) {
				t.Errorf("deleted %v, want %v", deleted, tc.wantDeleted)
			}
			if reack := e.subs[0].reack && e.subs[1].reack; reack != (err == nil) {
				t.Errorf("acknowledgements to be rechecked: %v after %v", reack, err)
			}
		})
	}
}
