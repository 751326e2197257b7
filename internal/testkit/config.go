package testkit

import (
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/tagbridge/tagbridge/config"
)

var clientIDs atomic.Int64

// ClientID is an MQTT client id no other client of the test process has.
func ClientID(prefix string) string {
	return fmt.Sprintf("%s%d-%d", prefix, os.Getpid(), clientIDs.Add(1))
}

// Config is the publisher tests' configuration: agent a1, one PLC entry
// press1 with a tag on mqtt.topic and one on a topic of its own.
func Config(url string, qos int) *config.Config {
	return &config.Config{
		Agent: config.Agent{ID: "a1"},
		MQTT: config.MQTT{
			URL:       url,
			ClientID:  ClientID("tagbridge-test-"),
			QoS:       qos,
			Keepalive: config.Duration(30 * time.Second),
			Topic:     "tagbridge/{agent}/{plc}/{tag}",
		},
		PLCs: []config.PLC{{
			Name: "press1",
			Tags: []config.Tag{
				{Name: "temperature"},
				{Name: "pressure", Topic: "plant/{plc}/p/{tag}"},
			},
		}},
	}
}

// SparkplugConfig is Config with payload sparkplug_b, group plant1.
func SparkplugConfig(url string) *config.Config {
	cfg := Config(url, 1)
	cfg.MQTT.Payload = config.PayloadSparkplugB
	cfg.MQTT.Sparkplug.GroupID = "plant1"
	return cfg
}

// UAJSONConfig is Config with payload opcua_json and a second entry press2.
func UAJSONConfig(url string) *config.Config {
	cfg := Config(url, 1)
	cfg.MQTT.Payload = config.PayloadOPCUAJSON
	cfg.PLCs = append(cfg.PLCs, config.PLC{Name: "press2", Tags: []config.Tag{{Name: "t"}}})
	return cfg
}
