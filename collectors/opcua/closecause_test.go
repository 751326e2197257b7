package opcua

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/scripts/opcua-peer/peerproc"
)

// A session the server ends reads as the server's doing, not the agent's.
func TestServerSideWording(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"standard text", fmt.Errorf("publish: %w", ua.StatusBadSessionClosed), "publish: the server closed the session (BadSessionClosed, 0x80260000)"},
		{"shutdown", fmt.Errorf("health check: %w", ua.StatusBadShutdown), "health check: the server is shutting down (BadShutdown, 0x800C0000)"},
		{"halted", fmt.Errorf("read: %w", ua.StatusBadServerHalted), "read: the server has stopped (BadServerHalted, 0x800E0000)"},
		{"other status", fmt.Errorf("read: %w", ua.StatusBadTimeout), "read: " + ua.StatusBadTimeout.Error()},
		{"no status", fmt.Errorf("read: %w", io.EOF), "read: EOF"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := serverSide(tc.err)
			if got.Error() != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
			if !errors.Is(got, tc.err) {
				t.Error("the error chain is lost")
			}
		})
	}
	if serverSide(nil) != nil {
		t.Error("nil is not nil")
	}
}

// node-opcua stopped gracefully (SIGTERM) closes its sessions
// (BadSessionClosed): the state reason and the log say the server did it.
func TestServerShutdownWording(t *testing.T) {
	peer := peerproc.Start(t, peerproc.Options{Tags: 12})
	var mu sync.Mutex
	var reasons []string
	r, _ := startTweakedSession(t, limitsPLC(t, "small", peer.Endpoint), func(s *Session) {
		s.states.OnChange(func(st collectors.PLCState) {
			mu.Lock()
			defer mu.Unlock()
			reasons = append(reasons, st.State+": "+st.Reason)
		})
	})
	waitUntil(t, "values from every tag", 30*time.Second, func() bool { return r.tagsSeen() == 12 })
	peer.Stop()
	waitUntil(t, "the session down", 20*time.Second, func() bool { return strings.Contains(r.logs.String(), "plc session down") })
	mu.Lock()
	defer mu.Unlock()
	var recovering string
	for _, s := range reasons {
		if strings.HasPrefix(s, collectors.StateRecovering+": ") {
			recovering = s
		}
	}
	if !strings.Contains(recovering, "the server closed the session") {
		t.Errorf("state reasons do not say the server closed the session:\n%s", strings.Join(reasons, "\n"))
	}
	if !strings.Contains(r.logs.String(), `"message":"the plc ended the session; recovering the subscriptions on a new one"`) {
		t.Errorf("log lacks the server's doing:\n%s", r.logs)
	}
}
