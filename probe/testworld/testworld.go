// Package testworld lets tests outside probe/ (the CLI's, the benchmark's)
// use the probe's hermetic loopback world: DNS, autoconfig web servers and
// scripted mail servers. It only re-exports probe/internal/probetest.
package testworld

import (
	"crypto/tls"
	"net/http"
	"testing"
	"time"

	"mailconf/internal/testutil"
	"mailconf/probe/internal/probetest"
)

type (
	// World is probetest.World.
	World = probetest.World
	// Mail is probetest.Mail.
	Mail = probetest.Mail
	// DNS is probetest.DNS.
	DNS = probetest.DNS
)

// NewWorld starts DNS and the web listeners.
func NewWorld(t testing.TB) *World { return probetest.NewWorld(t) }

// Cert issues a certificate from ca valid now for names.
func Cert(t testing.TB, ca *testutil.CA, names ...string) *tls.Certificate {
	return probetest.Cert(t, ca, names...)
}

// CertValid issues a certificate from ca for names valid from nb to na.
func CertValid(t testing.TB, ca *testutil.CA, nb, na time.Time, names ...string) *tls.Certificate {
	return probetest.CertValid(t, ca, nb, na, names...)
}

// SelfSigned returns a self-signed certificate for names.
func SelfSigned(t testing.TB, names ...string) tls.Certificate {
	return probetest.SelfSigned(t, names...)
}

// XML serves body with a content type.
func XML(contentType, body string) http.HandlerFunc { return probetest.XML(contentType, body) }
