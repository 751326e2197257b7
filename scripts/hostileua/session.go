package hostileua

import (
	"crypto/rand"
	"sync"
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"
)

const (
	// JumpAfter is the number of notification messages SequenceJump sends
	// in order before the jump.
	JumpAfter = 20
	// JumpTo is the sequence number SequenceJump jumps to: 4 × 10⁹ after
	// JumpAfter, as in issue 20, finding 3.
	JumpTo = 4_000_000_000
	// publishEvery is how often SequenceJump answers a Publish request.
	publishEvery = 100 * time.Millisecond
)

// session serves one anonymous session over policy None well enough for a
// subscribing client (endpoints, session, reads of the namespace array and
// the server state, one subscription, its items), and answers Publish
// requests every publishEvery with a data change of every item: Int32
// counters that count up by one per message, and the time for
// Server_ServerStatus_CurrentTime. The sequence numbers count 1 to
// JumpAfter, then jump to JumpTo and count on from there. Republish is
// refused (BadMessageNotAvailable): the numbers skipped never existed.
func (c *conn) session() error {
	p := &publisher{c: c, items: map[uint32]bool{}}
	defer p.stop()
	for {
		chunk, err := c.readChunk("MSG", "CLO")
		if err != nil || string(chunk[:3]) == "CLO" {
			return nil // the client hung up
		}
		requestID, req, err := c.openMessage(chunk)
		if err != nil {
			return err
		}
		h := req.Header().RequestHandle
		var resp ua.Response
		switch r := req.(type) {
		case *ua.GetEndpointsRequest:
			resp = &ua.GetEndpointsResponse{ResponseHeader: responseHeader(h), Endpoints: c.endpoints()}
		case *ua.CreateSessionRequest:
			resp = &ua.CreateSessionResponse{
				ResponseHeader:        responseHeader(h),
				SessionID:             ua.NewNumericNodeID(1, 1),
				AuthenticationToken:   ua.NewByteStringNodeID(1, nonce()),
				RevisedSessionTimeout: r.RequestedSessionTimeout,
				ServerNonce:           nonce(),
				ServerEndpoints:       c.endpoints(),
				ServerSignature:       &ua.SignatureData{},
			}
		case *ua.ActivateSessionRequest:
			resp = &ua.ActivateSessionResponse{ResponseHeader: responseHeader(h), ServerNonce: nonce()}
		case *ua.ReadRequest:
			resp = &ua.ReadResponse{ResponseHeader: responseHeader(h), Results: readResults(r.NodesToRead)}
		case *ua.CreateSubscriptionRequest:
			resp = &ua.CreateSubscriptionResponse{
				ResponseHeader:            responseHeader(h),
				SubscriptionID:            1,
				RevisedPublishingInterval: float64(publishEvery / time.Millisecond),
				RevisedLifetimeCount:      r.RequestedLifetimeCount,
				RevisedMaxKeepAliveCount:  r.RequestedMaxKeepAliveCount,
			}
		case *ua.CreateMonitoredItemsRequest:
			resp = &ua.CreateMonitoredItemsResponse{ResponseHeader: responseHeader(h), Results: p.add(r.ItemsToCreate)}
		case *ua.PublishRequest:
			p.queue(requestID, h, len(r.SubscriptionAcknowledgements))
			continue
		case *ua.RepublishRequest:
			resp = fault(h, ua.StatusBadMessageNotAvailable)
		case *ua.SetPublishingModeRequest:
			resp = &ua.SetPublishingModeResponse{ResponseHeader: responseHeader(h), Results: goods(len(r.SubscriptionIDs))}
		case *ua.DeleteSubscriptionsRequest:
			resp = &ua.DeleteSubscriptionsResponse{ResponseHeader: responseHeader(h), Results: goods(len(r.SubscriptionIDs))}
		case *ua.CloseSessionRequest:
			resp = &ua.CloseSessionResponse{ResponseHeader: responseHeader(h)}
		default:
			resp = fault(h, ua.StatusBadServiceUnsupported)
		}
		if err := c.respond(requestID, resp); err != nil {
			return nil
		}
	}
}

// respond sends resp as the answer to requestID.
func (c *conn) respond(requestID uint32, resp ua.Response) error {
	body, err := encodeService(ua.ServiceTypeID(resp), resp)
	if err != nil {
		return err
	}
	return c.sendMessage(requestID, body)
}

// endpoints is the one endpoint offered: policy None, anonymous.
func (c *conn) endpoints() []*ua.EndpointDescription {
	return []*ua.EndpointDescription{{
		EndpointURL: c.s.Endpoint,
		Server: &ua.ApplicationDescription{
			ApplicationURI:  "urn:tagbridge:hostileua",
			ProductURI:      "urn:tagbridge:hostileua",
			ApplicationName: ua.NewLocalizedText("hostileua"),
			ApplicationType: ua.ApplicationTypeServer,
		},
		SecurityMode:        ua.MessageSecurityModeNone,
		SecurityPolicyURI:   nonePolicyURI,
		UserIdentityTokens:  []*ua.UserTokenPolicy{{PolicyID: "anonymous", TokenType: ua.UserTokenTypeAnonymous}},
		TransportProfileURI: "http://opcfoundation.org/UA-Profile/Transport/uatcp-uasc-uabinary",
	}}
}

// readResults answers reads of the namespace array and the server state;
// every other node is unknown.
func readResults(nodes []*ua.ReadValueID) []*ua.DataValue {
	out := make([]*ua.DataValue, len(nodes))
	for i, n := range nodes {
		var v any
		switch {
		case n.NodeID.Namespace() == 0 && n.NodeID.IntID() == id.Server_NamespaceArray:
			v = []string{"http://opcfoundation.org/UA/", "urn:tagbridge:hostileua"}
		case n.NodeID.Namespace() == 0 && n.NodeID.IntID() == id.Server_ServerStatus_State:
			v = int32(ua.ServerStateRunning)
		default:
			out[i] = &ua.DataValue{EncodingMask: ua.DataValueStatusCode, Status: ua.StatusBadNodeIDUnknown}
			continue
		}
		out[i] = &ua.DataValue{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(v)}
	}
	return out
}

func fault(handle uint32, code ua.StatusCode) *ua.ServiceFault {
	h := responseHeader(handle)
	h.ServiceResult = code
	return &ua.ServiceFault{ResponseHeader: h}
}

func goods(n int) []ua.StatusCode { return make([]ua.StatusCode, n) }

func nonce() []byte {
	b := make([]byte, 32)
	rand.Read(b)
	return b
}

// publisher answers queued Publish requests, one every publishEvery.
type publisher struct {
	c       *conn
	mu      sync.Mutex
	items   map[uint32]bool // client handle -> is the server's CurrentTime
	pending []pendingPublish
	sent    int // notification messages sent
	value   int32
	ticker  *time.Ticker
	done    chan struct{}
	exited  chan struct{}
}

type pendingPublish struct {
	requestID, handle uint32
	acks              int
}

func (p *publisher) add(items []*ua.MonitoredItemCreateRequest) []*ua.MonitoredItemCreateResult {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*ua.MonitoredItemCreateResult, len(items))
	for i, it := range items {
		node := it.ItemToMonitor.NodeID
		p.items[it.RequestedParameters.ClientHandle] = node.Namespace() == 0 && node.IntID() == id.Server_ServerStatus_CurrentTime
		out[i] = &ua.MonitoredItemCreateResult{
			MonitoredItemID:         uint32(len(p.items)),
			RevisedSamplingInterval: float64(publishEvery / time.Millisecond),
			RevisedQueueSize:        1,
			FilterResult:            ua.NewExtensionObject(nil),
		}
	}
	return out
}

func (p *publisher) queue(requestID, handle uint32, acks int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pending = append(p.pending, pendingPublish{requestID, handle, acks})
	if p.ticker == nil {
		p.ticker = time.NewTicker(publishEvery)
		p.done, p.exited = make(chan struct{}), make(chan struct{})
		go p.run()
	}
}

func (p *publisher) stop() {
	p.mu.Lock()
	started := p.ticker != nil
	p.mu.Unlock()
	if started {
		close(p.done)
		<-p.exited
		p.ticker.Stop()
	}
}

func (p *publisher) run() {
	defer close(p.exited)
	for {
		select {
		case <-p.ticker.C:
		case <-p.done:
			return
		case <-p.c.s.done:
			return
		}
		p.mu.Lock()
		if len(p.pending) == 0 {
			p.mu.Unlock()
			continue
		}
		req := p.pending[0]
		p.pending = p.pending[1:]
		resp := p.next(req)
		p.mu.Unlock()
		if err := p.c.respond(req.requestID, resp); err != nil {
			return
		}
	}
}

// next is the next notification message, in a response to req.
func (p *publisher) next(req pendingPublish) *ua.PublishResponse {
	p.sent++
	seq := uint32(p.sent)
	if p.sent > JumpAfter {
		seq = JumpTo + uint32(p.sent-JumpAfter-1)
		if p.sent == JumpAfter+1 {
			p.c.attacked()
		}
	}
	p.value++
	now := time.Now()
	var changes []*ua.MonitoredItemNotification
	for handle, isClock := range p.items {
		v := ua.MustVariant(p.value)
		if isClock {
			v = ua.MustVariant(now)
		}
		changes = append(changes, &ua.MonitoredItemNotification{
			ClientHandle: handle,
			Value:        &ua.DataValue{EncodingMask: ua.DataValueValue | ua.DataValueSourceTimestamp | ua.DataValueServerTimestamp, Value: v, SourceTimestamp: now, ServerTimestamp: now},
		})
	}
	return &ua.PublishResponse{
		ResponseHeader:           responseHeader(req.handle),
		SubscriptionID:           1,
		AvailableSequenceNumbers: []uint32{seq},
		NotificationMessage: &ua.NotificationMessage{
			SequenceNumber:   seq,
			PublishTime:      now,
			NotificationData: []*ua.ExtensionObject{ua.NewExtensionObject(&ua.DataChangeNotification{MonitoredItems: changes})},
		},
		Results: goods(req.acks),
	}
}
