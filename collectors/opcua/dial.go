package opcua

import (
	"context"
	"fmt"

	"github.com/gopcua/opcua"
	"github.com/rs/zerolog"

	"github.com/tagbridge/tagbridge/config"
)

// Dial opens one connected client to plc exactly as a Session's connection
// attempt does (endpoint selection, trust store, client certificate,
// CreateSession check, user identity), for one-shot tools such as browse.
// The caller closes it with Close.
func Dial(ctx context.Context, plc config.PLC, log zerolog.Logger) (*opcua.Client, error) {
	s := NewSession(plc, log)
	s.warnSettings()
	secOpts, err := s.securityOptions(ctx)
	if err != nil {
		return nil, fmt.Errorf("plc %q: %w", plc.Name, err)
	}
	c, err := opcua.NewClient(plc.Endpoint, append(s.clientOptions(func(opcua.ConnState) {}), secOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("plc %q: configure client: %w", plc.Name, err)
	}
	if err := connect(ctx, c); err != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
		defer cancel()
		_ = c.Close(cctx)
		return nil, fmt.Errorf("plc %q: connect %s: %w", plc.Name, plc.Endpoint, err)
	}
	return c, nil
}
