package uatcp

import (
	"net"
	"strings"
	"testing"
	"time"
)

func TestReadReverseHello(t *testing.T) {
	good := AppendReverseHello(nil, ReverseHello{ServerURI: "urn:plc1", EndpointURL: "opc.tcp://plc1:4840"})
	cases := []struct {
		name string
		msg  []byte
		want string // error substring; "" for success
	}{
		{"good", good, ""},
		{"not RHE", []byte("HELF\x10\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"), "not RHEF"},
		{"too large", []byte("RHEF\xff\xff\x00\x00"), "size 65535 outside"},
		{"string beyond the message", append([]byte("RHEF\x14\x00\x00\x00\x09\x00\x00\x00urn:"), 0, 0, 0, 0), "server uri: length 9"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, b := net.Pipe()
			defer a.Close()
			defer b.Close()
			go b.Write(tc.msg)
			rh, err := ReadReverseHello(a, time.Now().Add(time.Second))
			switch {
			case tc.want == "" && err != nil:
				t.Fatal(err)
			case tc.want == "" && (rh.ServerURI != "urn:plc1" || rh.EndpointURL != "opc.tcp://plc1:4840"):
				t.Errorf("got %+v", rh)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}
