package opcua

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/ua"
)

// gopcuaSender sends the subscription engine's requests on gopcua's client
// until the session moves to our own; gopcua already returns a Bad
// ServiceResult as a ua.StatusCode error.
type gopcuaSender struct{ c *opcua.Client }

func (g gopcuaSender) Send(ctx context.Context, req ua.Request) (ua.Response, error) {
	var res ua.Response
	err := g.c.Send(ctx, req, func(r ua.Response) error { res = r; return nil })
	if errors.Is(err, io.EOF) {
		err = fmt.Errorf("%w: connection closed", errChannelLost)
	}
	return res, err
}
