package uajson

import (
	"crypto/sha256"
	"fmt"
	"strconv"
	"time"

	"github.com/tagbridge/tagbridge/payload"
)

// metadata is w's retained ua-metadata message (Part 14, 7.2.5.5.2) on
// opcua/json/metadata/<publisher>/<writer group>/<writer>: a field per
// configured tag, in configuration order, each of BaseDataType (i=24,
// BuiltInType 0, ValueRank -2, any) since the DataValues carry their own
// UaType; and the ConfigurationVersion, which changes when the writer's
// tags do (see open). Fields are in the VerboseEncoding, defaults left out.
func (f *uaJSONFormat) metadata(w *uaWriter, now time.Time) payload.Message {
	b := f.appendMessageID(nil)
	b = append(b, `,"MessageType":"ua-metadata","PublisherId":`...)
	b = payload.AppendString(b, f.publisher)
	b = append(b, `,"DataSetWriterId":`...)
	b = strconv.AppendInt(b, int64(w.id), 10)
	b = append(b, `,"WriterGroupName":`...)
	b = payload.AppendString(b, uaWriterGroup)
	b = append(b, `,"DataSetWriterName":`...)
	b = append(b, w.name...)
	b = append(b, `,"Timestamp":`...)
	b = payload.AppendTime(b, now)
	b = append(b, `,"MetaData":{"Name":`...)
	b = append(b, w.name...)
	b = append(b, `,"Fields":[`...)
	for i, tag := range w.tags {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"Name":`...)
		b = payload.AppendString(b, tag)
		b = append(b, `,"DataType":"i=24","ValueRank":-2,"DataSetFieldId":"`...)
		b = append(b, fieldID(f.publisher, w.plc, tag)...)
		b = append(b, `"}`...)
	}
	b = append(b, `],"ConfigurationVersion":{"MajorVersion":`...)
	b = strconv.AppendUint(b, uint64(w.version), 10)
	b = append(b, `,"MinorVersion":`...)
	b = strconv.AppendUint(b, uint64(w.version), 10)
	b = append(b, "}}}"...)
	return payload.Message{Topic: f.metadataTopic(w), Payload: b, Retain: true}
}

// fieldID is a field's DataSetFieldId: a Guid made from the names that
// identify it (an RFC 9562 version 8 UUID of their SHA-256), the same on
// every start.
func fieldID(publisher, plc, tag string) string {
	h := sha256.Sum256([]byte(publisher + "\x00" + plc + "\x00" + tag))
	h[6] = h[6]&0x0f | 0x80
	h[8] = h[8]&0x3f | 0x80
	x := fmt.Sprintf("%x", h[:16])
	return x[:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:]
}

// versionTime is a VersionTime (Part 14, 6.2.3.2.2 / Part 3): seconds
// since 2000-01-01 UTC.
func versionTime(t time.Time) uint32 {
	return uint32(max(t.Unix()-946684800, 1))
}

// tagsHash identifies a writer's field list, to tell when it changed.
func tagsHash(tags []string) string {
	h := sha256.New()
	for _, t := range tags {
		h.Write([]byte(t))
		h.Write([]byte{0})
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}
