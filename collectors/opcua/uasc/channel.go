// Package uasc is the client side of OPC UA Secure Conversation (Part 6,
// 6.7; Part 4, 5.5): a secure channel over a uatcp connection that opens and
// renews its security tokens, secures, chunks and numbers the requests it
// sends, and reassembles, checks and hands out the responses, with one
// reader goroutine dispatching them by request id.
package uasc

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
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

// Send sends req with a filled-in request header (handle, timestamp, timeout
// hint, authToken) and waits for its response. A ServiceFault or a Bad
// ServiceResult returns the response and a *uastatus.Error naming the
// service ("Read request: BadNodeIdUnknown (0x80340000)"). When the channel
// fails or is closed, the error wraps ErrChannelClosed and the cause.
func (ch *Channel) Send(ctx context.Context, req ua.Request, authToken *ua.NodeID) (ua.Response, error) {
	name := serviceName(req)
	ctx, cancel := ch.requestContext(ctx)
	defer cancel()
	res, err := ch.roundTrip(ctx, "MSG", req, authToken)
	if err != nil {
		return nil, fmt.Errorf("%s request: %w", name, err)
	}
	resp, err := decodeResponse(res.message)
	if err != nil {
		return nil, fmt.Errorf("%s request: %w", name, err)
	}
	if _, fault := resp.(*ua.ServiceFault); !fault && typeName(resp) != strings.TrimSuffix(typeName(req), "Request")+"Response" {
		return nil, fmt.Errorf("%s request: answered with %s", name, typeName(resp))
	}
	if h := resp.Header(); h != nil && uastatus.IsBad(h.ServiceResult) {
		return resp, &uastatus.Error{Step: name + " request", Code: h.ServiceResult}
	}
	if _, fault := resp.(*ua.ServiceFault); fault {
		return resp, &uastatus.Error{Step: name + " request", Code: ua.StatusBadUnexpectedError}
	}
	return resp, nil
}

// roundTrip sends req as a message of msgType and waits for the response's
// message bytes.
func (ch *Channel) roundTrip(ctx context.Context, msgType string, req ua.Request, authToken *ua.NodeID) (result, error) {
	select {
	case <-ch.done:
		return result{}, ch.Err()
	default:
	}
	if err := ctx.Err(); err != nil {
		return result{}, err
	}
	fillHeader(ctx, req, authToken, ch.handles.Add(1))
	msg, err := encodeRequest(req)
	if err != nil {
		return result{}, err
	}
	id := ch.nextRequestID()
	w := &waiter{msgType: msgType, result: make(chan result, 1)}
	ch.mu.Lock()
	if ch.err != nil {
		ch.mu.Unlock()
		return result{}, ch.err
	}
	ch.waiters[id] = w
	ch.mu.Unlock()
	forget := func() {
		ch.mu.Lock()
		delete(ch.waiters, id)
		ch.mu.Unlock()
	}
	if err := ch.writeMessage(msgType, id, msg); err != nil {
		forget()
		return result{}, err
	}
	select {
	case res := <-w.result:
		return res, res.err
	case <-ctx.Done():
		forget()
		return result{}, ctx.Err()
	}
}

func (ch *Channel) nextRequestID() uint32 {
	for {
		if id := ch.requestIDs.Add(1); id != 0 {
			return id
		}
	}
}

// fillHeader sets the request header the way Part 4, 7.33 asks, keeping
// what the caller asked for in diagnostics and audit.
func fillHeader(ctx context.Context, req ua.Request, authToken *ua.NodeID, handle uint32) {
	h := &ua.RequestHeader{}
	if old := req.Header(); old != nil {
		h.ReturnDiagnostics, h.AuditEntryID, h.AdditionalHeader = old.ReturnDiagnostics, old.AuditEntryID, old.AdditionalHeader
	}
	if h.AdditionalHeader == nil {
		h.AdditionalHeader = ua.NewExtensionObject(nil)
	}
	h.AuthenticationToken = authToken
	if h.AuthenticationToken == nil {
		h.AuthenticationToken = ua.NewTwoByteNodeID(0)
	}
	h.Timestamp = time.Now()
	h.RequestHandle = handle
	if d, ok := ctx.Deadline(); ok {
		h.TimeoutHint = uint32(min(max(time.Until(d).Milliseconds(), 1), math.MaxUint32))
	}
	req.SetHeader(h)
}

// sealRoom is what securing a chunk may add to it (padding and
// signature), so that sealing rarely grows the chunk's buffer.
const sealRoom = 1024

// writeMessage secures msg in chunks of msgType and sends them. A message
// beyond the server's limits is refused before anything is sent: the
// channel stays usable. A failed write ends the channel.
func (ch *Channel) writeMessage(msgType string, requestID uint32, msg []byte) error {
	ch.sendMu.Lock()
	defer ch.sendMu.Unlock()
	var secHeader []byte
	var crypto secpolicy.ChunkCrypto
	ch.mu.Lock()
	channelID := ch.channelID
	if msgType == "OPN" {
		secHeader, crypto = ch.asymHeader, ch.asym
	} else {
		if ch.cur == nil {
			ch.mu.Unlock()
			return errors.New("no security token")
		}
		secHeader = binary.LittleEndian.AppendUint32(nil, ch.cur.id)
		crypto = ch.cur.crypto
	}
	ch.mu.Unlock()

	hdrLen := channelHeaderSize + len(secHeader)
	maxPiece := crypto.MaxBody(int(ch.limits.SendChunkSize), hdrLen) - sequenceHeaderSize
	if maxPiece <= 0 {
		return fmt.Errorf("the server's receive buffer of %d bytes leaves no room for a message", ch.limits.SendChunkSize)
	}
	pieces := splitMessage(msg, maxPiece)
	if err := checkSendLimits(len(msg), len(pieces), ch.limits); err != nil {
		return err
	}
	// Sized to the message, not the chunk limit (often 64 KiB or more):
	// most requests, PublishRequests above all, are a few hundred bytes.
	buf := make([]byte, 0, min(int(ch.limits.SendChunkSize), hdrLen+sequenceHeaderSize+len(msg)+sealRoom))
	for i, piece := range pieces {
		chunkType := byte(chunkIntermediate)
		if i == len(pieces)-1 {
			chunkType = chunkFinal
		}
		seq := ch.seq.next()
		b := append(buf[:0], msgType...)
		b = append(b, chunkType, 0, 0, 0, 0)
		b = binary.LittleEndian.AppendUint32(b, channelID)
		b = append(b, secHeader...)
		b = binary.LittleEndian.AppendUint32(b, seq)
		b = binary.LittleEndian.AppendUint32(b, requestID)
		b = append(b, piece...)
		binary.LittleEndian.PutUint32(b[4:], uint32(len(b)))
		sealed, err := crypto.Seal(b, hdrLen)
		if err != nil {
			err = fmt.Errorf("secure %s chunk: %w", msgType, err)
			ch.fail(err)
			return err
		}
		if err := ch.conn.WriteChunk(sealed); err != nil {
			ch.fail(err)
			return err
		}
	}
	return nil
}

// read is the channel's one reader: it reads chunks until the connection
// ends, checks them and dispatches complete messages to their waiters.
func (ch *Channel) read() {
	defer close(ch.readerExited)
	rx := newReassembler(ch.limits.ReceiveMessageSize, ch.limits.ReceiveChunkCount)
	seq := sequenceCheck{strict: !secpolicy.LegacySequenceNumbers(ch.cfg.Policy)}
	for {
		chunk, err := ch.conn.ReadChunk()
		if err != nil {
			ch.fail(err)
			return
		}
		if err := ch.receive(chunk, rx, &seq); err != nil {
			ch.fail(err)
			return
		}
	}
}

// receive handles one chunk; an error ends the channel.
func (ch *Channel) receive(chunk []byte, rx *reassembler, seq *sequenceCheck) error {
	msgType := string(chunk[:3])
	if len(chunk) < symmetricHdrSize {
		return fmt.Errorf("%s chunk of %d bytes is too short", msgType, len(chunk))
	}
	channelID := binary.LittleEndian.Uint32(chunk[8:])
	ch.mu.Lock()
	ourID := ch.channelID
	ch.mu.Unlock()
	if ourID != 0 && channelID != ourID {
		return fmt.Errorf("%s chunk for channel %d, ours is %d", msgType, channelID, ourID)
	}
	var body []byte
	var err error
	switch msgType {
	case "OPN":
		body, err = ch.openAsymmetric(chunk)
	case "MSG":
		body, err = ch.openSymmetric(chunk, seq.last)
	default:
		return fmt.Errorf("server sent an unexpected %s message", msgType)
	}
	if err != nil {
		return err
	}
	if len(body) < sequenceHeaderSize {
		return fmt.Errorf("%s chunk without sequence header", msgType)
	}
	if err := seq.accept(binary.LittleEndian.Uint32(body)); err != nil {
		return err
	}
	requestID := binary.LittleEndian.Uint32(body[4:])
	payload := body[sequenceHeaderSize:]

	ch.mu.Lock()
	w := ch.waiters[requestID]
	if w != nil && w.msgType != msgType {
		ch.mu.Unlock()
		return fmt.Errorf("response to request %d came as %s, not %s", requestID, msgType, w.msgType)
	}
	ch.mu.Unlock()
	if w == nil && !ch.sent(requestID) {
		// A late response is fine; one to a request never made is not.
		return fmt.Errorf("%s chunk for request %d, which we never sent", msgType, requestID)
	}
	got, complete, err := rx.add(requestID, chunk[3], payload, w != nil)
	if err != nil {
		return fmt.Errorf("%s chunk: %w", msgType, err)
	}
	if len(rx.partial) > 0 {
		rx.forget(ch.awaited)
	}
	if !complete {
		if w == nil {
			ch.log.Debug().Uint32("request_id", requestID).Msg("dropped a response chunk no request awaits")
		}
		return nil
	}
	res := result{message: got.message, arrived: time.Now(), err: got.err}
	if got.aborted {
		res = result{err: fmt.Errorf("server aborted the response: %w", uatcp.ParseAbort(got.message))}
	}
	ch.mu.Lock()
	if ch.waiters[requestID] == w {
		delete(ch.waiters, requestID)
		w.result <- res
	}
	ch.mu.Unlock()
	return nil
}

// sent reports whether requestID is one of ours: ids count up from 1, so
// it is at most the last one, modulo 2³² (within 2³¹ of it).
func (ch *Channel) sent(requestID uint32) bool {
	return requestID != 0 && int32(ch.requestIDs.Load()-requestID) >= 0
}

func (ch *Channel) awaited(requestID uint32) bool {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.waiters[requestID] != nil
}

// openAsymmetric checks and opens an OPN chunk.
func (ch *Channel) openAsymmetric(chunk []byte) ([]byte, error) {
	h, n, err := parseAsymmetricHeader(chunk[channelHeaderSize:])
	if err != nil {
		return nil, err
	}
	if h.PolicyURI != ch.cfg.Policy.URI() {
		return nil, fmt.Errorf("OPN chunk under security policy %q, ours is %q", h.PolicyURI, ch.cfg.Policy.URI())
	}
	if ch.secured {
		leaf, err := leafCertificate(h.SenderCertificate)
		if err != nil {
			return nil, fmt.Errorf("OPN chunk: sender certificate: %w", err)
		}
		if !bytes.Equal(leaf, ch.remoteLeaf) {
			return nil, errors.New("OPN chunk signed with another certificate than the endpoint's")
		}
		if !bytes.Equal(h.ReceiverThumbprint, ch.localThumb) {
			return nil, errors.New("OPN chunk for another certificate than ours")
		}
	}
	body, err := ch.asym.Open(chunk, channelHeaderSize+n)
	if err != nil {
		return nil, fmt.Errorf("OPN chunk: %w", err)
	}
	return body, nil
}

// openSymmetric checks and opens a MSG chunk under the current token, or
// under the previous one while it is still accepted; prevSeq, the last
// sequence number received, is what the AEAD policies bind it to.
func (ch *Channel) openSymmetric(chunk []byte, prevSeq uint32) ([]byte, error) {
	id := binary.LittleEndian.Uint32(chunk[channelHeaderSize:])
	ch.mu.Lock()
	cur, prev := ch.cur, ch.prev
	ch.mu.Unlock()
	var crypto secpolicy.ChunkCrypto
	switch {
	case cur != nil && id == cur.id:
		crypto = cur.crypto
	case prev != nil && id == prev.id && time.Now().Before(acceptUntil(prev.arrived, prev.lifetime)):
		crypto = prev.crypto
	case prev != nil && id == prev.id:
		return nil, fmt.Errorf("MSG chunk under token %d, which expired more than a quarter of its lifetime ago", id)
	default:
		return nil, fmt.Errorf("MSG chunk under unknown token %d", id)
	}
	var body []byte
	var err error
	if b, ok := crypto.(secpolicy.SequenceBound); ok {
		body, err = b.OpenAfter(chunk, symmetricHdrSize, prevSeq)
	} else {
		body, err = crypto.Open(chunk, symmetricHdrSize)
	}
	if err != nil {
		return nil, fmt.Errorf("MSG chunk: %w", err)
	}
	return body, nil
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
