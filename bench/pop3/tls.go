package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// benchCert is the one server certificate both servers present: an ECDSA
// P-256 leaf for "localhost" issued by a throwaway ECDSA P-256 root, so
// that the handshakes sign with the same key type and the clients verify
// the same chain.
type benchCert struct {
	cert     tls.Certificate // leaf (the root is the trust anchor, not sent)
	pool     *x509.CertPool  // trusts the root
	certFile string          // PEM leaf, for Dovecot's ssl_cert
	keyFile  string          // PEM PKCS#8 key, for Dovecot's ssl_key
}

func newBenchCert(dir string) (benchCert, error) {
	serial := func() (*big.Int, error) { return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120)) }
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return benchCert{}, fmt.Errorf("bench cert: %w", err)
	}
	sn, err := serial()
	if err != nil {
		return benchCert{}, fmt.Errorf("bench cert: %w", err)
	}
	rootTmpl := &x509.Certificate{
		SerialNumber: sn, Subject: pkix.Name{CommonName: "bench/pop3 test root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, &rootKey.PublicKey, rootKey)
	if err != nil {
		return benchCert{}, fmt.Errorf("bench cert: root: %w", err)
	}
	root, err := x509.ParseCertificate(rootDER)
	if err != nil {
		return benchCert{}, fmt.Errorf("bench cert: root: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return benchCert{}, fmt.Errorf("bench cert: %w", err)
	}
	if sn, err = serial(); err != nil {
		return benchCert{}, fmt.Errorf("bench cert: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn, Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, root, &key.PublicKey, rootKey)
	if err != nil {
		return benchCert{}, fmt.Errorf("bench cert: leaf: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return benchCert{}, fmt.Errorf("bench cert: leaf: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return benchCert{}, fmt.Errorf("bench cert: key: %w", err)
	}
	bc := benchCert{
		cert:     tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf},
		pool:     x509.NewCertPool(),
		certFile: filepath.Join(dir, "cert.pem"),
		keyFile:  filepath.Join(dir, "key.pem"),
	}
	bc.pool.AddCert(root)
	if err := os.WriteFile(bc.certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return benchCert{}, fmt.Errorf("bench cert: %w", err)
	}
	if err := os.WriteFile(bc.keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return benchCert{}, fmt.Errorf("bench cert: %w", err)
	}
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
