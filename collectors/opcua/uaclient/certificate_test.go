package uaclient

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"testing"

	"github.com/tagbridge/tagbridge/certs"
)

func generateDER(t *testing.T, agentID string) []byte {
	t.Helper()
	certPEM, _, err := certs.Generate(certs.Options{AgentID: agentID, Hostname: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(certPEM)
	if b == nil {
		t.Fatal("generated certificate is not PEM")
	}
	return b.Bytes
}

func TestSameLeaf(t *testing.T) {
	leaf, issuer, other := generateDER(t, "leaf"), generateDER(t, "issuer"), generateDER(t, "other")
	chain := append(append([]byte(nil), leaf...), issuer...)
	cases := []struct {
		name    string
		a, b    []byte
		want    bool
		wantErr error // errors.Is; nil: no error
	}{
		{"same certificate", leaf, leaf, true, nil},
		{"leaf and its chain", leaf, chain, true, nil},
		{"chain and its leaf", chain, leaf, true, nil},
		{"different certificates", leaf, other, false, nil},
		{"different leaf, same chain after", chain, append(append([]byte(nil), other...), issuer...), false, nil},
		{"issuer is not the leaf", issuer, chain, false, nil},
		{"empty", nil, leaf, false, errNoCertificate},
		{"other empty", leaf, nil, false, errNoCertificate},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := sameLeaf(tc.a, tc.b)
			if !errors.Is(err, tc.wantErr) || got != tc.want {
				t.Errorf("sameLeaf = %v, %v; want %v, %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
	t.Run("garbage", func(t *testing.T) {
		if _, err := sameLeaf([]byte{0x30, 0x82, 0xff}, leaf); err == nil {
			t.Error("sameLeaf accepted a truncated DER element")
		}
	})
}

func TestLeafCertificate(t *testing.T) {
	leaf, issuer := generateDER(t, "leaf"), generateDER(t, "issuer")
	cert, err := leafCertificate(append(append([]byte(nil), leaf...), issuer...))
	if err != nil {
		t.Fatal(err)
	}
	want, err := x509.ParseCertificate(leaf)
	if err != nil {
		t.Fatal(err)
	}
	if !cert.Equal(want) {
		t.Errorf("leaf of a chain is %s, want %s", cert.Subject, want.Subject)
	}
}
