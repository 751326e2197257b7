package opcua

import (
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/gopcua/opcua/ua"
)

// A session the server ends reads as the server's doing, not the agent's.
func TestServerSideWording(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"session closed", fmt.Errorf("publish: %w", ua.StatusBadSessionClosed), "publish: the server closed the session (BadSessionClosed, 0x80260000)"},
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
