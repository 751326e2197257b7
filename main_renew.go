package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/tagbridge/tagbridge/certs"
	"github.com/tagbridge/tagbridge/config"
)

const renewUsage = `certs renew [--dir DIR] [--key-type TYPE] [--days N] [--new-key]

Renews the agent's OPC UA certificate in DIR (the files certs create wrote
for that key type) before it expires: the same subject, ApplicationURI and
host names, a new validity; the key is kept unless --new-key is given. The
old certificate is kept as *.old. Each PLC must trust the new certificate
before the agent connects with it: the trust steps are printed again.`

func cmdCertsRenew(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("certs renew", renewUsage, stderr)
	dir := fs.String("dir", config.DefaultCertDir, "`directory` holding the certificate and key")
	keyType := fs.String("key-type", certs.KeyTypeRSA, "key `type` of the certificate to renew: "+strings.Join(certs.KeyTypes, ", "))
	days := fs.Int("days", certs.DefaultDays, "validity in `days`")
	newKey := fs.Bool("new-key", false, "make a new key of the same type and size too")
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	if !slices.Contains(certs.KeyTypes, *keyType) {
		fmt.Fprintf(stderr, "tagbridge certs renew: --key-type %s: want one of %s\n", *keyType, strings.Join(certs.KeyTypes, ", "))
		return exitConfig
	}
	certName, derName, keyName := certFileName, derFileName, keyFileName
	if *keyType != certs.KeyTypeRSA {
		certName, derName, keyName = "client-cert-"+*keyType+".pem", "client-cert-"+*keyType+".der", "client-key-"+*keyType+".pem"
	}
	certPath, derPath, keyPath := filepath.Join(*dir, certName), filepath.Join(*dir, derName), filepath.Join(*dir, keyName)
	certPEM, keyPEM, err := certs.Renew(certs.RenewOptions{CertFile: certPath, KeyFile: keyPath, Days: *days, NewKey: *newKey})
	if err != nil {
		fmt.Fprintf(stderr, "tagbridge certs renew: %v (tagbridge certs create makes a first one)\n", err)
		return exitRuntime
	}
	cert, der, err := certs.ParseCertificate(certPEM)
	if err != nil {
		fmt.Fprintf(stderr, "tagbridge certs renew: %v\n", err)
		return exitRuntime
	}
	old, err := os.ReadFile(certPath)
	if err != nil {
		fmt.Fprintf(stderr, "tagbridge certs renew: %v\n", err)
		return exitRuntime
	}
	type file struct {
		path string
		data []byte
		perm os.FileMode
	}
	files := []file{{certPath + ".old", old, 0o644}}
	if keyPEM != nil {
		oldKey, err := os.ReadFile(keyPath)
		if err != nil {
			fmt.Fprintf(stderr, "tagbridge certs renew: %v\n", err)
			return exitRuntime
		}
		files = append(files, file{keyPath + ".old", oldKey, 0o600}, file{keyPath, keyPEM, 0o600})
	}
	files = append(files, file{certPath, certPEM, 0o644}, file{derPath, der, 0o644})
	for _, f := range files {
		if err := certs.WriteFileAtomic(f.path, f.data, f.perm, true); err != nil {
			fmt.Fprintf(stderr, "tagbridge certs renew: write %s: %v\n", f.path, err)
			return exitRuntime
		}
	}
	uri, _ := certs.ApplicationURI(cert)
	kept := "kept"
	if keyPEM != nil {
		kept = "new, written to " + keyPath + " (the old one is " + keyPath + ".old)"
	}
	fmt.Fprintf(stdout, `renewed %s (and %s, DER); the old certificate is %s.old
ApplicationURI:      %s (unchanged)
key:                 %s
SHA-256 fingerprint: %s
valid until:         %s

Next, before the agent reconnects with it (systemctl restart tagbridge):
  1. Import %s into each PLC's list of trusted client certificates
     (often "trusted clients" or the certificate manager of the OPC UA server;
     check the fingerprint above), and remove the old one there once the
     agent runs on the new one. Until then the PLC rejects the connection.
  2. The configuration needs no change: the file names are the same.
`, certPath, derPath, certPath, uri, kept, certs.Fingerprint(der), cert.NotAfter.UTC().Format("2006-01-02"), derPath)
	return exitOK
}
