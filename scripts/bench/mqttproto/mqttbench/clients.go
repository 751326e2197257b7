package main

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/tagbridge/tagbridge/publish/mqttconn"
	"github.com/tagbridge/tagbridge/publish/pahostore"
	"github.com/tagbridge/tagbridge/scripts/bench/mqttproto"
	"github.com/tagbridge/tagbridge/scripts/bench/mqttproto/drive"
)

// tagbridge's settings: the bound on publishes awaiting acknowledgement
// (publish.window) and the defaults of mqtt.keepalive and
// mqtt.max_packet_size (config/defaults.go).
const (
	window        = 1024
	keepAlive     = 30 * time.Second
	maxPacketSize = 1 << 20
)

// pahoClient is paho.mqtt.golang as publish.New configures it: tagbridge's
// ordered store (pahostore), its connection (mqttconn: coalesced writes,
// buffered reads), a persistent session, and the pump's use of tokens: a
// ring of window tokens reaped from the front, completion counted by the
// store's acknowledgements.
type pahoClient struct {
	client mqtt.Client
	store  *pahostore.Store
	tokens []mqtt.Token // ring
	head   int
	n      int
	handed uint64
}

func newPaho(addr, id string) (drive.Publisher, func(), error) {
	store := pahostore.New()
	opts := mqtt.NewClientOptions().
		AddBroker("tcp://" + addr).
		SetClientID(id).
		SetProtocolVersion(4).
		SetKeepAlive(keepAlive).
		SetCleanSession(false).
		SetStore(store).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(2 * time.Second).
		SetMaxReconnectInterval(5 * time.Second).
		SetConnectTimeout(10 * time.Second).
		SetWriteTimeout(5 * time.Second).
		SetCustomOpenConnectionFn(mqttconn.Open(maxPacketSize, store.ResumeAll, nil))
	c := mqtt.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return nil, nil, errors.New("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, nil, err
	}
	p := &pahoClient{client: c, store: store, tokens: make([]mqtt.Token, window)}
	return p, func() { c.Disconnect(250) }, nil
}

func (p *pahoClient) Publish(topic string, payload []byte) error {
	if p.n == window {
		p.reap()
		if p.n == window {
			<-p.tokens[p.head].Done()
			p.reap()
		}
	}
	tok := p.client.Publish(topic, 1, false, payload)
	p.tokens[(p.head+p.n)%window] = tok
	p.n++
	p.handed++
	p.reap()
	return nil
}

// reap drops completed tokens from the front, as the pump does.
func (p *pahoClient) reap() {
	for p.n > 0 {
		select {
		case <-p.tokens[p.head].Done():
		default:
			return
		}
		if err := p.tokens[p.head].Error(); err != nil {
			_ = err // resent by paho from its store, as in tagbridge
		}
		p.tokens[p.head] = nil
		p.head = (p.head + 1) % window
		p.n--
	}
}

func (p *pahoClient) Flush(timeout time.Duration) error {
	err := waitUntil(timeout, func() bool { return p.store.Acked() >= p.handed })
	p.reap()
	return err
}

// protoClient is the prototype, with tagbridge's window.
type protoClient struct {
	c         *mqttproto.Client
	published uint64
	acked     atomic.Uint64
}

func newProto(addr, id string) (drive.Publisher, func(), error) {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, nil, err
	}
	p := &protoClient{}
	c, err := mqttproto.Connect(context.Background(), conn, mqttproto.Options{
		ClientID:  id,
		KeepAlive: keepAlive,
		Window:    window,
		Acked:     p.acked.Store,
	})
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	p.c = c
	return p, func() { c.Close() }, nil
}

func (p *protoClient) Publish(topic string, payload []byte) error {
	n, err := p.c.Publish(mqttproto.Message{Topic: topic, Payload: payload, QoS: 1})
	p.published = n
	return err
}

func (p *protoClient) Flush(timeout time.Duration) error {
	return waitUntil(timeout, func() bool { return p.acked.Load() >= p.published })
}
