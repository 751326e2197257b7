// Command pahov5 is mqttbench's run of github.com/eclipse/paho.golang
// (MQTT 5), in a module of its own so that tagbridge's go.mod does not gain
// it: one QoS 1 message per value, handed over with PublishMethod_AsyncSend
// (paho.golang keeps it in its session state and limits what is in flight
// to the broker's Receive Maximum); Flush publishes one message and waits
// for its PUBACK, which the broker sends after those of every message before.
// With -coalesce it writes through tagbridge's coalescing connection, as
// paho.mqtt.golang does in the product.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/tagbridge/tagbridge/publish/mqttconn"

	"github.com/tagbridge/tagbridge/scripts/bench/mqttproto/drive"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "pahov5:", err)
		os.Exit(1)
	}
}

func run() error {
	fs := flag.NewFlagSet("pahov5", flag.ContinueOnError)
	cfg := drive.Flags(fs)
	coalesce := fs.Bool("coalesce", false, "connect through tagbridge's connection (publish/mqttconn: writes coalesced, reads buffered) instead of a plain TCP one")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return err
	}
	ctx := context.Background()
	var conn net.Conn
	var err error
	if *coalesce {
		conn, err = mqttconn.Open(1<<20, nil, nil)(&url.URL{Scheme: "tcp", Host: cfg.Broker}, mqtt.ClientOptions{})
	} else {
		conn, err = net.DialTimeout("tcp", cfg.Broker, 10*time.Second)
	}
	if err != nil {
		return err
	}
	c := paho.NewClient(paho.ClientConfig{Conn: conn})
	ack, err := c.Connect(ctx, &paho.Connect{
		ClientID:   fmt.Sprintf("mqttbench-pahov5-%d", os.Getpid()),
		KeepAlive:  30,
		CleanStart: true,
	})
	if err != nil {
		return fmt.Errorf("connect to %s: %w", cfg.Broker, err)
	}
	if ack.ReasonCode != 0 {
		return fmt.Errorf("connect to %s: reason code %d", cfg.Broker, ack.ReasonCode)
	}
	defer c.Disconnect(&paho.Disconnect{})
	r, err := drive.Run("pahov5", &publisher{c: c}, *cfg)
	if err != nil {
		return err
	}
	return drive.Print(os.Stdout, r)
}

type publisher struct{ c *paho.Client }

func (p *publisher) Publish(topic string, payload []byte) error {
	_, err := p.c.PublishWithOptions(context.Background(), &paho.Publish{Topic: topic, Payload: payload, QoS: 1},
		paho.PublishOptions{Method: paho.PublishMethod_AsyncSend})
	return err
}

func (p *publisher) Flush(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, err := p.c.Publish(ctx, &paho.Publish{Topic: "mqttbench/flush", Payload: []byte("flush"), QoS: 1})
	return err
}
