package command

import (
	"testing"
	"unicode/utf8"
)

// FuzzDecodeJSON feeds command payloads from outside to the decoder: it
// must not panic, and what it accepts must be a command it can answer.
func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{
		`{"id":"a","value":1}`,
		`{"id":"a","value":[1,2.5,"x",true,null]}`,
		`{"id":"a","value":{"Type":11,"Body":1.5},"expires":"2026-12-03T15:00:00Z"}`,
		`{"id":"a","value":{"UaType":6,"Value":7},"time":"2026-12-03T15:00:00.5+01:00"}`,
		`{"id":"a","args":[1,"b"],"hmac":"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"}`,
		`{"id":"","value":1}`, `{}`, `[]`, `null`, `{"id":1}`, `{"id":"a","value":1}{}`,
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, payload []byte, call bool) {
		kind := Write
		if call {
			kind = Call
		}
		req, err := decodeJSON(kind, "t/set", payload)
		if err != nil {
			if _, ok := err.(*Refusal); !ok {
				t.Fatalf("error %T is not a refusal: %v", err, err)
			}
			if !utf8.ValidString(req.ID) || len(req.ID) > maxID {
				t.Fatalf("refusal carries an id it should not echo: %q", req.ID)
			}
			return
		}
		if req.ID == "" || len(req.Signed) == 0 {
			t.Fatalf("accepted a command without id or signed bytes: %+v", req)
		}
		if kind == Write && req.Value == nil {
			t.Fatalf("accepted a write without a value: %s", payload)
		}
		EncodeResult(Result{ID: req.ID, Status: Good, Value: req.Value, HasValue: true, Outputs: req.Args})
	})
}

// FuzzDecodeDCMD does the same for Sparkplug DCMD payloads.
func FuzzDecodeDCMD(f *testing.F) {
	f.Add(dcmd(1, 2, metric("speed", 0, 10, double(1.5))))
	f.Add(dcmd(1, 2, metric("", 7, 31, func(m []byte) []byte { return append(m, 0x82, 0x01, 8, 0, 0, 0, 0, 0, 0, 0, 0) })))
	f.Add([]byte{0x12, 0x03, 0x0a, 0x01, 0x41})
	sp := &sparkplugRoutes{prefix: "spBv1.0/g/DCMD/n/", devices: map[string]string{"press1": "press1"}}
	f.Fuzz(func(t *testing.T, payload []byte) {
		items, err := sp.decode("spBv1.0/g/DCMD/n/press1", payload)
		if err != nil {
			return
		}
		for _, it := range items {
			if it.err == nil && (it.req.Target == "" || it.req.Value == nil) {
				t.Fatalf("accepted a metric without target or value: %+v", it.req)
			}
		}
	})
}

// FuzzDecodeNCMD does the same for NCMD payloads: every accepted write
// names a device's tag.
func FuzzDecodeNCMD(f *testing.F) {
	f.Add(dcmd(1, 2, metric("press1/speed", 0, 10, double(1.5))))
	f.Add(dcmd(1, 2, metric("Node Control/Reboot", 0, 11, func(m []byte) []byte { return append(m, 0x70, 1) })))
	f.Add(dcmd(1, 2, withHMAC("t", "i", "k", metric("speed", 0, 10, double(2)))))
	sp := &sparkplugRoutes{prefix: "spBv1.0/g/DCMD/n/", ncmd: "spBv1.0/g/NCMD/n", devices: map[string]string{"press1": "press1"}}
	f.Fuzz(func(t *testing.T, payload []byte) {
		items, err := sp.decodeNCMD(sp.ncmd, payload)
		if err != nil {
			return
		}
		for _, it := range items {
			if it.err == nil && (it.req.PLC != "press1" || it.req.Target == "" || it.req.Value == nil) {
				t.Fatalf("accepted a metric without device, tag or value: %+v", it.req)
			}
		}
	})
}
