package opcua

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"
)

// defaultHistoryNodes bounds the nodes of one HistoryRead when the server
// does not report MaxNodesPerHistoryReadData.
const defaultHistoryNodes = 100

// serverLimits are what the server says it takes, from its
// ServerCapabilities and OperationLimits; 0 where it does not say. Real
// PLCs are far below what test servers take: an S7-1200 monitors up to
// 1,000 items, an S7-1500 1,000 to 10,000 per subscription, a Schneider
// BMENUA0100 40 subscriptions; requests and subscriptions are split to fit.
type serverLimits struct {
	nodesPerRead        int
	nodesPerBrowse      int
	nodesPerHistoryRead int
	itemsPerCall        int
	itemsPerSub         int
	subsPerSession      int
	minSampleRate       time.Duration
	// historyRead is the server's AccessHistoryDataCapability.
	historyRead bool
}

// limitNodes are the variables readLimits reads, in one request.
var limitNodes = []uint32{
	id.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead,
	id.Server_ServerCapabilities_OperationLimits_MaxNodesPerHistoryReadData,
	id.Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall,
	id.Server_ServerCapabilities_MaxMonitoredItemsPerSubscription,
	id.Server_ServerCapabilities_MaxSubscriptionsPerSession,
	id.Server_ServerCapabilities_MinSupportedSampleRate,
	id.HistoryServerCapabilities_AccessHistoryDataCapability,
	id.Server_ServerCapabilities_OperationLimits_MaxNodesPerBrowse,
}

// readLimits reads the server's limits: MaxNodesPerRead first and alone,
// as a PLC may take fewer nodes in one Read than there are limits to
// read. A server that reports none of them gets the defaults.
func readLimits(ctx context.Context, c sender) (serverLimits, error) {
	nodes := make([]*ua.ReadValueID, len(limitNodes))
	for i, n := range limitNodes {
		nodes[i] = &ua.ReadValueID{NodeID: ua.NewNumericNodeID(0, n), AttributeID: ua.AttributeIDValue}
	}
	rctx, cancel := context.WithTimeout(ctx, healthInterval)
	defer cancel()
	first, err := read(rctx, c, nodes[:1])
	if err != nil {
		return serverLimits{}, fmt.Errorf("read server limits: %w", err)
	}
	perRead := readBatch
	if n, ok := first[0].Value.Value().(uint32); first[0].Status == ua.StatusOK && ok && n > 0 {
		perRead = int(min(n, readBatch))
	}
	rest, err := readInBatches(rctx, c, nodes[1:], perRead)
	if err != nil {
		return serverLimits{}, fmt.Errorf("read server limits: %w", err)
	}
	res := append(first, rest...)
	count := func(i int) int {
		if res[i].Status != ua.StatusOK || res[i].Value == nil {
			return 0
		}
		switch v := res[i].Value.Value().(type) {
		case uint32:
			return int(min(v, math.MaxInt32))
		case uint16:
			return int(v)
		}
		return 0
	}
	l := serverLimits{
		nodesPerRead:        count(0),
		nodesPerHistoryRead: count(1),
		itemsPerCall:        count(2),
		itemsPerSub:         count(3),
		subsPerSession:      count(4),
		nodesPerBrowse:      count(7),
	}
	if res[5].Status == ua.StatusOK && res[5].Value != nil {
		if ms, ok := res[5].Value.Value().(float64); ok && ms > 0 && ms < float64(time.Hour/time.Millisecond) {
			l.minSampleRate = time.Duration(ms * float64(time.Millisecond))
		}
	}
	if res[6].Status == ua.StatusOK && res[6].Value != nil {
		l.historyRead, _ = res[6].Value.Value().(bool)
	}
	return l, nil
}

// perRead is how many nodes one Read request may carry: the server's limit
// or, when it has none, ours.
func (l serverLimits) perRead() int { return within(l.nodesPerRead, readBatch) }

// perBrowse is how many nodes one Browse request may carry.
func (l serverLimits) perBrowse() int { return within(l.nodesPerBrowse, defaultNodesPerBrowse) }

// perCall is how many monitored items one CreateMonitoredItems may carry.
func (l serverLimits) perCall() int { return within(l.itemsPerCall, defaultItemsPerCall) }

// perHistoryRead is how many nodes one HistoryRead may carry.
func (l serverLimits) perHistoryRead() int { return within(l.nodesPerHistoryRead, defaultHistoryNodes) }

// within is the server's limit when it has one below ours.
func within(server, ours int) int {
	if server > 0 {
		return min(server, ours)
	}
	return ours
}

// readInBatches reads nodes perRead at a time, results in the order of nodes.
func readInBatches(ctx context.Context, c sender, nodes []*ua.ReadValueID, perRead int) ([]*ua.DataValue, error) {
	out := make([]*ua.DataValue, 0, len(nodes))
	for part := range slices.Chunk(nodes, max(perRead, 1)) {
		res, err := read(ctx, c, part)
		if err != nil {
			return nil, fmt.Errorf("read %d of %d nodes: %w", len(part), len(nodes), err)
		}
		out = append(out, res...)
	}
	return out, nil
}

// subPlan is one subscription to create: its publishing interval and the
// tags it carries.
type subPlan struct {
	interval time.Duration
	handles  []uint32
}

// planSubscriptions groups tags by publishing interval into subscriptions
// of at most perSub items each. When the server allows fewer subscriptions
// per session than that makes (maxSubs > 0), the slowest intervals are
// merged into the next faster one (their tags are then published faster,
// never slower); merged maps each configured interval that moved to the
// one it is published at. Tags that still do not fit are returned in
// left.
func planSubscriptions(handles []uint32, interval func(uint32) time.Duration, perSub, maxSubs int) (plans []subPlan, merged map[time.Duration]time.Duration, left []uint32) {
	perSub = max(perSub, 1)
	groups := map[time.Duration][]uint32{}
	var order []time.Duration
	for _, h := range handles {
		iv := interval(h)
		if _, ok := groups[iv]; !ok {
			order = append(order, iv)
		}
		groups[iv] = append(groups[iv], h)
	}
	slices.Sort(order)
	need := func() int {
		n := 0
		for _, iv := range order {
			n += (len(groups[iv]) + perSub - 1) / perSub
		}
		return n
	}
	merged = map[time.Duration]time.Duration{}
	for maxSubs > 0 && len(order) > 1 && need() > maxSubs {
		slow, into := order[len(order)-1], order[len(order)-2]
		groups[into] = append(groups[into], groups[slow]...)
		slices.Sort(groups[into])
		delete(groups, slow)
		order = order[:len(order)-1]
		merged[slow] = into
		for from, to := range merged {
			if to == slow {
				merged[from] = into
			}
		}
	}
	for _, iv := range order {
		for part := range slices.Chunk(groups[iv], perSub) {
			if maxSubs > 0 && len(plans) == maxSubs {
				left = append(left, part...)
				continue
			}
			plans = append(plans, subPlan{interval: iv, handles: part})
		}
	}
	return plans, merged, left
}

// errTooManySubscriptions reports that the server refused the first
// subscription of the session: other clients hold all it allows.
var errTooManySubscriptions = errors.New("the PLC allows no more subscriptions (BadTooManySubscriptions): " +
	"other clients (or sessions the PLC has not yet timed out) hold all it allows; retrying with backoff")

// errTooManySessions is the clear message for BadTooManySessions: PLCnext
// allows 3 to 10 sessions, the Schneider BMENUA0100 10.
var errTooManySessions = errors.New("the PLC allows no more sessions (BadTooManySessions): close other clients' sessions " +
	"or raise the PLC's limit; PLC entries with the same endpoint and security settings share one session")

// tooManyClients tells the refusals that mean the PLC is full: worth a
// clear message and the longest backoff, not a fast retry that takes the
// next free place from an operator's HMI.
func tooManyClients(err error) error {
	var code ua.StatusCode
	if !errors.As(err, &code) {
		return nil
	}
	switch code {
	case ua.StatusBadTooManySessions:
		return errTooManySessions
	case ua.StatusBadTooManySubscriptions:
		return errTooManySubscriptions
	}
	return nil
}
