package opcua

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tagbridge/tagbridge/collectors/opcua/uatcp"
	"github.com/tagbridge/tagbridge/config"
	"github.com/tagbridge/tagbridge/scripts/faultproxy"
	"github.com/tagbridge/tagbridge/scripts/opcua-peer/peerproc"
)

// Reverse connect: the PLC (node-opcua) dials the agent's listener through
// a proxy, the agent checks the ReverseHello's ServerUri and runs the
// secure channel (Basic256Sha256 SignAndEncrypt, trust checks included)
// and session over that connection. The endpoint configured is not
// reachable: the agent never dials. A cut is recovered on the next
// connection the PLC opens, without a gap; a ReverseHello naming another
// server is refused.
func TestSessionReverseConnect(t *testing.T) {
	listen := "127.0.0.1:" + freePort(t)
	proxy := faultproxy.Start(t, listen)
	peerproc.Start(t, peerproc.Options{Tags: 8, Args: []string{"-reverse", "opc.tcp://" + proxy.Addr(), "-reverse-delay", "200ms"}})
	plc := exceptionBased(recoveryPLC(t, "opc.tcp://127.0.0.1:1", "policy: Basic256Sha256, mode: SignAndEncrypt, trust: fingerprint_and_expiry, auto_accept: true, verify_hostname: false"))
	plc.Reverse = &config.Reverse{Listen: listen, ServerURI: "urn:tagbridge:opcua-peer"}
	r, s := startSessionValue(t, plc)
	r.waitValues(t, "values over the reverse connection", 10, 30*time.Second)

	// A stranger's ReverseHello is refused and named.
	nc, err := net.Dial("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := nc.Write(uatcp.AppendReverseHello(nil, uatcp.ReverseHello{ServerURI: "urn:stranger", EndpointURL: "opc.tcp://stranger:4840"})); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the stranger refused", 10*time.Second, func() bool {
		return strings.Contains(r.logs.String(), `"server_uri":"urn:stranger"`)
	})

	proxy.Cut()
	waitUntil(t, "a recovery", 30*time.Second, func() bool { return s.States().Snapshot()[0].Recoveries >= 1 })
	r.waitValues(t, "values after the cut", 30, 30*time.Second)
	r.shutdown(t)
	if st := s.States().Snapshot()[0]; st.Reconnects != 0 {
		t.Errorf("%d reconnects, want the session reactivated on the PLC's next connection", st.Reconnects)
	}
	checkNoGap(t, r, 30)
	t.Logf("REVERSE values=%d recoveries=%d", len(r.counterValues("int32_0001")), s.States().Snapshot()[0].Recoveries)
}
