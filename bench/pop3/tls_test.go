package main

import (
	"crypto/tls"
	"io"
	"testing"
)

// TestBenchCertHandshake: the client configuration trusts the certificate
// both servers present, so that a benchmark run does not fail at its first
// handshake.
func TestBenchCertHandshake(t *testing.T) {
	bc, err := newBenchCert(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// Dovecot reads the same certificate and key from files.
	if _, err := tls.LoadX509KeyPair(bc.certFile, bc.keyFile); err != nil {
		t.Fatalf("Dovecot's files: %v", err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{bc.cert}, MinVersion: tls.VersionTLS13})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.(*tls.Conn).Handshake()
		io.Copy(io.Discard, c)
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), bc.clientTLS())
	if err != nil {
		t.Fatalf("handshake with the bench certificate: %v", err)
	}
	defer c.Close()
	if cs := c.ConnectionState(); cs.Version != tls.VersionTLS13 || cs.CurveID != tls.X25519 {
		t.Errorf("negotiated %s, want TLS 1.3 with X25519", describeTLS(cs))
	}
}
