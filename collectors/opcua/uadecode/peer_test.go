package uadecode

import (
	"bytes"
	"context"
	"encoding/binary"
	"reflect"
	"testing"
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"
	"github.com/tagbridge/tagbridge/collectors/opcua/uatcp"
	"github.com/tagbridge/tagbridge/scripts/opcua-peer/peerproc"
	"github.com/tagbridge/tagbridge/scripts/open62541/o62proc"
)

// TestPeersResponses: every response of two other stacks (open62541 and
// node-opcua) to a client session (GetEndpoints, CreateSession,
// ActivateSession, Browse, Read of every attribute of their nodes,
// subscriptions and Publish) decodes as gopcua decodes it. These are
// encodings gopcua's encoder did not make.
func TestPeersResponses(t *testing.T) {
	t.Run("open62541", func(t *testing.T) {
		s := o62proc.Start(t, o62proc.Options{Policies: []string{"None"}, Tags: 8, Interval: 50 * time.Millisecond})
		exerciseServer(t, s.Endpoint)
	})
	t.Run("node-opcua", func(t *testing.T) {
		p := peerproc.Start(t, peerproc.Options{Policies: []string{"None"}, Modes: []string{"None"}, Tags: 8, Interval: 50 * time.Millisecond})
		exerciseServer(t, p.Endpoint)
	})
}

// rawClient speaks UA Secure Conversation with security policy None and
// keeps every response's body as the server encoded it.
type rawClient struct {
	t         *testing.T
	conn      *uatcp.Conn
	channelID uint32
	tokenID   uint32
	seq       uint32
	handle    uint32
	auth      *ua.NodeID
	compared  int
}

func exerciseServer(t *testing.T, endpoint string) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	conn, err := uatcp.Dial(ctx, endpoint, uatcp.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	c := &rawClient{t: t, conn: conn, auth: ua.NewTwoByteNodeID(0)}

	opn := c.open()
	c.channelID, c.tokenID = opn.SecurityToken.ChannelID, opn.SecurityToken.TokenID

	eps := c.call(&ua.GetEndpointsRequest{EndpointURL: endpoint}).(*ua.GetEndpointsResponse)
	anonymous := ""
	for _, ep := range eps.Endpoints {
		for _, tok := range ep.UserIdentityTokens {
			if ep.SecurityMode == ua.MessageSecurityModeNone && tok.TokenType == ua.UserTokenTypeAnonymous {
				anonymous = tok.PolicyID
			}
		}
	}

	cs := c.call(&ua.CreateSessionRequest{
		ClientDescription: &ua.ApplicationDescription{ApplicationURI: "urn:tagbridge:uadecode-test", ApplicationName: ua.NewLocalizedText("uadecode test"), ApplicationType: ua.ApplicationTypeClient},
		EndpointURL:       endpoint, SessionName: "uadecode", ClientNonce: bytes.Repeat([]byte{7}, 32), RequestedSessionTimeout: 60000,
	}).(*ua.CreateSessionResponse)
	c.auth = cs.AuthenticationToken
	c.call(&ua.ActivateSessionRequest{
		ClientSignature:    &ua.SignatureData{},
		UserIdentityToken:  ua.NewExtensionObject(&ua.AnonymousIdentityToken{PolicyID: anonymous}),
		UserTokenSignature: &ua.SignatureData{},
	})

	// Browse two levels down from Objects and Types, then read every
	// attribute of what was found.
	nodes := []*ua.NodeID{ua.NewNumericNodeID(0, id.ObjectsFolder), ua.NewNumericNodeID(0, id.TypesFolder)}
	seen := map[string]bool{}
	for level := 0; level < 2; level++ {
		var next []*ua.NodeID
		req := &ua.BrowseRequest{View: &ua.ViewDescription{ViewID: ua.NewTwoByteNodeID(0)}}
		for _, n := range nodes {
			req.NodesToBrowse = append(req.NodesToBrowse, &ua.BrowseDescription{
				NodeID: n, BrowseDirection: ua.BrowseDirectionForward, ReferenceTypeID: ua.NewNumericNodeID(0, id.HierarchicalReferences),
				IncludeSubtypes: true, ResultMask: uint32(ua.BrowseResultMaskAll),
			})
		}
		res := c.call(req).(*ua.BrowseResponse)
		for _, r := range res.Results {
			for _, ref := range r.References {
				if s := ref.NodeID.NodeID.String(); !seen[s] && ref.NodeID.ServerIndex == 0 && !ref.NodeID.HasNamespaceURI() {
					seen[s] = true
					next = append(next, ref.NodeID.NodeID)
				}
			}
		}
		nodes = append(nodes, next...)
	}
	for _, extra := range []uint32{id.Server_NamespaceArray, id.Server_ServerStatus, id.Server_ServerStatus_BuildInfo, id.Server_ServerArray,
		id.Server_ServerCapabilities_LocaleIDArray, id.Server_ServerCapabilities_ServerProfileArray, id.ServerStatusDataType,
		id.BuildInfo, id.EUInformation, id.Range, id.Argument, id.Server_GetMonitoredItems_InputArguments, id.Server_GetMonitoredItems_OutputArguments, 999999} {
		nodes = append(nodes, ua.NewNumericNodeID(0, extra))
	}
	var variables []*ua.NodeID
	for from := 0; from < len(nodes); from += 50 {
		batch := nodes[from:min(from+50, len(nodes))]
		req := &ua.ReadRequest{TimestampsToReturn: ua.TimestampsToReturnBoth}
		for _, n := range batch {
			for attr := ua.AttributeIDNodeID; attr <= ua.AttributeIDAccessLevelEx; attr++ {
				req.NodesToRead = append(req.NodesToRead, &ua.ReadValueID{NodeID: n, AttributeID: attr, DataEncoding: &ua.QualifiedName{}})
			}
		}
		res := c.call(req).(*ua.ReadResponse)
		for i, r := range res.Results {
			if req.NodesToRead[i].AttributeID == ua.AttributeIDNodeClass && r.Status == ua.StatusOK {
				if nc, ok := r.Value.Value().(int32); ok && ua.NodeClass(nc) == ua.NodeClassVariable {
					variables = append(variables, req.NodesToRead[i].NodeID)
				}
			}
		}
	}
	// Diagnostics of a failed read: all diagnostic bits.
	c.callWith(&ua.ReadRequest{NodesToRead: []*ua.ReadValueID{{NodeID: ua.NewStringNodeID(7, "missing"), AttributeID: ua.AttributeIDValue, DataEncoding: &ua.QualifiedName{}}}}, 0x3ff)
	t.Logf("%s: read every attribute of %d nodes, %d variables", endpoint, len(nodes), len(variables))

	sub := c.call(&ua.CreateSubscriptionRequest{RequestedPublishingInterval: 50, RequestedLifetimeCount: 600, RequestedMaxKeepAliveCount: 20, PublishingEnabled: true}).(*ua.CreateSubscriptionResponse)
	items := &ua.CreateMonitoredItemsRequest{SubscriptionID: sub.SubscriptionID, TimestampsToReturn: ua.TimestampsToReturnBoth}
	for i, v := range variables {
		items.ItemsToCreate = append(items.ItemsToCreate, &ua.MonitoredItemCreateRequest{
			ItemToMonitor:  &ua.ReadValueID{NodeID: v, AttributeID: ua.AttributeIDValue, DataEncoding: &ua.QualifiedName{}},
			MonitoringMode: ua.MonitoringModeReporting,
			RequestedParameters: &ua.MonitoringParameters{ClientHandle: uint32(i), SamplingInterval: 50,
				Filter: ua.NewExtensionObject(nil), QueueSize: 10, DiscardOldest: true},
		})
	}
	c.call(items)
	dataChanges := 0
	var acks []*ua.SubscriptionAcknowledgement
	for range 6 {
		pub := c.call(&ua.PublishRequest{SubscriptionAcknowledgements: acks}).(*ua.PublishResponse)
		acks = nil
		if m := pub.NotificationMessage; m != nil && len(m.NotificationData) > 0 {
			acks = append(acks, &ua.SubscriptionAcknowledgement{SubscriptionID: pub.SubscriptionID, SequenceNumber: m.SequenceNumber})
			for _, n := range m.NotificationData {
				if dc, ok := n.Value.(*ua.DataChangeNotification); ok {
					dataChanges += len(dc.MonitoredItems)
				}
			}
		}
	}
	c.call(&ua.DeleteSubscriptionsRequest{SubscriptionIDs: []uint32{sub.SubscriptionID}})
	c.call(&ua.CloseSessionRequest{DeleteSubscriptions: true})
	if dataChanges == 0 {
		t.Fatalf("no data change notifications in 6 Publish responses")
	}
	t.Logf("%s: %d responses decoded as gopcua decodes them, %d data changes among them", endpoint, c.compared, dataChanges)
}

// open issues the secure channel (policy None).
func (c *rawClient) open() *ua.OpenSecureChannelResponse {
	req := &ua.OpenSecureChannelRequest{RequestHeader: c.header(0), RequestType: ua.SecurityTokenRequestTypeIssue,
		SecurityMode: ua.MessageSecurityModeNone, RequestedLifetime: 600000}
	var chunk []byte
	chunk = append(chunk, "OPNF\x00\x00\x00\x00"...)
	chunk = binary.LittleEndian.AppendUint32(chunk, 0)
	chunk = appendString(chunk, ua.SecurityPolicyURINone)
	chunk = binary.LittleEndian.AppendUint32(chunk, 0xffffffff) // sender certificate
	chunk = binary.LittleEndian.AppendUint32(chunk, 0xffffffff) // receiver thumbprint
	return c.exchange(chunk, req).(*ua.OpenSecureChannelResponse)
}

func (c *rawClient) call(req ua.Request) ua.Response { return c.callWith(req, 0) }

func (c *rawClient) callWith(req ua.Request, diagnostics uint32) ua.Response {
	reflect.ValueOf(req).Elem().FieldByName("RequestHeader").Set(reflect.ValueOf(c.header(diagnostics)))
	var chunk []byte
	chunk = append(chunk, "MSGF\x00\x00\x00\x00"...)
	chunk = binary.LittleEndian.AppendUint32(chunk, c.channelID)
	chunk = binary.LittleEndian.AppendUint32(chunk, c.tokenID)
	resp, ok := c.exchange(chunk, req).(ua.Response)
	if !ok {
		c.t.Fatalf("%T: the response is no ua.Response", req)
	}
	if fault, ok := resp.(*ua.ServiceFault); ok {
		c.t.Fatalf("%T: service fault %v", req, fault.ResponseHeader.ServiceResult)
	}
	return resp
}

func (c *rawClient) header(diagnostics uint32) *ua.RequestHeader {
	c.handle++
	return &ua.RequestHeader{AuthenticationToken: c.auth, Timestamp: time.Now(), RequestHandle: c.handle,
		ReturnDiagnostics: diagnostics, TimeoutHint: 10000, AdditionalHeader: ua.NewExtensionObject(nil)}
}

// exchange sends one request in one chunk after the security header in
// chunk, collects the response's chunks, and compares the decodings of its
// body.
func (c *rawClient) exchange(chunk []byte, req any) any {
	c.t.Helper()
	c.seq++
	chunk = binary.LittleEndian.AppendUint32(chunk, c.seq)
	chunk = binary.LittleEndian.AppendUint32(chunk, c.handle) // request id
	head, err := ua.NewFourByteExpandedNodeID(0, ua.ServiceTypeID(req)).Encode()
	if err != nil {
		c.t.Fatal(err)
	}
	body, err := ua.Encode(req)
	if err != nil {
		c.t.Fatalf("encode %T: %v", req, err)
	}
	chunk = append(append(chunk, head...), body...)
	binary.LittleEndian.PutUint32(chunk[4:8], uint32(len(chunk)))
	if err := c.conn.WriteChunk(chunk); err != nil {
		c.t.Fatalf("send %T: %v", req, err)
	}

	var msg []byte
	for {
		in, err := c.conn.ReadChunk()
		if err != nil {
			c.t.Fatalf("response to %T: %v", req, err)
		}
		hdr := 8 + 4
		if string(in[:3]) == "OPN" {
			for range 3 { // policy URI, certificate, thumbprint
				n := int32(binary.LittleEndian.Uint32(in[hdr:]))
				hdr += 4 + max(int(n), 0)
			}
		} else {
			hdr += 4 // token id
		}
		hdr += 8 // sequence header
		msg = append(msg, in[hdr:]...)
		switch in[3] {
		case 'F':
			return c.compare(req, msg)
		case 'A':
			c.t.Fatalf("response to %T aborted", req)
		}
	}
}

func (c *rawClient) compare(req any, msg []byte) any {
	c.t.Helper()
	wantID, want, err := ua.DecodeService(msg)
	if err != nil {
		c.t.Fatalf("response to %T: gopcua: %v", req, err)
	}
	gotID, got, err := Service(msg)
	if err != nil {
		c.t.Fatalf("response to %T: %v", req, err)
	}
	if !reflect.DeepEqual(gotID, wantID) || !reflect.DeepEqual(got, want) {
		c.t.Fatalf("response to %T (%d bytes) differs\nours:   %s\ngopcua: %s", req, len(msg), dump(got), dump(want))
	}
	c.compared++
	return got
}

func appendString(b []byte, s string) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}
