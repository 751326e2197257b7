package certs

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tagbridge/tagbridge/internal/x509ecc"
)

// TestVerifyECCChain runs trust: full over CA chains crypto/x509 cannot
// check alone: brainpoolP256r1 and Ed448 CAs, leaves and CRLs made by
// OpenSSL 3 (testdata/ecc: `openssl req -x509`, `openssl x509 -req`,
// `openssl ca -gencrl` before and after `-revoke` of serial 0x2a). A leaf
// under a trusted CA with its CA's clean CRL is accepted; with the CRL
// that revokes it, refused as revoked; past its expiry, refused as expired;
// with the other curve's CA, untrusted.
func TestVerifyECCChain(t *testing.T) {
	read := func(name string) []byte {
		t.Helper()
		data, err := os.ReadFile(filepath.Join("testdata", "ecc", name))
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	der := func(name string) []byte {
		t.Helper()
		b, _ := pem.Decode(read(name))
		if b == nil {
			t.Fatalf("%s: no PEM block", name)
		}
		return b.Bytes
	}
	for curve, other := range map[string]string{"brainpoolP256r1": "ed448", "ed448": "brainpoolP256r1"} {
		leaf := der(curve + "-leaf.pem")
		cert, err := x509ecc.ParseCertificate(leaf)
		if err != nil {
			t.Fatalf("%s leaf: %v", curve, err)
		}
		revoked, err := x509.ParseRevocationList(der(curve + "-revoked.crl.pem"))
		if err != nil {
			t.Fatalf("%s CRL: %v", curve, err)
		}
		// After both CRLs were issued, well within every validity.
		at := revoked.ThisUpdate.Add(time.Hour)
		for _, tc := range []struct {
			name, ca, crl string
			now           time.Time
			err           error
			msg           string
		}{
			{"clean CRL", curve, "clean", at, nil, ""},
			{"revoked", curve, "revoked", at, ErrRevoked, `"plc-` + curve + `" was revoked by "tagbridge test ` + curve + ` CA"`},
			{"no CRL", curve, "", at, ErrRevocationUnknown, `no CRL from issuer "tagbridge test ` + curve + ` CA"`},
			{"expired", curve, "clean", cert.NotAfter.Add(time.Hour), ErrExpired, "expired on "},
			{"other CA", other, "clean", at, ErrUntrusted, "no chain leads to a CA there"},
		} {
			t.Run(curve+"/"+tc.name, func(t *testing.T) {
				s := newStore(t)
				put(t, s, TrustedCerts, "ca.pem", read(tc.ca+"-ca.pem"))
				if tc.crl != "" {
					put(t, s, TrustedCRL, "ca.crl", read(tc.ca+"-"+tc.crl+".crl.pem"))
				}
				res, err := s.Verify(leaf, VerifyOptions{Now: tc.now})
				if tc.err == nil {
					if err != nil || res.Subject != "plc-"+curve {
						t.Fatalf("Verify: %+v, %v; want plc-%s accepted", res, err, curve)
					}
					return
				}
				if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.msg) {
					t.Fatalf("Verify: %v\nwant %v containing %q", err, tc.err, tc.msg)
				}
				t.Logf("refused: %v", err)
			})
		}
	}
}
