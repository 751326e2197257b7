package command

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"time"
	"unicode/utf8"
)

// maxID bounds a command id, which is remembered and echoed.
const maxID = 128

// jsonCommand is a command payload of the json and opcua_json formats:
// {"id": "...", "value": ..., "expires": "RFC 3339", "time": "RFC 3339",
// "hmac": "hex"}; a call has "args": [...] instead of "value".
type jsonCommand struct {
	ID      *string         `json:"id"`
	Value   json.RawMessage `json:"value"`
	Args    json.RawMessage `json:"args"`
	Expires *string         `json:"expires"`
	Time    *string         `json:"time"`
	HMAC    *string         `json:"hmac"`
}

// decodeJSON decodes a json or opcua_json command sent on topic. A value
// may be plain JSON or, as Part 14 writes a Variant, {"Type": id, "Body": v}
// or {"UaType": id, "Value": v}.
func decodeJSON(kind Kind, topic string, payload []byte) (Request, error) {
	var c jsonCommand
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Request{}, refuse(BadRequest, "not a command object: %s", jsonError(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return Request{}, refuse(BadRequest, "not a command object: data after the object")
	}
	var req Request
	if c.ID != nil {
		req.ID = *c.ID
	}
	switch {
	case c.ID == nil || req.ID == "":
		return req, refuse(BadRequest, "id required")
	case len(req.ID) > maxID || !utf8.ValidString(req.ID):
		id := req.ID
		req.ID = ""
		return req, refuse(BadRequest, "id must be valid UTF-8 of at most %d bytes, got %d bytes", maxID, len(id))
	}
	var expires string
	if c.Expires != nil {
		expires = *c.Expires
		t, err := time.Parse(time.RFC3339Nano, expires)
		if err != nil {
			return req, refuse(BadRequest, "expires %q is not an RFC 3339 time", show(expires))
		}
		req.Expires = t
	}
	if c.Time != nil {
		t, err := time.Parse(time.RFC3339Nano, *c.Time)
		if err != nil {
			return req, refuse(BadRequest, "time %q is not an RFC 3339 time", show(*c.Time))
		}
		req.Sent = t
	}
	if c.HMAC != nil {
		mac, err := hex.DecodeString(*c.HMAC)
		if err != nil || len(mac) != 32 {
			return req, refuse(BadSignature, "hmac must be 64 hex digits (HMAC-SHA256)")
		}
		req.MAC = mac
	}
	signed := c.Value
	switch kind {
	case Write:
		if c.Args != nil {
			return req, refuse(BadRequest, `"args" is for method calls; a write takes "value"`)
		}
		if c.Value == nil {
			return req, refuse(BadRequest, "value required")
		}
		v, typ, err := decodeValue(c.Value)
		if err != nil {
			return req, err
		}
		req.Value, req.Type = v, typ
	case Call:
		if c.Value != nil {
			return req, refuse(BadRequest, `"value" is for writes; a call takes "args"`)
		}
		signed = c.Args
		if c.Args != nil {
			var raw []json.RawMessage
			if err := json.Unmarshal(c.Args, &raw); err != nil {
				return req, refuse(BadRequest, "args must be an array")
			}
			req.Args = make([]any, len(raw))
			for i, r := range raw {
				v, _, err := decodeValue(r)
				if err != nil {
					return req, err
				}
				req.Args[i] = v
			}
		}
	}
	req.Signed = SignedBytes(topic, req.ID, signed, expires)
	return req, nil
}

// partTypes names Part 6's built-in type ids, as Part 14 writes them.
var partTypes = map[int]string{1: "Boolean", 2: "SByte", 3: "Byte", 4: "Int16", 5: "UInt16", 6: "Int32", 7: "UInt32",
	8: "Int64", 9: "UInt64", 10: "Float", 11: "Double", 12: "String", 13: "DateTime", 15: "ByteString"}

func decodeValue(raw json.RawMessage) (v any, typ string, err error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, "", refuse(BadRequest, "value: %s", jsonError(err))
	}
	m, ok := v.(map[string]any)
	if !ok {
		return v, "", nil
	}
	// A Part 14 Variant: {"Type": 6, "Body": 42} (1.04) or {"UaType": 6, "Value": 42} (1.05).
	for _, keys := range [][2]string{{"Type", "Body"}, {"UaType", "Value"}} {
		id, hasType := m[keys[0]]
		body, hasBody := m[keys[1]]
		if !hasType || len(m) > 2 || len(m) == 2 && !hasBody {
			continue
		}
		n, ok := id.(json.Number)
		i, err := n.Int64()
		if !ok || err != nil || partTypes[int(i)] == "" {
			return nil, "", refuse(WrongType, "%s %v is not a writable built-in type id", keys[0], id)
		}
		return body, partTypes[int(i)], nil
	}
	return nil, "", refuse(WrongType, "structures are not writable")
}

// jsonError shortens encoding/json's messages to what a sender can act on.
func jsonError(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("invalid JSON at byte %d", se.Offset)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field != "" {
			return fmt.Sprintf("%q must be a %s", te.Field, te.Type)
		}
		return "expected a JSON object"
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "empty or truncated"
	}
	return err.Error()
}

// jsonResult is the result payload of the json and opcua_json formats.
type jsonResult struct {
	ID         string `json:"id"`
	Status     string `json:"status"`
	StatusCode uint32 `json:"status_code"`
	Value      any    `json:"value,omitempty"`
	ReadBack   string `json:"read_back,omitempty"`
	Outputs    []any  `json:"outputs,omitempty"`
	Error      string `json:"error,omitempty"`
}

// EncodeResult writes a result as JSON. A value JSON cannot hold (NaN,
// infinities) is written as null.
func EncodeResult(r Result) []byte {
	jr := jsonResult{ID: r.ID, Status: r.Status.Name, StatusCode: r.Status.Code, ReadBack: r.ReadBack, Outputs: jsonSafeAll(r.Outputs), Error: r.Error}
	if r.HasValue {
		jr.Value = jsonSafe(r.Value)
	}
	b, err := json.Marshal(jr)
	if err != nil { // a value of a type JSON cannot hold
		jr.Value, jr.Outputs = nil, nil
		jr.Error = "value not representable in JSON"
		b, _ = json.Marshal(jr)
	}
	return b
}

func jsonSafe(v any) any {
	switch x := v.(type) {
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil
		}
	case float32:
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return nil
		}
	case []any:
		return jsonSafeAll(x)
	}
	return v
}

func jsonSafeAll(vs []any) []any {
	if vs == nil {
		return nil
	}
	out := make([]any, len(vs))
	for i, v := range vs {
		out[i] = jsonSafe(v)
	}
	return out
}
