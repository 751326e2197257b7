package opcua

import (
	"context"
	"fmt"
	"slices"

	"github.com/gopcua/opcua/ua"
)

// defaultNodesPerBrowse bounds the nodes of one Browse when the server does
// not report MaxNodesPerBrowse (typedef's own batch).
const defaultNodesPerBrowse = 100

// limitedSender splits the Reads and Browses of code that does not know the
// server's limits (the structure types learned by typedef) into requests
// the server takes: a PLC with MaxNodesPerRead 3 refuses a Read of ten
// nodes whole (BadTooManyOperations), and its structure types would go
// unlearned. Results come back in the order of the nodes asked for.
type limitedSender struct {
	c                  sender
	perRead, perBrowse int
}

// limited wraps c in the session's server limits.
func (s *Session) limited(c sender) limitedSender {
	return limitedSender{c: c, perRead: s.limits.perRead(), perBrowse: s.limits.perBrowse()}
}

func (l limitedSender) Send(ctx context.Context, req ua.Request) (ua.Response, error) {
	switch r := req.(type) {
	case *ua.ReadRequest:
		if len(r.NodesToRead) > max(l.perRead, 1) {
			return l.splitRead(ctx, r)
		}
	case *ua.BrowseRequest:
		if len(r.NodesToBrowse) > max(l.perBrowse, 1) {
			return l.splitBrowse(ctx, r)
		}
	}
	return l.c.Send(ctx, req)
}

func (l limitedSender) splitRead(ctx context.Context, r *ua.ReadRequest) (ua.Response, error) {
	out := &ua.ReadResponse{}
	for part := range slices.Chunk(r.NodesToRead, max(l.perRead, 1)) {
		next := *r
		next.NodesToRead = part
		res, err := call[*ua.ReadResponse](ctx, l.c, &next)
		if err != nil {
			return nil, fmt.Errorf("read %d of %d nodes: %w", len(part), len(r.NodesToRead), err)
		}
		out.ResponseHeader = res.ResponseHeader
		out.Results = append(out.Results, res.Results...)
	}
	return out, nil
}

func (l limitedSender) splitBrowse(ctx context.Context, r *ua.BrowseRequest) (ua.Response, error) {
	out := &ua.BrowseResponse{}
	for part := range slices.Chunk(r.NodesToBrowse, max(l.perBrowse, 1)) {
		next := *r
		next.NodesToBrowse = part
		res, err := call[*ua.BrowseResponse](ctx, l.c, &next)
		if err != nil {
			return nil, fmt.Errorf("browse %d of %d nodes: %w", len(part), len(r.NodesToBrowse), err)
		}
		out.ResponseHeader = res.ResponseHeader
		out.Results = append(out.Results, res.Results...)
	}
	return out, nil
}
