package check

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"mailconf/probe/netguard"
	"mailconf/probe/report"
)

// phase is where in the dialogue an error happened; the same error means
// different things before and after the greeting.
type phase int

const (
	phaseConnect phase = iota
	phaseTLS
	phaseGreeting
	phaseDialogue
)

// classifyNet maps a connection error to a failure code.
func classifyNet(err error, ph phase) report.Code {
	if blocked, port := netguard.IsBlocked(err); blocked {
		if port {
			return report.PolicyBlockedPort
		}
		return report.PolicyBlockedAddress
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "remote error" {
		return alertCode(opErr.Err)
	}
	var rh tls.RecordHeaderError
	if errors.As(err, &rh) {
		if looksLikeText(rh.RecordHeader[:]) {
			return report.TLSPlaintextOnTLSPort
		}
		return report.TLSHandshakeFailure
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return report.NetRefused
	case errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EHOSTUNREACH):
		return report.NetUnreachable
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded), isTimeout(err):
		return report.NetTimeout
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		if ph <= phaseGreeting {
			return report.NetClosedBeforeGreeting
		}
		return report.NetReset
	case errors.Is(err, errLineTooLong):
		return report.ProtoUnexpectedReply
	}
	if ph == phaseTLS {
		return report.TLSHandshakeFailure
	}
	return report.ProtoUnexpectedReply
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// alertCode names a TLS alert received from the server.
func alertCode(err error) report.Code {
	name := strings.TrimPrefix(err.Error(), "tls: ")
	if name == "protocol version not supported" {
		return report.TLSProtocolVersion
	}
	return report.Code(report.TLSAlertPrefix + strings.ReplaceAll(name, " ", "_"))
}

// looksLikeText says whether the first bytes of a "TLS record" are in fact
// a plaintext greeting ("* OK", "+OK", "220 ").
func looksLikeText(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

// looksLikeTLS says whether a plaintext greeting is in fact a TLS record
// (handshake 0x16 or alert 0x15, version 3.x).
func looksLikeTLS(s string) bool {
	return len(s) >= 2 && (s[0] == 0x15 || s[0] == 0x16) && s[1] == 0x03
}

// classifyCert maps a chain verification error to a failure code.
func classifyCert(err error, chain []*x509.Certificate, now time.Time) report.Code {
	leaf := chain[0]
	var inv x509.CertificateInvalidError
	if errors.As(err, &inv) && inv.Reason == x509.Expired {
		for _, c := range chain {
			if now.Before(c.NotBefore) {
				return report.CertNotYetValid
			}
		}
		return report.CertExpired
	}
	var ua x509.UnknownAuthorityError
	if errors.As(err, &ua) {
		// CheckSignatureFrom would demand a CA certificate; most self-signed
		// server certificates are not one.
		selfSigned := bytes.Equal(leaf.RawSubject, leaf.RawIssuer) && leaf.CheckSignature(leaf.SignatureAlgorithm, leaf.RawTBSCertificate, leaf.Signature) == nil
		switch {
		case selfSigned:
			return report.CertSelfSigned
		case len(chain) == 1:
			// A leaf alone, not self-signed: the usual cause is a server
			// that does not send its intermediate.
			return report.CertIncompleteChain
		}
	}
	return report.CertUntrusted
}

// ClassifyError maps an error from a connection (HTTP fetches included)
// to a failure code: policy refusals, network errors, TLS alerts and
// certificate verification errors.
func ClassifyError(err error, now time.Time) report.Code {
	var cv *tls.CertificateVerificationError
	if errors.As(err, &cv) && len(cv.UnverifiedCertificates) > 0 {
		var hn x509.HostnameError
		if errors.As(cv.Err, &hn) {
			return report.CertNameMismatchHost
		}
		return classifyCert(cv.Err, cv.UnverifiedCertificates, now)
	}
	return classifyNet(err, phaseTLS)
}
