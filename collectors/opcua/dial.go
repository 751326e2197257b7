package opcua

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/ua"
	"github.com/rs/zerolog"

	"github.com/tagbridge/tagbridge/collectors/opcua/uastatus"
	"github.com/tagbridge/tagbridge/config"
)

// dialBound bounds Dial when ctx has no deadline: gopcua waits for the
// server's Acknowledge only as long as ctx's deadline, forever without one.
const dialBound = 30 * time.Second

// Dial opens one connected client to plc exactly as a Session's connection
// attempt does (endpoint selection, trust store, client certificate,
// CreateSession check, user identity), for one-shot tools such as browse.
// It returns as soon as ctx is done, even while the server is silent. The
// caller closes the client with Close.
func Dial(ctx context.Context, plc config.PLC, log zerolog.Logger) (*opcua.Client, error) {
	dctx, cancel := context.WithTimeout(ctx, dialBound)
	type dialed struct {
		c   *opcua.Client
		err error
	}
	done := make(chan dialed, 1)
	go func() {
		c, err := dial(dctx, plc, log)
		done <- dialed{c, err}
	}()
	select {
	case d := <-done:
		cancel()
		return d.c, d.err
	case <-ctx.Done():
		// gopcua's handshake ignores cancellation: leave it to its deadline
		// and close what it may still open.
		go func() {
			defer cancel()
			if d := <-done; d.c != nil {
				closeDialed(ctx, d.c)
			}
		}()
		return nil, fmt.Errorf("plc %q: connect %s: %w", plc.Name, plc.Endpoint, context.Cause(ctx))
	}
}

func dial(ctx context.Context, plc config.PLC, log zerolog.Logger) (*opcua.Client, error) {
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
		closeDialed(ctx, c)
		return nil, fmt.Errorf("plc %q: connect %s: %w", plc.Name, plc.Endpoint, err)
	}
	return c, nil
}

func closeDialed(ctx context.Context, c *opcua.Client) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
	defer cancel()
	_ = c.Close(cctx)
}

// Sender adapts a gopcua client to the request sender that browse.Client
// asks for and our own session client (uaclient) is. It goes away when Dial
// returns that client.
type Sender struct{ c *opcua.Client }

// NewSender wraps c.
func NewSender(c *opcua.Client) Sender { return Sender{c} }

// Send sends req and returns the response; a Bad ServiceResult (a
// ServiceFault included) is returned as a *uastatus.Error naming the service.
func (s Sender) Send(ctx context.Context, req ua.Request) (ua.Response, error) {
	var res ua.Response
	err := s.c.Send(ctx, req, func(r ua.Response) error { res = r; return nil })
	if res != nil && res.Header() != nil && uastatus.IsBad(res.Header().ServiceResult) {
		service := strings.TrimSuffix(strings.TrimPrefix(fmt.Sprintf("%T", req), "*ua."), "Request")
		return res, &uastatus.Error{Step: service, Code: res.Header().ServiceResult}
	}
	return res, err
}

// Namespaces is the server's namespace array as gopcua read it at connect.
func (s Sender) Namespaces() []string { return s.c.Namespaces() }
