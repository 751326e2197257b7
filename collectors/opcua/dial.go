package opcua

import (
	"context"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/tagbridge/tagbridge/collectors/opcua/uaclient"
	"github.com/tagbridge/tagbridge/config"
)

// dialBound bounds Dial when ctx has no earlier deadline.
const dialBound = 30 * time.Second

// Dial opens one session to plc exactly as a Session's connection attempt
// does (endpoint selection, trust store, agent certificate, CreateSession
// checks, user identity), for one-shot tools such as browse. Every step
// honours ctx. The caller closes the client with Close.
func Dial(ctx context.Context, plc config.PLC, log zerolog.Logger) (*uaclient.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, dialBound)
	defer cancel()
	s := NewSession(plc, log)
	s.warnSettings()
	if err := s.listen(); err != nil {
		return nil, fmt.Errorf("plc %q: %w", plc.Name, err)
	}
	defer s.unlisten() // the connection taken stays open
	p, err := s.prepare(ctx)
	if err != nil {
		return nil, fmt.Errorf("plc %q: connect %s: %w", plc.Name, plc.Endpoint, err)
	}
	c, err := s.dial(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("plc %q: connect %s: %w", plc.Name, plc.Endpoint, err)
	}
	return c, nil
}
