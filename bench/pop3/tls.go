package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"path/filepath"

	"mailconf/internal/certs"
)

// benchCert is the one server certificate both servers present: mailconf's
// own self-signed ECDSA P-256 certificate for "localhost" (certs, as a
// fresh install serves), so that the handshakes sign with the same key
// type and the clients verify the same certificate.
type benchCert struct {
	cert     tls.Certificate
	pool     *x509.CertPool // trusts it
	certFile string         // PEM, for Dovecot's ssl_cert
	keyFile  string         // PEM PKCS#8 key, for Dovecot's ssl_key
}

func newBenchCert(dir string) (benchCert, error) {
	bc := benchCert{certFile: filepath.Join(dir, "cert.pem"), keyFile: filepath.Join(dir, "key.pem")}
	if err := certs.WriteSelfSigned(bc.certFile, bc.keyFile, []string{"localhost"}); err != nil {
		return benchCert{}, fmt.Errorf("bench cert: %w", err)
	}
	c, err := tls.LoadX509KeyPair(bc.certFile, bc.keyFile)
	if err != nil {
		return benchCert{}, fmt.Errorf("bench cert: %w", err)
	}
	bc.cert = c
	bc.pool = x509.NewCertPool()
	bc.pool.AddCert(c.Leaf)
	return bc, nil
}

// clientTLS is what the benchmark client offers both servers: TLS 1.3
// only, Go's default cipher suites, and X25519 alone for the key exchange
// (Debian's OpenSSL 3.0 has no X25519MLKEM768, which Go would otherwise
// pick with mailconf), so both handshakes do the same work.
func (bc benchCert) clientTLS() *tls.Config {
	return &tls.Config{
		RootCAs: bc.pool, ServerName: "localhost", MinVersion: tls.VersionTLS13,
		CurvePreferences: []tls.CurveID{tls.X25519},
	}
}

// describeTLS names what a connection negotiated.
func describeTLS(cs tls.ConnectionState) string {
	return fmt.Sprintf("%s %s %s", tls.VersionName(cs.Version), tls.CipherSuiteName(cs.CipherSuite), cs.CurveID)
}
