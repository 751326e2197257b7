package typedef_test

import (
	"context"
	"slices"
	"testing"

	"github.com/gopcua/opcua/ua"

	"github.com/tagbridge/tagbridge/collectors"
	"github.com/tagbridge/tagbridge/collectors/opcua/typedef"
)

// legacyServer makes a 1.04 server look like older firmware: every read
// of the DataTypeDefinition attribute answers BadAttributeIdInvalid.
type legacyServer struct {
	typedef.Client
	hidden int
}

func (l *legacyServer) Send(ctx context.Context, req ua.Request) (ua.Response, error) {
	res, err := l.Client.Send(ctx, req)
	rr, isRead := req.(*ua.ReadRequest)
	if err != nil || !isRead {
		return res, err
	}
	for i, n := range rr.NodesToRead {
		if n.AttributeID == ua.AttributeIDDataTypeDefinition {
			res.(*ua.ReadResponse).Results[i] = &ua.DataValue{EncodingMask: ua.DataValueStatusCode, Status: ua.StatusBadAttributeIDInvalid}
			l.hidden++
		}
	}
	return res, err
}

// node-opcua serves namespace 0's legacy dictionary (Opc.Ua, i=7617) with
// its descriptions (not one for its own namespaces): ServerStatus learned
// from it alone, DataTypeDefinition hidden, decodes with the
// specification's field names, the nested BuildInfo under its own id and
// the ServerState enumeration by name. TestLearnFromNodeOPCUA runs it on
// its peer.
func learnFromDictionary(ctx context.Context, t *testing.T, session typedef.Client) {
	c := &legacyServer{Client: session}
	st := learnServerStatus(ctx, t, c)
	if c.hidden == 0 {
		t.Fatal("no DataTypeDefinition was asked for")
	}
	bi, _ := st.Fields[3].Value.(collectors.Structure)
	if want := []string{"ProductUri", "ManufacturerName", "ProductName", "SoftwareVersion", "BuildNumber", "BuildDate"}; bi.TypeID != "i=338" || !slices.Equal(names(bi), want) {
		t.Errorf("BuildInfo %s %v, want i=338 %v", bi.TypeID, names(bi), want)
	}
	if name, _ := bi.Fields[2].Value.(string); name == "" {
		t.Errorf("BuildInfo.ProductName %#v, want the peer's name", bi.Fields[2].Value)
	}
}
