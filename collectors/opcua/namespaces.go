package opcua

import (
	"context"
	"fmt"
	"slices"

	"github.com/gopcua/opcua/ua"

	"github.com/tagbridge/tagbridge/collectors/opcua/subscription"
	"github.com/tagbridge/tagbridge/collectors/opcua/uaclient"
)

// errNamespacesChanged ends the stream so that the subscriptions are made
// again with nsu= node ids resolved against the new NamespaceArray.
var errNamespacesChanged = fmt.Errorf("%w: the PLC's namespace table changed (a program download?); resolving nsu= node ids again", subscription.ErrGone)

// usesNamespaceURIs tells whether a tag names its namespace by URI.
func (s *Session) usesNamespaceURIs() bool {
	for _, t := range s.tags {
		if t.Node.NamespaceURI() != "" {
			return true
		}
	}
	return false
}

// checkNamespaces reads the NamespaceArray again while the session
// streams, for sessions with nsu= node ids: a PLC program download can
// renumber namespaces without ending the session, and the monitored items
// would then watch the wrong nodes. A change deletes the subscriptions and
// returns errNamespacesChanged; a failed read is left to the health check.
func (s *Session) checkNamespaces(ctx context.Context, c *uaclient.Client) error {
	if !s.usesNamespaceURIs() {
		return nil
	}
	// Compared with the array the items were resolved with: a session
	// reactivated on a new channel has read the new array already.
	if _, err := c.RefreshNamespaces(ctx); err != nil || slices.Equal(c.Namespaces(), s.nsSubscribed) {
		return nil
	}
	if len(s.subIDs) > 0 {
		_, _ = c.Send(ctx, &ua.DeleteSubscriptionsRequest{SubscriptionIDs: s.subIDs}) // made again at once
		s.subIDs = nil
	}
	return errNamespacesChanged
}
