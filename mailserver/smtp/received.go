package smtp

import (
	"crypto/tls"
	"strings"
	"time"
)

// appendReceived appends the trace header of RFC 5321 §4.4 that goes in
// front of the message. It names the client's EHLO and address, the TLS
// version and cipher, and the protocol keyword of RFC 3848/6531 (the "A"
// says a login was used, never which one or how). "for" is written only
// for a single recipient, so one copy of a message does not disclose the
// other recipients.
func (s *session) appendReceived(b []byte, env Envelope, now time.Time) []byte {
	b = append(b, "Received: from "...)
	b = append(b, sanitizeHelo(env.Helo)...)
	b = append(b, " ("...)
	b = append(b, addressLiteral(env)...)
	b = append(b, ")\r\n\tby "...)
	b = append(b, s.srv.cfg.Hostname...)
	b = append(b, " (mailconf) with "...)
	b = append(b, protocolKeyword(env)...)
	b = append(b, " id "...)
	b = append(b, env.ID...)
	if s.tls != nil {
		b = append(b, "\r\n\t(using "...)
		b = append(b, tls.VersionName(s.tls.Version)...)
		b = append(b, " with cipher "...)
		b = append(b, tls.CipherSuiteName(s.tls.CipherSuite)...)
		b = append(b, ")"...)
	}
	if len(env.To) == 1 {
		b = append(b, "\r\n\tfor <"...)
		b = append(b, env.To[0]...)
		b = append(b, ">"...)
	}
	b = append(b, ";\r\n\t"...)
	b = now.AppendFormat(b, time.RFC1123Z)
	return append(b, "\r\n"...)
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
