package statusapi

import (
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/internal/testkit"
)

// reconnecting is a fixed source whose entries wait to reconnect or not.
type reconnecting struct {
	*fixed
	mu    sync.Mutex
	asked []string
}

func (r *reconnecting) askedSoFar() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.asked)
}

func (r *reconnecting) Reconnect(plc string) error {
	for _, p := range r.PLCs() {
		if p.PLC != plc {
			continue
		}
		if p.State != collectors.StateDisconnected {
			return ErrNotWaiting
		}
		r.mu.Lock()
		r.asked = append(r.asked, plc)
		r.mu.Unlock()
		return nil
	}
	return ErrUnknownPLC
}

// TestReconnect: POST /reconnect/{plc} behind the token asks the source,
// and answers 202, 404 for an unknown entry, 409 for one not waiting.
func TestReconnect(t *testing.T) {
	src := &reconnecting{fixed: healthySource()}
	src.plcs[1].State = collectors.StateDisconnected // oven2
	s, _, _ := serve(t, testkit.Addr(t), src)
	client := &http.Client{Timeout: 5 * time.Second}
	base := "http://" + s.Addr()
	post := func(path, auth string) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		buf := make([]byte, 512)
		n, _ := resp.Body.Read(buf)
		b.Write(buf[:n])
		return resp.StatusCode, b.String()
	}
	if code, _ := post("/reconnect/oven2", ""); code != http.StatusUnauthorized {
		t.Errorf("without the token: %d, want 401", code)
	}
	if asked := src.askedSoFar(); len(asked) != 0 {
		t.Fatalf("asked %v without the token", asked)
	}
	for _, c := range []struct {
		plc  string
		code int
	}{{"oven2", http.StatusAccepted}, {"press1", http.StatusConflict}, {"nosuch", http.StatusNotFound}} {
		code, body := post("/reconnect/"+c.plc, "Bearer "+token)
		if code != c.code || !strings.Contains(body, c.plc) {
			t.Errorf("reconnect %s: %d %q, want %d naming it", c.plc, code, body, c.code)
		}
	}
	if asked := src.askedSoFar(); len(asked) != 1 || asked[0] != "oven2" {
		t.Errorf("asked %v, want [oven2]", asked)
	}
	if code, _, _ := get(t, client, base, "/reconnect/oven2", "Bearer "+token); code != http.StatusMethodNotAllowed {
		t.Errorf("GET /reconnect: %d, want 405", code)
	}
}
