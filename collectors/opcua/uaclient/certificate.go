package uaclient

import (
	"bytes"
	"encoding/asn1"
	"errors"
	"fmt"
)

// errNoCertificate reports an empty certificate field.
var errNoCertificate = errors.New("no certificate")

// leafDER returns the first certificate of der: OPC UA certificate fields
// may hold the leaf followed by its issuers' certificates.
func leafDER(der []byte) ([]byte, error) {
	if len(der) == 0 {
		return nil, errNoCertificate
	}
	var raw asn1.RawValue
	if _, err := asn1.Unmarshal(der, &raw); err != nil {
		return nil, fmt.Errorf("not a DER certificate: %w", err)
	}
	return raw.FullBytes, nil
}

// sameLeaf tells whether two certificate fields start with the same
// certificate; either may carry a chain after it.
func sameLeaf(a, b []byte) (bool, error) {
	la, err := leafDER(a)
	if err != nil {
		return false, err
	}
	lb, err := leafDER(b)
	if err != nil {
		return false, err
	}
	return bytes.Equal(la, lb), nil
}
