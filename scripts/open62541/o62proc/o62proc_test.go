package o62proc

import (
	"crypto/rsa"
	"crypto/x509"
	"net"
	"regexp"
	"strconv"
	"testing"
	"time"
)

func TestStartServesAndRestartsWithTheSameCertificate(t *testing.T) {
	s := Start(t, Options{Policies: []string{"None", "Basic256Sha256"}, Tags: 4})
	if s.Endpoint != "opc.tcp://127.0.0.1:"+strconv.Itoa(s.Port()) {
		t.Fatalf("endpoint %q, port %d", s.Endpoint, s.Port())
	}
	der, err := s.Certificate("Basic256Sha256")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := cert.PublicKey.(*rsa.PublicKey); !ok {
		t.Fatalf("Basic256Sha256 certificate has a %T key", cert.PublicKey)
	}
	conn, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(s.Port()), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if n := s.Count(regexp.MustCompile(`^\[o62server\] endpoint .*#Basic256Sha256 `)); n != 2 {
		t.Fatalf("%d Basic256Sha256 endpoints, want Sign and SignAndEncrypt", n)
	}

	s.Restart()
	again, err := s.Certificate("Basic256Sha256")
	if err != nil {
		t.Fatal(err)
	}
	if string(again) != string(der) {
		t.Fatal("a restart with the same PKI folder presents another certificate")
	}
}

func TestMissingBinaryIsAnError(t *testing.T) {
	t.Setenv(EnvBinary, "/nonexistent/o62server")
	if _, err := Binary(); err == nil {
		t.Fatal("a missing o62server was accepted")
	}
}
