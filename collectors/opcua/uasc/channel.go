// Package uasc is the client side of OPC UA Secure Conversation (Part 6,
// 6.7; Part 4, 5.5): a secure channel over a uatcp connection that opens and
// renews its security tokens, secures, chunks and numbers the requests it
// sends, and reassembles, checks and hands out the responses, with one
// reader goroutine dispatching them by request id.
package uasc

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gopcua/opcua/ua"
	"github.com/rs/zerolog"

	"github.com/tagbridge/tagbridge/collectors/opcua/secpolicy"
	"github.com/tagbridge/tagbridge/collectors/opcua/uastatus"
	"github.com/tagbridge/tagbridge/collectors/opcua/uatcp"
)

// Defaults of Config's durations.
const (
	DefaultLifetime       = time.Hour
	DefaultRequestTimeout = 30 * time.Second
)

// ErrChannelClosed is wrapped by every error of a channel that failed or was
// closed, with the cause.
var ErrChannelClosed = errors.New("secure channel closed")

var errClosedByClient = errors.New("closed by the client")

// Config is what a channel is opened with.
type Config struct {
	Endpoint          string
	Policy            secpolicy.Policy
	Mode              ua.MessageSecurityMode
	Local             *secpolicy.KeyPair // nil for None
	RemoteCertificate []byte             // the endpoint's server certificate (DER); nil for None
	Lifetime          time.Duration      // requested token lifetime (default DefaultLifetime)
	RequestTimeout    time.Duration      // bound of one request when ctx has no deadline (default DefaultRequestTimeout)
	Limits            uatcp.Limits       // zero: uatcp.DefaultLimits()
	Log               zerolog.Logger     // carries plc/endpoint fields already
	// Dial opens the connection and exchanges Hello and Acknowledge; nil:
	// uatcp.Dial. Reverse connect hands over a connection the server
	// opened instead.
	Dial func(ctx context.Context, endpoint string, want uatcp.Limits) (*uatcp.Conn, error)
}

// Stats describe the channel's tokens.
type Stats struct {
	ChannelID, TokenID        uint32
	Lifetime                  time.Duration // revised, of the current token
	Renewals, RenewalFailures int
	LastRenewal               time.Time
	// ServerClockOffset is the server's token CreatedAt minus our clock
	// when the OPN response arrived: an estimate, never used for the
	// schedule.
	ServerClockOffset time.Duration
}

// Channel is an open secure channel. Its methods are safe for concurrent
// use.
type Channel struct {
	cfg          Config
	log          zerolog.Logger
	conn         *uatcp.Conn
	limits       uatcp.Negotiated
	asym         secpolicy.ChunkCrypto
	asymHeader   []byte // our OPN security header
	localThumb   []byte // SHA-1 of our certificate, as the server names it in its OPN chunks
	remoteLeaf   []byte // the server's certificate, without chain
	secured      bool   // policy other than None
	requestIDs   atomic.Uint32
	handles      atomic.Uint32
	warnedShort  atomic.Bool
	closing      atomic.Bool
	readerExited chan struct{}

	sendMu sync.Mutex // one message's chunks at a time, numbered in order
	seq    sequenceNumbers

	mu        sync.Mutex
	channelID uint32
	cur, prev *token
	waiters   map[uint32]*waiter
	stats     Stats
	renewSent time.Time // when the last renewal request went out (tests measure the schedule by it)
	cause     error     // why the channel ended
	err       error     // cause wrapped with ErrChannelClosed
	done      chan struct{}
}

// token is one security token of the channel.
type token struct {
	id       uint32
	crypto   secpolicy.ChunkCrypto
	arrived  time.Time // our clock
	lifetime time.Duration
}

// waiter is a request awaiting its response.
type waiter struct {
	msgType string // message type the response must come in: MSG or OPN
	result  chan result
}

type result struct {
	message []byte
	arrived time.Time
	err     error
}

// Open dials cfg.Endpoint, exchanges Hello and Acknowledge and opens a
// secure channel with an OpenSecureChannel Issue request. Its errors name
// the step: "open secure channel: server error BadSecurityChecksFailed
// (0x80130000): ...".
func Open(ctx context.Context, cfg Config) (*Channel, error) {
	ch, err := open(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open secure channel: %w", err)
	}
	return ch, nil
}

func open(ctx context.Context, cfg Config) (*Channel, error) {
	if cfg.Policy == nil {
		return nil, errors.New("no security policy")
	}
	secured := cfg.Policy.Name() != "None"
	switch {
	case secured && cfg.Mode != ua.MessageSecurityModeSign && cfg.Mode != ua.MessageSecurityModeSignAndEncrypt:
		return nil, fmt.Errorf("security policy %s needs mode Sign or SignAndEncrypt, not %v", cfg.Policy.Name(), cfg.Mode)
	case !secured && cfg.Mode != ua.MessageSecurityModeNone:
		return nil, fmt.Errorf("security policy None needs mode None, not %v", cfg.Mode)
	case secured && (cfg.Local == nil || len(cfg.Local.Certificate) == 0 || cfg.Local.Key == nil):
		return nil, fmt.Errorf("security policy %s needs a client certificate and key", cfg.Policy.Name())
	case secured && len(cfg.RemoteCertificate) == 0:
		return nil, fmt.Errorf("security policy %s needs the server certificate", cfg.Policy.Name())
	}
	if cfg.Lifetime <= 0 {
		cfg.Lifetime = DefaultLifetime
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.Limits == (uatcp.Limits{}) {
		cfg.Limits = uatcp.DefaultLimits()
	}
	ch := &Channel{
		cfg:          cfg,
		log:          cfg.Log,
		secured:      secured,
		waiters:      make(map[uint32]*waiter),
		done:         make(chan struct{}),
		readerExited: make(chan struct{}),
		seq:          sequenceNumbers{legacy: secpolicy.LegacySequenceNumbers(cfg.Policy)},
	}
	hdr := asymmetricHeader{PolicyURI: cfg.Policy.URI()}
	if secured {
		var err error
		if ch.localThumb, err = thumbprint(cfg.Local.Certificate); err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		if ch.remoteLeaf, err = leafCertificate(cfg.RemoteCertificate); err != nil {
			return nil, fmt.Errorf("server certificate: %w", err)
		}
		if hdr.ReceiverThumbprint, err = thumbprint(cfg.RemoteCertificate); err != nil {
			return nil, fmt.Errorf("server certificate: %w", err)
		}
		hdr.SenderCertificate = cfg.Local.Certificate
	}
	ch.asymHeader = hdr.append(nil)
	asym, err := cfg.Policy.Asymmetric(cfg.Mode, cfg.Local, cfg.RemoteCertificate)
	if err != nil {
		return nil, fmt.Errorf("security policy %s: %w", cfg.Policy.Name(), err)
	}
	ch.asym = asym

	dial := cfg.Dial
	if dial == nil {
		dial = uatcp.Dial
	}
	conn, err := dial(ctx, cfg.Endpoint, cfg.Limits)
	if err != nil {
		return nil, err
	}
	ch.conn, ch.limits = conn, conn.Limits()
	go ch.read()

	tok, err := ch.openToken(ctx, ua.SecurityTokenRequestTypeIssue)
	if err != nil {
		ch.fail(err)
		<-ch.readerExited
		ch.mu.Lock()
		cause := ch.cause
		ch.mu.Unlock()
		if !errors.Is(err, ErrChannelClosed) || cause == nil {
			return nil, err
		}
		return nil, cause // what broke the channel, not that it broke: an ERR, not EOF
	}
	ev := ch.log.Debug().Uint32("channel_id", ch.channelID).Uint32("token_id", tok.id).Dur("lifetime_ms", tok.lifetime).
		Str("policy", cfg.Policy.Name()).Stringer("mode", cfg.Mode)
	if s := secpolicy.SupersededBy(cfg.Policy); s != "" {
		ev = ev.Str("note", "Part 7 deprecates this policy in favour of "+s)
	}
	ev.Msg("secure channel open")
	go ch.renewLoop(context.WithoutCancel(ctx), tok)
	return ch, nil
}

// openToken sends an OpenSecureChannel request (Issue or Renew) with a fresh
// nonce and installs the token of its response.
func (ch *Channel) openToken(ctx context.Context, reqType ua.SecurityTokenRequestType) (*token, error) {
	ex, err := ch.cfg.Policy.NewExchange()
	if err != nil {
		return nil, fmt.Errorf("key exchange: %w", err)
	}
	if c, ok := ex.(secpolicy.ChainedExchange); ok && reqType == ua.SecurityTokenRequestTypeRenew {
		ch.mu.Lock()
		cur := ch.cur
		ch.mu.Unlock()
		if cur != nil {
			c.Chain(cur.crypto)
		}
	}
	req := &ua.OpenSecureChannelRequest{
		ClientProtocolVersion: 0,
		RequestType:           reqType,
		SecurityMode:          ch.cfg.Mode,
		ClientNonce:           ex.Nonce(),
		RequestedLifetime:     uint32(min(ch.cfg.Lifetime.Milliseconds(), math.MaxUint32)),
	}
	ctx, cancel := ch.requestContext(ctx)
	defer cancel()
	res, err := ch.roundTrip(ctx, "OPN", req, nil)
	if err != nil {
		return nil, err
	}
	v, err := decodeResponse(res.message)
	if err != nil {
		return nil, err
	}
	resp, ok := v.(*ua.OpenSecureChannelResponse)
	if !ok {
		if h := v.Header(); h != nil && uastatus.IsBad(h.ServiceResult) {
			return nil, &uastatus.Error{Code: h.ServiceResult} // the caller names the step
		}
		return nil, fmt.Errorf("OpenSecureChannel answered with %s", typeName(v))
	}
	if h := resp.ResponseHeader; h != nil && uastatus.IsBad(h.ServiceResult) {
		return nil, &uastatus.Error{Code: h.ServiceResult}
	}
	st := resp.SecurityToken
	if st == nil || st.ChannelID == 0 {
		return nil, errors.New("OpenSecureChannel response without a channel id")
	}
	// At least the policy's length: open62541 sends 32 bytes where
	// Basic128Rsa15 asks for 16.
	if n := ch.cfg.Policy.NonceLength(); len(resp.ServerNonce) < n {
		return nil, fmt.Errorf("server nonce of %d bytes, security policy %s needs %d: %w", len(resp.ServerNonce), ch.cfg.Policy.Name(), n, ua.StatusBadNonceInvalid)
	}
	sym, err := ex.Symmetric(ch.cfg.Mode, resp.ServerNonce)
	if err != nil {
		return nil, fmt.Errorf("derive keys: %w", err)
	}
	tok := &token{id: st.TokenID, crypto: sym, arrived: res.arrived, lifetime: time.Duration(st.RevisedLifetime) * time.Millisecond}

	ch.mu.Lock()
	defer ch.mu.Unlock()
	if reqType == ua.SecurityTokenRequestTypeRenew && st.ChannelID != ch.channelID {
		return nil, fmt.Errorf("renewal response for channel %d, ours is %d", st.ChannelID, ch.channelID)
	}
	ch.channelID = st.ChannelID
	// From now on we send under the new token; the server accepts the
	// old one until it sees the new one, and we accept the old one for a
	// quarter of its lifetime after it expired.
	ch.prev, ch.cur = ch.cur, tok
	ch.stats.ChannelID, ch.stats.TokenID, ch.stats.Lifetime = st.ChannelID, st.TokenID, tok.lifetime
	if !st.CreatedAt.IsZero() {
		ch.stats.ServerClockOffset = st.CreatedAt.Sub(res.arrived.Round(0))
	}
	return tok, nil
}

// renewLoop renews the token on schedule until the channel ends; a failed
// renewal ends it, so the session layer moves to a new channel. base carries
// Open's context values, without its cancellation.
func (ch *Channel) renewLoop(base context.Context, first *token) {
	warn := func(lifetime time.Duration) {
		if ch.warnedShort.CompareAndSwap(false, true) {
			delay, _ := renewDelay(lifetime)
			msg := "server grants secure channel tokens under 1s; renewing at most twice a second"
			if lifetime < minRenewInterval {
				msg += ", too late for tokens this short: expect the server to drop the channel"
			}
			ch.log.Warn().Dur("lifetime_ms", lifetime).Dur("renew_every_ms", delay).Msg(msg)
		}
	}
	renew := func() (grant, error) {
		// A failing channel fails the request itself; the timeout covers
		// a server that does not answer.
		ctx, cancel := context.WithTimeout(base, ch.renewTimeout())
		defer cancel()
		ch.mu.Lock()
		ch.renewSent = time.Now()
		ch.mu.Unlock()
		tok, err := ch.openToken(ctx, ua.SecurityTokenRequestTypeRenew)
		if err != nil {
			return grant{}, err
		}
		ch.mu.Lock()
		ch.stats.Renewals++
		ch.stats.LastRenewal = tok.arrived
		ch.mu.Unlock()
		ch.log.Debug().Uint32("token_id", tok.id).Dur("lifetime_ms", tok.lifetime).Msg("secure channel renewed")
		return grant{arrived: tok.arrived, lifetime: tok.lifetime}, nil
	}
	err := renewSchedule(ch.done, grant{arrived: first.arrived, lifetime: first.lifetime}, renew, warn)
	if err == nil {
		return
	}
	if ch.closing.Load() {
		return // closed by Close while renewing: not a renewal failure
	}
	// Counted and logged also when the channel ended under the renewal,
	// e.g. by the server's ERR answering it.
	ch.mu.Lock()
	ch.stats.RenewalFailures++
	ch.mu.Unlock()
	ev := ch.log.Warn().Err(err)
	var code ua.StatusCode
	if errors.As(err, &code) {
		ev = ev.Str("status", uastatus.Name(code))
	}
	ev.Msg("secure channel renewal failed; closing the channel")
	ch.fail(fmt.Errorf("renew secure channel: %w", err))
}

// renewTimeout bounds a renewal: the request timeout, but no longer than the
// current token is still accepted (then the channel is lost anyway), and at
// least a second.
func (ch *Channel) renewTimeout() time.Duration {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	left := time.Until(acceptUntil(ch.cur.arrived, ch.cur.lifetime))
	return max(min(ch.cfg.RequestTimeout, left), time.Second)
}

// requestContext bounds ctx by the request timeout when it has no deadline.
func (ch *Channel) requestContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, ch.cfg.RequestTimeout)
}

// fail ends the channel with cause, once: the connection is closed and
// every pending request fails.
func (ch *Channel) fail(cause error) {
	ch.mu.Lock()
	if ch.err != nil {
		ch.mu.Unlock()
		return
	}
	if ch.closing.Load() {
		cause = errClosedByClient // the server's reaction to CLO is no failure
	}
	ch.cause = cause
	ch.err = fmt.Errorf("%w: %w", ErrChannelClosed, cause)
	waiters := ch.waiters
	ch.waiters = make(map[uint32]*waiter)
	close(ch.done)
	err := ch.err
	ch.mu.Unlock()
	if ch.conn != nil {
		ch.conn.Close()
	}
	for _, w := range waiters {
		w.result <- result{err: err}
	}
}

// Close sends CloseSecureChannel, closes the connection and fails pending
// requests. It returns the error of sending CLO, if any.
func (ch *Channel) Close(ctx context.Context) error {
	if !ch.closing.CompareAndSwap(false, true) {
		<-ch.readerExited // another Close is at it
		return nil
	}
	select {
	case <-ch.done:
		return nil
	default:
	}
	req := &ua.CloseSecureChannelRequest{}
	fillHeader(ctx, req, nil, ch.handles.Add(1))
	msg, err := encodeRequest(req)
	if err == nil {
		if d, ok := ctx.Deadline(); ok {
			ch.conn.SetDeadline(d)
		}
		err = ch.writeMessage("CLO", ch.nextRequestID(), msg)
	}
	ch.fail(errClosedByClient)
	<-ch.readerExited
	if err != nil {
		return fmt.Errorf("close secure channel: %w", err)
	}
	return nil
}

// Done is closed when the channel failed or was closed.
func (ch *Channel) Done() <-chan struct{} { return ch.done }

// Err tells why the channel ended; nil while it is open.
func (ch *Channel) Err() error {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.err
}

// Stats returns the channel's token statistics.
func (ch *Channel) Stats() Stats {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.stats
}

// ServerCertificate is the server certificate the channel was opened with
// (nil for None).
func (ch *Channel) ServerCertificate() []byte { return ch.cfg.RemoteCertificate }

// Policy is the channel's security policy.
func (ch *Channel) Policy() secpolicy.Policy { return ch.cfg.Policy }

// Thumbprint is the channel thumbprint session signatures are bound to
// under the policies with the channel enhancements (secpolicy.ChannelBound);
// nil otherwise.
func (ch *Channel) Thumbprint() []byte {
	if b, ok := ch.asym.(secpolicy.ChannelBinding); ok {
		return b.ChannelThumbprint()
	}
	return nil
}

// Mode is the channel's message security mode.
func (ch *Channel) Mode() ua.MessageSecurityMode { return ch.cfg.Mode }

// Limits are the transport limits negotiated with the server.
func (ch *Channel) Limits() uatcp.Negotiated { return ch.limits }
