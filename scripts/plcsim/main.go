// Command plcsim is a simulated PLC for trying and testing tagbridge: an OPC UA
// server (security None, anonymous login) whose variables all change at every
// interval.
//
// Variable i has the type Double, Int32, Boolean or String by i%4, the node id
// ns=1;s=<Type>.<i> (e.g. ns=1;s=Int32.0001, the index zero-padded to at
// least four digits) and the tag name <type>_<i> (e.g. int32_0001). Int32
// variables are counters that go up by exactly one at each change, so a client
// can tell a lost or merged value from a delivered one.
//
// Once it listens, plcsim prints exactly one line "READY opc.tcp://HOST:PORT"
// to stdout and logs to stderr. It stops on SIGINT or SIGTERM.
//
// Usage:
//
//	plcsim [-host 127.0.0.1] [-port 0] [-tags 100] [-interval 100ms] [-start 0]
//	plcsim -tags 20 -print-tags
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	stdlog "log"
	"math"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/server"
	"github.com/gopcua/opcua/ua"
	"github.com/rs/zerolog"
)

const (
	// namespaceURI names the simulator's own namespace. gopcua's server
	// gives the first namespace added after its built-in namespace 0 the
	// index 1.
	namespaceURI   = "urn:tagbridge:plcsim"
	namespaceIndex = 1

	// sendTimeout bounds how long one tick waits for a subscription to take
	// a notification before it gives up on that subscription for the tick.
	sendTimeout = 250 * time.Millisecond

	// closeTimeout bounds the wait for the server's Close when stopping.
	closeTimeout = time.Second

	// startAttempts is how often a free port is picked again when another
	// process took it between picking and listening.
	startAttempts = 10
)

// kind is the OPC UA built-in type of a variable.
type kind struct {
	name     string // type name, as used in node ids
	dataType uint32 // numeric id of the DataType node in namespace 0
}

// kinds is indexed by the variable's index modulo 4.
var kinds = [4]kind{
	{"Double", id.Double},
	{"Int32", id.Int32},
	{"Boolean", id.Boolean},
	{"String", id.String},
}

type options struct {
	host      string
	port      int
	tags      int
	interval  time.Duration
	start     int
	printTags bool
	debug     bool

	structTag   bool          // also serve ns=1;s=Struct.Sample, a structure of the simulator's own type
	writable    bool          // also serve variables that hold written values, and a method (writable.go)
	freezeAfter time.Duration // stop all notifications after this long (0: never)
	clockOffset time.Duration // added to the server's CurrentTime, like a wrong PLC clock
	// maxItemsPerCall, when not 0, is advertised as the server's
	// MaxMonitoredItemsPerCall, and a CreateMonitoredItems with more items
	// is refused with BadTooManyOperations, as a real PLC does.
	maxItemsPerCall int
}

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	opts, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "plcsim: %v\n", err)
		return 2
	}
	if opts.structTag {
		ua.RegisterExtensionObject(structEncodingID, new(SimStruct))
	}
	tags := newTags(opts.tags)
	if opts.printTags {
		if err := writeTags(stdout, tags); err != nil {
			fmt.Fprintf(stderr, "plcsim: %v\n", err)
			return 1
		}
		return 0
	}

	level := zerolog.InfoLevel
	if opts.debug {
		level = zerolog.DebugLevel
	}
	zerolog.TimeFieldFormat = time.RFC3339Nano
	log := zerolog.New(zerolog.ConsoleWriter{Out: stderr, NoColor: true, TimeFormat: "15:04:05.000"}).
		Level(level).With().Timestamp().Logger()
	stdlog.SetFlags(0)
	stdlog.SetOutput(debugWriter{log.With().Str("component", "gopcua").Logger()})

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	s := &sim{
		opts:   opts,
		log:    log,
		tags:   tags,
		byKey:  make(map[string]*tag, len(tags)),
		warned: map[*server.Subscription]bool{},
		wake:   make(chan struct{}, 1),
	}
	for _, t := range tags {
		s.byKey[t.key] = t
	}
	s.set(int32(opts.start), time.Now())

	url, err := s.start(ctx)
	if err != nil {
		log.Error().Err(err).Msg("start server")
		return 1
	}
	// One write, unbuffered for an *os.File: the line is out when it returns.
	if _, err := fmt.Fprintf(stdout, "READY %s\n", url); err != nil {
		log.Error().Err(err).Msg("write READY line")
		s.srv.Close()
		return 1
	}
	log.Info().Str("endpoint", url).Int("tags", len(tags)).Dur("interval_ms", opts.interval).Msg("listening")

	s.run(ctx)

	log.Info().Msg("stopping")
	// gopcua's Close asks every client to close its secure channel, then
	// waits up to 10 s for their connections to end, which gopcua's own
	// client does not do. Exiting closes them just as well.
	closed := make(chan struct{})
	go func() {
		s.srv.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(closeTimeout):
	}
	log.Info().Msg("stopped")
	return 0
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("plcsim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.host, "host", "127.0.0.1", "address to listen on; also the host in the advertised endpoint URL")
	fs.IntVar(&o.port, "port", 0, "TCP port to listen on; 0 picks a free one")
	fs.IntVar(&o.tags, "tags", 100, "number of variables; variable i is a Double, Int32, Boolean or String by i%4")
	fs.DurationVar(&o.interval, "interval", 100*time.Millisecond, "time between changes; every variable changes each time")
	fs.IntVar(&o.start, "start", 0, "value of the Int32 counters before the first change")
	fs.BoolVar(&o.printTags, "print-tags", false, "print a YAML tags: list for a tagbridge config and exit")
	fs.BoolVar(&o.debug, "debug", false, "log debug messages, gopcua's included")
	fs.BoolVar(&o.writable, "writable", false, "also serve ns=1;s=W.<Type> variables that hold what is written, and the method ns=1;s=Machine.Scale(Double, Int32) -> Double")
	fs.BoolVar(&o.structTag, "struct", false, "also serve ns=1;s=Struct.Sample, a structure of a data type of the simulator's own")
	fs.DurationVar(&o.freezeAfter, "freeze-after", 0, "stop sending notifications after this long while still answering requests: a silent stall (0: never)")
	fs.DurationVar(&o.clockOffset, "clock-offset", 0, "offset of the server's CurrentTime from the real time, e.g. -2h")
	fs.IntVar(&o.maxItemsPerCall, "max-monitored-items-per-call", 0, "advertise this MaxMonitoredItemsPerCall and refuse a CreateMonitoredItems with more items (0: no limit)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: plcsim [flags]\n\nA simulated PLC: an OPC UA server on opc.tcp://HOST:PORT (security None,\nanonymous) whose variables change every interval. Prints \"READY <endpoint>\"\nto stdout once it listens.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	switch {
	case fs.NArg() > 0:
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case o.host == "":
		return o, errors.New("-host: must not be empty")
	case o.port < 0 || o.port > 65535:
		return o, fmt.Errorf("-port: %d is not a TCP port", o.port)
	case o.tags < 0:
		return o, fmt.Errorf("-tags: %d is negative", o.tags)
	case o.interval <= 0:
		return o, fmt.Errorf("-interval: %s is not positive", o.interval)
	case o.start < math.MinInt32 || o.start > math.MaxInt32:
		return o, fmt.Errorf("-start: %d does not fit an Int32", o.start)
	}
	return o, nil
}

// tag is one simulated variable.
type tag struct {
	index int
	kind  kind
	name  string     // tag name for the tagbridge config, e.g. int32_0001
	node  *ua.NodeID // e.g. ns=1;s=Int32.0001
	key   string     // node.String(), the key of gopcua's monitored item index

	value atomic.Pointer[ua.DataValue] // current value; read by the server's goroutines
}

func newTags(n int) []*tag {
	width := max(4, len(strconv.Itoa(max(n-1, 0))))
	tags := make([]*tag, n)
	for i := range tags {
		k := kinds[i%4]
		node := ua.NewStringNodeID(namespaceIndex, fmt.Sprintf("%s.%0*d", k.name, width, i))
		tags[i] = &tag{
			index: i,
			kind:  k,
			name:  fmt.Sprintf("%s_%0*d", strings.ToLower(k.name), width, i),
			node:  node,
			key:   node.String(),
		}
	}
	return tags
}

// read is the node's value callback.
func (t *tag) read() *ua.DataValue { return t.value.Load() }

// writeTags prints a YAML tags: list to paste into a plcs[] entry of a
// tagbridge config.
func writeTags(w io.Writer, tags []*tag) error {
	var b strings.Builder
	b.WriteString("tags:\n")
	for _, t := range tags {
		fmt.Fprintf(&b, "  - name: %s\n    node: %q\n", t.name, t.node.String())
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// sim owns the server, the variables and the change loop.
type sim struct {
	opts  options
	log   zerolog.Logger
	srv   *server.Server
	tags  []*tag
	byKey map[string]*tag

	out    []delivery                    // reused by notify
	warned map[*server.Subscription]bool // subscriptions already reported as stuck

	lastSubID   uint32               // highest subscription ID handed out; see createSubscription
	placeholder *server.Subscription // fills the subscription map in createSubscription

	writable map[string]*writableVar // -writable: variables by node id string; fixed after start

	pending []delivery    // first values of new monitored items; guarded by MonitoredItemService.Mu
	wake    chan struct{} // tells run that pending has values
}

// set gives every variable its value for the given counter. It runs once per
// tick for every variable, so it shares what it can: one Variant per tick for
// all Int32, Boolean and String variables, one server timestamp.
func (s *sim) set(counter int32, now time.Time) {
	served := time.Now()
	cnt := ua.MustVariant(counter)
	str := ua.MustVariant("v" + strconv.Itoa(int(counter)))
	even, odd := ua.MustVariant(true), ua.MustVariant(false)
	if counter%2 != 0 {
		even, odd = odd, even
	}
	for _, t := range s.tags {
		var v *ua.Variant
		switch t.index % 4 {
		case 0:
			x := 100 * math.Sin(float64(counter)/10+float64(t.index)/7)
			v = ua.MustVariant(math.Round(x*1000) / 1000)
		case 1:
			v = cnt
		case 2:
			v = even // toggles at each change
			if t.index%8 == 6 {
				v = odd // half of them start true, half false
			}
		case 3:
			v = str
		}
		t.value.Store(&ua.DataValue{
			EncodingMask:    ua.DataValueValue | ua.DataValueSourceTimestamp | ua.DataValueServerTimestamp,
			Value:           v,
			SourceTimestamp: now,
			ServerTimestamp: served,
		})
	}
}

// start builds the server and listens. With -port 0 it picks a free port
// first, so that the endpoint URL the server advertises carries the real port
// (gopcua advertises the configured URL, ":0" included).
func (s *sim) start(ctx context.Context) (string, error) {
	for attempt := 1; ; attempt++ {
		port := s.opts.port
		if port == 0 {
			p, err := freePort(s.opts.host)
			if err != nil {
				return "", err
			}
			port = p
		}
		srv, err := s.newServer(port)
		if err != nil {
			return "", err
		}
		err = srv.Start(ctx)
		if err == nil {
			s.srv = srv
			return srv.URLs()[0], nil
		}
		if s.opts.port != 0 || !errors.Is(err, syscall.EADDRINUSE) || attempt == startAttempts {
			return "", fmt.Errorf("listen on port %d: %w", port, err)
		}
		s.log.Warn().Err(err).Int("port", port).Msg("port taken meanwhile; picking another")
	}
}

func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("pick a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (s *sim) newServer(port int) (*server.Server, error) {
	host := s.opts.host
	if strings.Contains(host, ":") && !strings.HasPrefix(host, "[") {
		host = "[" + host + "]" // IPv6 literal in a URL
	}
	srv := server.New(
		server.EndPoint(host, port),
		server.EnableSecurity("None", ua.MessageSecurityModeNone),
		server.EnableAuthMode(ua.UserTokenTypeAnonymous),
		server.ServerName("plcsim"),
		server.ProductName("tagbridge plcsim"),
		server.ManufacturerName("tagbridge"),
		server.SetLogger(gopcuaLogger{s.log.With().Str("component", "gopcua").Logger()}),
	)

	// Registered before Start, so gopcua's own handlers are not installed.
	srv.RegisterHandler(id.CreateSubscriptionRequest_Encoding_DefaultBinary, s.createSubscription(srv))
	srv.RegisterHandler(id.CreateMonitoredItemsRequest_Encoding_DefaultBinary, s.createMonitoredItems(srv))
	if s.opts.writable {
		srv.RegisterHandler(id.WriteRequest_Encoding_DefaultBinary, s.write(srv))
		srv.RegisterHandler(id.CallRequest_Encoding_DefaultBinary, s.call(srv))
	}

	if n := s.opts.maxItemsPerCall; n > 0 {
		ns0, err := srv.Namespace(0)
		if err != nil {
			return nil, err
		}
		ns0.AddNode(server.NewNode(ua.NewNumericNodeID(0, id.Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall),
			server.Attributes{
				ua.AttributeIDNodeClass:  server.DataValueFromValue(int32(ua.NodeClassVariable)),
				ua.AttributeIDBrowseName: server.DataValueFromValue(&ua.QualifiedName{Name: "MaxMonitoredItemsPerCall"}),
				ua.AttributeIDDataType:   server.DataValueFromValue(ua.NewNumericNodeID(0, id.UInt32)),
			}, nil, func() *ua.DataValue { return server.DataValueFromValue(uint32(n)) }))
	}

	ns := server.NewNodeNameSpace(srv, namespaceURI)
	if ns.ID() != namespaceIndex {
		return nil, fmt.Errorf("namespace %s got index %d, want %d", namespaceURI, ns.ID(), namespaceIndex)
	}

	// Make the variables browsable: Objects -> PLCSim -> variables.
	folder := ns.Objects()
	folder.SetAttribute(ua.AttributeIDBrowseName, server.DataValueFromValue(&ua.QualifiedName{NamespaceIndex: namespaceIndex, Name: "PLCSim"}))
	folder.SetDisplayName("PLCSim", "")
	ns0, err := srv.Namespace(0)
	if err != nil {
		return nil, err
	}
	ns0.Objects().AddRef(folder, id.Organizes, true)

	shared := server.Attributes{
		ua.AttributeIDNodeClass:               server.DataValueFromValue(int32(ua.NodeClassVariable)),
		ua.AttributeIDValueRank:               server.DataValueFromValue(int32(-1)), // scalar
		ua.AttributeIDAccessLevel:             server.DataValueFromValue(byte(ua.AccessLevelTypeCurrentRead)),
		ua.AttributeIDUserAccessLevel:         server.DataValueFromValue(byte(ua.AccessLevelTypeCurrentRead)),
		ua.AttributeIDMinimumSamplingInterval: server.DataValueFromValue(float64(s.opts.interval) / float64(time.Millisecond)),
		ua.AttributeIDHistorizing:             server.DataValueFromValue(false),
	}
	dataTypes := make(map[uint32]*ua.DataValue, len(kinds))
	for _, k := range kinds {
		dataTypes[k.dataType] = server.DataValueFromValue(ua.NewNumericNodeID(0, k.dataType))
	}
	for _, t := range s.tags {
		attrs := make(server.Attributes, len(shared)+4)
		for a, v := range shared {
			attrs[a] = v
		}
		sid := t.node.StringID()
		attrs[ua.AttributeIDBrowseName] = server.DataValueFromValue(&ua.QualifiedName{NamespaceIndex: namespaceIndex, Name: sid})
		attrs[ua.AttributeIDDisplayName] = server.DataValueFromValue(&ua.LocalizedText{EncodingMask: ua.LocalizedTextText, Text: sid})
		attrs[ua.AttributeIDDescription] = server.DataValueFromValue(&ua.LocalizedText{EncodingMask: ua.LocalizedTextText, Text: "simulated " + t.kind.name})
		attrs[ua.AttributeIDDataType] = dataTypes[t.kind.dataType]
		refs := server.References{{
			ReferenceTypeID: ua.NewNumericNodeID(0, id.HasTypeDefinition),
			IsForward:       true,
			NodeID:          ua.NewNumericExpandedNodeID(0, id.BaseDataVariableType),
			BrowseName:      &ua.QualifiedName{Name: "BaseDataVariableType"},
			DisplayName:     &ua.LocalizedText{EncodingMask: ua.LocalizedTextText, Text: "BaseDataVariableType"},
			NodeClass:       ua.NodeClassVariableType,
			TypeDefinition:  ua.NewTwoByteExpandedNodeID(0),
		}}
		n := ns.AddNode(server.NewNode(t.node, attrs, refs, t.read))
		folder.AddRef(n, id.HasComponent, true)
	}
	if s.opts.structTag {
		folder.AddRef(ns.AddNode(structNode(shared)), id.HasComponent, true)
	}
	if s.opts.writable {
		s.addWritable(ns, folder, shared)
	}
	return srv, nil
}

// Struct.Sample holds a structure of a data type of the simulator's own,
// as PLCs have: clients that do not know the type get its encoded body.
var (
	structNodeID     = ua.NewStringNodeID(namespaceIndex, "Struct.Sample")
	structDataType   = ua.NewNumericNodeID(namespaceIndex, 3001)
	structEncodingID = ua.NewNumericNodeID(namespaceIndex, 5001)
)

// SimStruct is the simulator's structure type; gopcua encodes its fields in order.
type SimStruct struct {
	Counter int32
	Name    string
}

func structNode(shared server.Attributes) *server.Node {
	attrs := make(server.Attributes, len(shared)+4)
	for a, v := range shared {
		attrs[a] = v
	}
	attrs[ua.AttributeIDBrowseName] = server.DataValueFromValue(&ua.QualifiedName{NamespaceIndex: namespaceIndex, Name: "Struct.Sample"})
	attrs[ua.AttributeIDDisplayName] = server.DataValueFromValue(&ua.LocalizedText{EncodingMask: ua.LocalizedTextText, Text: "Struct.Sample"})
	attrs[ua.AttributeIDDataType] = server.DataValueFromValue(structDataType)
	value := func() *ua.DataValue {
		return &ua.DataValue{
			EncodingMask:    ua.DataValueValue | ua.DataValueSourceTimestamp | ua.DataValueServerTimestamp,
			Value:           ua.MustVariant(&ua.ExtensionObject{EncodingMask: ua.ExtensionObjectBinary, TypeID: ua.NewExpandedNodeID(structEncodingID, "", 0), Value: &SimStruct{Counter: 7, Name: "press"}}),
			SourceTimestamp: time.Now(),
			ServerTimestamp: time.Now(),
		}
	}
	return server.NewNode(structNodeID, attrs, nil, value)
}

// run changes every variable once per interval until ctx is done. A ticker
// keeps the schedule free of drift; when a tick is late, the next change
// simply comes later, and the counters still go up by one per change.
func (s *sim) run(ctx context.Context) {
	tick := time.NewTicker(s.opts.interval)
	defer tick.Stop()
	reap := time.NewTicker(time.Second)
	defer reap.Stop()

	// Server_ServerStatus_CurrentTime changes every second, as on real
	// servers; clients use it as a heartbeat.
	clock := time.NewTicker(time.Second)
	defer clock.Stop()
	var frozen <-chan time.Time
	if s.opts.freezeAfter > 0 {
		frozen = time.After(s.opts.freezeAfter)
	}

	wake := s.wake
	counter := int32(s.opts.start)
	slow := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-frozen:
			s.log.Warn().Msg("frozen: no more notifications (-freeze-after)")
			tick.Stop()
			clock.Stop()
			wake = nil
		case <-reap.C:
			s.reapOrphans()
		case <-wake:
			s.notify(false)
		case now := <-clock.C:
			s.notifyClock(now)
		case now := <-tick.C:
			counter++
			s.set(counter, now)
			s.notify(true)
			took := time.Since(now)
			if late := took > s.opts.interval; late != slow {
				slow = late
				if slow {
					s.log.Warn().Dur("took_ms", took).Msg("a change takes longer than -interval; changes come late")
				} else {
					s.log.Info().Dur("took_ms", took).Msg("changes are on time again")
				}
			}
		}
	}
}
