package opcua

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"
	"github.com/rs/zerolog"

	"github.com/tagbridge/tagbridge/collectors/opcua/uastatus"
	"github.com/tagbridge/tagbridge/scripts/plcsim/simproc"
)

// The session client keeps the contract browse.Client states: a Bad ServiceResult is an
// error naming the service, and errors.As finds its ua.StatusCode.
func TestClientBadServiceResult(t *testing.T) {
	sim := simproc.Start(t, "-tags", "4", "-interval", "1s")
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	c, err := Dial(ctx, plcConfig(t, sim.Endpoint, "tags:\n  - node: i=2258"), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer closeClient(ctx, c)
	s := c
	if len(s.Namespaces()) < 2 || s.Namespaces()[1] != "urn:tagbridge:plcsim" {
		t.Errorf("namespaces %v, want plcsim's at index 1", s.Namespaces())
	}
	// plcsim (gopcua's server) answers a service it lacks with a ServiceFault.
	res, err := s.Send(ctx, &ua.QueryFirstRequest{View: &ua.ViewDescription{ViewID: ua.NewTwoByteNodeID(0)}, Filter: &ua.ContentFilter{}})
	var code ua.StatusCode
	var uerr *uastatus.Error
	if !errors.As(err, &code) || code != ua.StatusBadServiceUnsupported || !errors.As(err, &uerr) || err.Error() != "QueryFirst request: BadServiceUnsupported (0x800B0000)" {
		t.Errorf("QueryFirst: error %v (%T), want QueryFirst request: BadServiceUnsupported as a *uastatus.Error", err, err)
	}
	if _, ok := res.(*ua.ServiceFault); !ok {
		t.Errorf("QueryFirst: response %T, want the *ua.ServiceFault", res)
	}
	// And the session is still good.
	if _, err := s.Send(ctx, &ua.ReadRequest{NodesToRead: []*ua.ReadValueID{{NodeID: ua.NewNumericNodeID(0, 2258), AttributeID: ua.AttributeIDValue, DataEncoding: &ua.QualifiedName{}}}}); err != nil {
		t.Errorf("read after the fault: %v", err)
	}
}
