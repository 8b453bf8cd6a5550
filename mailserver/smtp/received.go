package smtp

import (
	"crypto/tls"
	"strings"
	"time"
)

// receivedHeader builds the trace header of RFC 5321 §4.4 that goes in
// front of the message. It names the client's EHLO and address, the TLS
// version and cipher, and the protocol keyword of RFC 3848/6531 (the "A"
// says a login was used, never which one or how). "for" is written only
// for a single recipient, so one copy of a message does not disclose the
// other recipients.
func (s *session) receivedHeader(env Envelope, now time.Time) []byte {
	var b strings.Builder
	b.WriteString("Received: from ")
	b.WriteString(sanitizeHelo(env.Helo))
	b.WriteString(" (")
	b.WriteString(addressLiteral(env))
	b.WriteString(")\r\n\tby ")
	b.WriteString(s.srv.cfg.Hostname)
	b.WriteString(" (mailconf) with ")
	b.WriteString(protocolKeyword(env))
	b.WriteString(" id ")
	b.WriteString(env.ID)
	if s.tls != nil {
		b.WriteString("\r\n\t(using ")
		b.WriteString(tls.VersionName(s.tls.Version))
		b.WriteString(" with cipher ")
		b.WriteString(tls.CipherSuiteName(s.tls.CipherSuite))
		b.WriteString(")")
	}
	if len(env.To) == 1 {
		b.WriteString("\r\n\tfor <")
		b.WriteString(env.To[0])
		b.WriteString(">")
	}
	b.WriteString(";\r\n\t")
	b.WriteString(now.Format(time.RFC1123Z))
	b.WriteString("\r\n")
	return []byte(b.String())
}

func protocolKeyword(env Envelope) string {
	p := "ESMTP"
	if env.UTF8 {
		p = "UTF8SMTP"
	}
	if env.TLS {
		p += "S"
	}
	if env.AuthUser != "" {
		p += "A"
	}
	return p
}

func addressLiteral(env Envelope) string {
	if !env.RemoteIP.IsValid() {
		return "unknown"
	}
	if env.RemoteIP.Is6() {
		return "[IPv6:" + env.RemoteIP.String() + "]"
	}
	return "[" + env.RemoteIP.String() + "]"
}

// sanitizeHelo keeps the client's EHLO argument from breaking the header:
// it is client-chosen text, so only visible ASCII outside comment syntax
// survives, and its length is capped.
func sanitizeHelo(h string) string {
	var b strings.Builder
	for i := 0; i < len(h) && b.Len() < 255; i++ {
		c := h[i]
		if c > 0x20 && c < 0x7f && c != '(' && c != ')' && c != '\\' && c != ';' {
			b.WriteByte(c)
		} else {
			b.WriteByte('?')
		}
	}
	if b.Len() == 0 {
		return "unknown"
	}
	return b.String()
}
