package probetest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"mailconf/internal/testutil"
)

// SelfSigned returns a self-signed certificate for names.
func SelfSigned(t testing.TB, names ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: names[0]},
		Issuer:                pkix.Name{CommonName: names[0]},
		DNSNames:              names,
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(90 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// Cert issues a certificate from ca valid now for names.
func Cert(t testing.TB, ca *testutil.CA, names ...string) *tls.Certificate {
	t.Helper()
	l := ca.Issue(t, names, time.Time{}, time.Time{})
	return &l.Cert
}

// CertValid issues a certificate from ca for names valid from nb to na.
func CertValid(t testing.TB, ca *testutil.CA, nb, na time.Time, names ...string) *tls.Certificate {
	t.Helper()
	l := ca.Issue(t, names, nb, na)
	return &l.Cert
}

// LeafOnly drops the intermediate from a chain.
func LeafOnly(c *tls.Certificate) *tls.Certificate {
	cp := *c
	cp.Certificate = cp.Certificate[:1]
	return &cp
}

var zeroTime time.Time
