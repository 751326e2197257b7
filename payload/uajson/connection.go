package uajson

import (
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/tagbridge/tagbridge/payload"
)

// mqttJSONProfile is the TransportProfileUri of MQTT with JSON messages
// (Part 14, 7.3.4.7.8: it maps to the json topic level).
const mqttJSONProfile = "http://opcfoundation.org/UA-Profile/Transport/pubsub-mqtt-json"

// Content masks of the connection's writers (Part 14, 6.2.4.2): every
// DataValue may carry its StatusCode and both timestamps.
const fieldContentMask = 1 | 2 | 4 // StatusCode, SourceTimestamp, ServerTimestamp

// DataType NodeIds (Part 5/14) of the ExtensionObjects in a ua-connection.
const (
	brokerDataSetWriterTransportType = "i=15669" // BrokerDataSetWriterTransportDataType
	messageSecurityModeNone          = 1
	stringVariantType                = 12 // BuiltInType String
)

// connection is the Publisher's retained ua-connection message (Part 14,
// 7.2.5.5.6) on opcua/json/connection/<publisher> (7.3.4.7.8): the
// PubSubConnectionDataType of the agent in the CompactEncoding, defaults
// left out, with no ReaderGroups, no Address and no configuration
// properties, as 7.2.5.5.6 requires. It names the one WriterGroup and a
// DataSetWriter per PLC entry, with the topics of its data and metadata, so
// a Subscriber finds every writer from this one message. f.mu is held and
// ws is sorted by DataSetWriterId.
func (f *uaJSONFormat) connection(ws []*uaWriter, now time.Time) payload.Message {
	b := f.appendMessageID(nil)
	b = append(b, `,"MessageType":"ua-connection","PublisherId":`...)
	b = payload.AppendString(b, f.publisher)
	b = append(b, `,"Timestamp":`...)
	b = payload.AppendTime(b, now)
	b = append(b, `,"Connection":{"Name":`...)
	b = payload.AppendString(b, f.publisher)
	b = append(b, `,"Enabled":true,"PublisherId":{"UaType":`...)
	b = strconv.AppendInt(b, stringVariantType, 10)
	b = append(b, `,"Value":`...)
	b = payload.AppendString(b, f.publisher)
	b = append(b, `},"TransportProfileUri":"`+mqttJSONProfile+`","WriterGroups":[{"Name":`...)
	b = payload.AppendString(b, uaWriterGroup)
	b = append(b, `,"Enabled":true,"SecurityMode":`...)
	b = strconv.AppendInt(b, messageSecurityModeNone, 10)
	if f.maxPacket > 0 {
		b = append(b, `,"MaxNetworkMessageSize":`...)
		b = strconv.AppendInt(b, int64(f.maxPacket), 10)
	}
	b = append(b, `,"WriterGroupId":1`...)
	// The group has one KeepAliveTime, the writers each their own: the
	// longest is the one every writer keeps.
	var keepAlive time.Duration
	for _, w := range ws {
		keepAlive = max(keepAlive, w.keepAlive)
	}
	if keepAlive > 0 {
		b = append(b, `,"KeepAliveTime":`...)
		b = strconv.AppendInt(b, keepAlive.Milliseconds(), 10)
	}
	b = append(b, `,"DataSetWriters":[`...)
	for i, w := range ws {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"Name":`...)
		b = append(b, w.name...)
		b = append(b, `,"Enabled":true,"DataSetWriterId":`...)
		b = strconv.AppendInt(b, int64(w.id), 10)
		b = append(b, `,"DataSetFieldContentMask":`...)
		b = strconv.AppendInt(b, fieldContentMask, 10)
		if f.keyFrames > 0 {
			b = append(b, `,"KeyFrameCount":`...)
			b = strconv.AppendInt(b, int64(f.keyFrames), 10)
		}
		b = append(b, `,"DataSetName":`...)
		b = append(b, w.name...)
		b = append(b, `,"TransportSettings":{"UaTypeId":"`+brokerDataSetWriterTransportType+`","UaBody":{"QueueName":`...)
		b = payload.AppendString(b, w.topic)
		b = append(b, `,"MetaDataQueueName":`...)
		b = payload.AppendString(b, f.metadataTopic(w))
		b = append(b, "}}}"...)
	}
	b = append(b, "]}]}}"...)
	return payload.Message{Topic: f.connectionTopic, Payload: b, Retain: true}
}

// sortedWriters returns f's writers by DataSetWriterId. f.mu is held.
func (f *uaJSONFormat) sortedWriters() []*uaWriter {
	return slices.SortedFunc(maps.Values(f.writers), func(a, b *uaWriter) int { return a.id - b.id })
}

// metadataTopic is where w's ua-metadata goes (Part 14, 7.3.4.7.5).
func (f *uaJSONFormat) metadataTopic(w *uaWriter) string {
	return "opcua/json/metadata/" + f.publisher + "/" + uaWriterGroup + "/" + payload.Level(w.plc)
}
