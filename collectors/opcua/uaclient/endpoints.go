package uaclient

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gopcua/opcua/ua"
	"github.com/rs/zerolog"

	"github.com/tagbridge/tagbridge/collectors/opcua/secpolicy"
	"github.com/tagbridge/tagbridge/collectors/opcua/uasc"
	"github.com/tagbridge/tagbridge/collectors/opcua/uatcp"
)

// ErrNoEndpoints reports a GetEndpoints answer without endpoints: some
// servers (gopcua's) list only those whose URL is exactly the one asked
// for, so a proxy or another host name in front of them gets none.
var ErrNoEndpoints = errors.New("the server offers no endpoint")

// discoveryLifetime is the token lifetime asked for the short channel of
// GetEndpoints; it is closed long before.
const discoveryLifetime = time.Minute

// GetEndpoints asks the server at endpoint for its endpoints, over a secure
// channel of policy None opened for that and closed after.
func GetEndpoints(ctx context.Context, endpoint string, limits uatcp.Limits, log zerolog.Logger) ([]*ua.EndpointDescription, error) {
	return GetEndpointsDial(ctx, endpoint, limits, nil, log)
}

// GetEndpointsDial is GetEndpoints over a connection opened by dial (nil:
// uatcp.Dial), e.g. one the server opened with reverse connect.
func GetEndpointsDial(ctx context.Context, endpoint string, limits uatcp.Limits, dial func(context.Context, string, uatcp.Limits) (*uatcp.Conn, error), log zerolog.Logger) ([]*ua.EndpointDescription, error) {
	none, err := secpolicy.ByURI(ua.SecurityPolicyURINone)
	if err != nil {
		return nil, fmt.Errorf("get endpoints: %w", err)
	}
	ch, err := uasc.Open(ctx, uasc.Config{
		Endpoint: endpoint,
		Policy:   none,
		Mode:     ua.MessageSecurityModeNone,
		Lifetime: discoveryLifetime,
		Limits:   limits,
		Log:      log,
		Dial:     dial,
	})
	if err != nil {
		return nil, fmt.Errorf("get endpoints: %w", err)
	}
	defer closeChannel(ctx, ch)
	return getEndpoints(ctx, ch, endpoint)
}

// getEndpoints sends GetEndpoints on an open channel, session or not.
func getEndpoints(ctx context.Context, ch *uasc.Channel, endpoint string) ([]*ua.EndpointDescription, error) {
	const step = "get endpoints"
	resp, err := ch.Send(ctx, &ua.GetEndpointsRequest{EndpointURL: endpoint}, nil)
	if err != nil {
		return nil, stepError(step, err)
	}
	r, ok := resp.(*ua.GetEndpointsResponse)
	if !ok {
		return nil, fmt.Errorf("%s: unexpected response %T", step, resp)
	}
	eps := make([]*ua.EndpointDescription, 0, len(r.Endpoints))
	for _, ep := range r.Endpoints {
		if ep != nil {
			eps = append(eps, ep)
		}
	}
	if len(eps) == 0 {
		return nil, fmt.Errorf("%s: %w for %s", step, ErrNoEndpoints, endpoint)
	}
	return eps, nil
}

// channelEndpoint asks the server over ch for its endpoints and returns the
// one of ch's policy and mode.
func channelEndpoint(ctx context.Context, ch *uasc.Channel, endpointURL string) (*ua.EndpointDescription, error) {
	eps, err := getEndpoints(ctx, ch, endpointURL)
	if err != nil {
		return nil, err
	}
	for _, ep := range eps {
		if matchesChannel(ep, ch) == nil {
			return ep, nil
		}
	}
	offered := make([]string, 0, len(eps))
	for _, ep := range eps {
		offered = append(offered, endpointName(ep))
	}
	return nil, fmt.Errorf("get endpoints: the server offers no endpoint %s/%s (offers %s)",
		ch.Policy().Name(), modeName(ch.Mode()), strings.Join(offered, ", "))
}

// matchesChannel checks that an endpoint is of the channel's policy and
// mode, and, for a secured channel, has the channel's certificate.
func matchesChannel(ep *ua.EndpointDescription, ch *uasc.Channel) error {
	if ep == nil {
		return errors.New("no endpoint")
	}
	if ep.SecurityPolicyURI != ch.Policy().URI() || ep.SecurityMode != ch.Mode() {
		return fmt.Errorf("endpoint %s does not match the secure channel (%s/%s)", endpointName(ep), ch.Policy().Name(), modeName(ch.Mode()))
	}
	if ch.Mode() != ua.MessageSecurityModeNone && len(ep.ServerCertificate) > 0 && len(ch.ServerCertificate()) > 0 {
		if same, err := sameLeaf(ep.ServerCertificate, ch.ServerCertificate()); err != nil || !same {
			return fmt.Errorf("endpoint %s: its certificate differs from the secure channel's", endpointName(ep))
		}
	}
	return nil
}
