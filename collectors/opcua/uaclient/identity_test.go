package uaclient

import (
	"strings"
	"testing"

	"github.com/gopcua/opcua/ua"
)

func TestTokenPolicy(t *testing.T) {
	const prefix = "http://opcfoundation.org/UA/SecurityPolicy#"
	userName := func(id, policy string) *ua.UserTokenPolicy {
		return &ua.UserTokenPolicy{PolicyID: id, TokenType: ua.UserTokenTypeUserName, SecurityPolicyURI: policy}
	}
	anonymous := &ua.UserTokenPolicy{PolicyID: "anon", TokenType: ua.UserTokenTypeAnonymous}
	cases := []struct {
		name     string
		endpoint string // the endpoint's security policy URI
		tokens   []*ua.UserTokenPolicy
		kind     ua.UserTokenType
		want     string // PolicyId, or the start of the error
	}{
		{"anonymous", prefix + "None", []*ua.UserTokenPolicy{userName("u", prefix+"Basic256Sha256"), anonymous},
			ua.UserTokenTypeAnonymous, "anon"},
		// node-opcua's None endpoint offers one per policy, deprecated first.
		{"current policy before deprecated ones", prefix + "None", []*ua.UserTokenPolicy{
			userName("b256", prefix+"Basic256"), userName("b128", prefix+"Basic128Rsa15"),
			userName("b256sha", prefix+"Basic256Sha256"), userName("aes128", prefix+"Aes128_Sha256_RsaOaep"),
		}, ua.UserTokenTypeUserName, "b256sha"},
		{"deprecated before plaintext", prefix + "None", []*ua.UserTokenPolicy{
			userName("plain", ""), userName("b128", prefix+"Basic128Rsa15"),
		}, ua.UserTokenTypeUserName, "b128"},
		{"plaintext before an unknown policy", prefix + "None", []*ua.UserTokenPolicy{
			userName("ecc", prefix+"ECC_unknown_to_us"), userName("plain", prefix+"None"),
		}, ua.UserTokenTypeUserName, "plain"},
		{"empty policy is the endpoint's", prefix + "Basic256Sha256", []*ua.UserTokenPolicy{
			userName("plain", prefix+"None"), userName("channel", ""),
		}, ua.UserTokenTypeUserName, "channel"},
		{"only an unknown policy", prefix + "None", []*ua.UserTokenPolicy{userName("ecc", prefix+"ECC_unknown_to_us")},
			ua.UserTokenTypeUserName, "ecc"},
		{"type not offered", prefix + "None", []*ua.UserTokenPolicy{anonymous, nil, userName("u", "")},
			ua.UserTokenTypeCertificate, "endpoint None/None offers no Certificate user token (offers Anonymous, UserName)"},
		{"nothing offered", prefix + "None", nil,
			ua.UserTokenTypeAnonymous, "endpoint None/None offers no Anonymous user token (offers none)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ep := &ua.EndpointDescription{SecurityPolicyURI: tc.endpoint, UserIdentityTokens: tc.tokens}
			if tc.endpoint != prefix+"None" {
				ep.SecurityMode = ua.MessageSecurityModeSignAndEncrypt
			} else {
				ep.SecurityMode = ua.MessageSecurityModeNone
			}
			p, err := tokenPolicy(ep, tc.kind)
			var got string
			if err != nil {
				got = err.Error()
			} else {
				got = p.PolicyID
			}
			if !strings.HasPrefix(got, tc.want) || (err == nil && got != tc.want) {
				t.Errorf("tokenPolicy = %q, want %q", got, tc.want)
			}
		})
	}
}
