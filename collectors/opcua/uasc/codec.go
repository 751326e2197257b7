package uasc

import (
	"fmt"
	"strings"

	"github.com/gopcua/opcua/ua"

	"github.com/tagbridge/tagbridge/collectors/opcua/uadecode"
	"github.com/tagbridge/tagbridge/collectors/opcua/uafast"
)

// encodeRequest encodes req as a message body: the node id of its binary
// encoding, then the request. gopcua's encoder panics on some nil fields: a
// caller's incomplete request is an error of that request, not a crash.
func encodeRequest(req ua.Request) (b []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			b, err = nil, fmt.Errorf("encode %s: incomplete request (encoder panicked: %v)", typeName(req), r)
		}
	}()
	id := ua.ServiceTypeID(req)
	if id == 0 {
		return nil, fmt.Errorf("encode %s: not a registered service type", typeName(req))
	}
	typeID, err := ua.NewFourByteExpandedNodeID(0, id).Encode()
	if err != nil {
		return nil, fmt.Errorf("encode %s type id: %w", typeName(req), err)
	}
	// The requests sent all the time or once per tag skip reflection.
	if body, ok := uafast.EncodeRequest(req); ok {
		return append(typeID, body...), nil
	}
	body, err := ua.Encode(req)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", typeName(req), err)
	}
	return append(typeID, body...), nil
}

// decodeResponse decodes a message body into the service response it names,
// with the bounded decoder (uadecode): whatever the server sent costs at
// most an error, never a stack overflow or an allocation the message does
// not account for. The recover is a last line for types that decode
// themselves. PublishResponses with data changes and ReadResponses of
// scalars take the fast path (uafast), which declines what it does not
// cover to uadecode.
func decodeResponse(b []byte) (resp ua.Response, err error) {
	defer func() {
		if r := recover(); r != nil {
			resp, err = nil, fmt.Errorf("decode response: malformed message (decoder panicked: %v)", r)
		}
	}()
	if res, ok := uafast.Decode(b); ok {
		return res, nil
	}
	if res, ok := uafast.DecodeRead(b); ok { // start-up: every tag's DataType and ValueRank
		return res, nil
	}
	_, v, err := uadecode.Service(b)
	if err != nil {
		return nil, fmt.Errorf("decode response: %w", err)
	}
	resp, ok := v.(ua.Response)
	if !ok {
		return nil, fmt.Errorf("decode response: %s is not a response", typeName(v))
	}
	if resp.Header() == nil {
		return nil, fmt.Errorf("decode response: %s without response header", typeName(v))
	}
	return resp, nil
}

// typeName is a service type's name: "ReadRequest".
func typeName(v any) string {
	n := fmt.Sprintf("%T", v)
	return n[strings.LastIndexByte(n, '.')+1:]
}

// serviceName is the name of a request's service: "Read".
func serviceName(req ua.Request) string {
	return strings.TrimSuffix(typeName(req), "Request")
}
