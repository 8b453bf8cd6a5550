package probe_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"mailconf/internal/testutil"
	"mailconf/probe"
	"mailconf/probe/check"
	"mailconf/probe/probetest"
	"mailconf/probe/report"
)

const (
	domain   = "example.test"
	address  = "alice@example.test"
	password = "correct horse battery staple"
)

// srv is one server line of a test autoconfig document.
type srv struct {
	typ, host string
	port      int
	socket    string
}

func imapTLS() srv      { return srv{"imap", "imap.example.test", 993, "SSL"} }
func imapSTARTTLS() srv { return srv{"imap", "imap.example.test", 143, "STARTTLS"} }
func smtpTLS() srv      { return srv{"smtp", "smtp.example.test", 465, "SSL"} }
func smtpSTARTTLS() srv { return srv{"smtp", "smtp.example.test", 587, "STARTTLS"} }
func popTLS() srv       { return srv{"pop3", "pop.example.test", 995, "SSL"} }

// autoconfigXML is a fixture document (test data, written out literally on
// purpose: it is what a third-party server would send).
func autoconfigXML(dom string, servers ...srv) string {
	var b strings.Builder
	fmt.Fprintf(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<clientConfig version=\"1.1\"><emailProvider id=\"%s\"><domain>%s</domain>", dom, dom)
	for _, s := range servers {
		kind := "incomingServer"
		if s.typ == "smtp" {
			kind = "outgoingServer"
		}
		fmt.Fprintf(&b, "<%s type=\"%s\"><hostname>%s</hostname><port>%d</port><socketType>%s</socketType><username>%%EMAILADDRESS%%</username><authentication>password-cleartext</authentication></%s>", kind, s.typ, s.host, s.port, s.socket, kind)
	}
	b.WriteString("</emailProvider></clientConfig>\n")
	return b.String()
}

func publish(t *testing.T, w *probetest.World, servers ...srv) {
	t.Helper()
	w.Page(t, "https://autoconfig."+domain+"/mail/config-v1.1.xml", probetest.XML("text/xml; charset=utf-8", autoconfigXML(domain, servers...)))
}

func newWorld(t *testing.T) *probetest.World {
	t.Helper()
	w := probetest.NewWorld(t)
	w.Zone(t, domain+". 300 IN MX 10 mx.example.test.\nmx.example.test. 300 IN A 127.0.0.1\n")
	return w
}

func goodMail(t *testing.T, w *probetest.World, proto, host string, implicit bool) *probetest.Mail {
	return &probetest.Mail{Proto: proto, Implicit: implicit, Cert: probetest.Cert(t, w.CA, host), User: address, Pass: password}
}

func options(w *probetest.World) probe.Options {
	return probe.Options{
		Resolver: w.DNS.Addr, RootCAs: w.CA.Pool, Policy: w.Policy(), AuthAllowed: true, PortMap: w.PortMap,
		Timeouts: check.Timeouts{Greeting: 1500 * time.Millisecond, GreetingSlow: 300 * time.Millisecond, Command: 2 * time.Second, Endpoint: 10 * time.Second, InjectionWait: 300 * time.Millisecond},
		Timeout:  30 * time.Second,
	}
}

func run(t *testing.T, w *probetest.World, addr, pw string, mod func(*probe.Options)) *report.Report {
	t.Helper()
	opts := options(w)
	if mod != nil {
		mod(&opts)
	}
	var secret report.Secret
	if pw != "" {
		secret = report.NewSecret(pw)
	}
	rep, err := probe.Run(context.Background(), probe.Request{Address: addr, Password: secret}, opts)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func codes(rep *report.Report) map[report.Code]report.Step {
	out := map[report.Code]report.Step{}
	for _, s := range rep.Steps {
		if s.Error != nil {
			if _, ok := out[s.Error.Class]; !ok {
				out[s.Error.Class] = s
			}
		}
	}
	return out
}

// dump renders a report for failure messages.
func dump(rep *report.Report) string {
	var b bytes.Buffer
	_ = report.Text(&b, rep, false)
	return b.String()
}

func TestAllGreen(t *testing.T) {
	w := newWorld(t)
	imaps := goodMail(t, w, "imap", "imap.example.test", true)
	w.Mail(t, "imap.example.test", 993, imaps)
	w.Mail(t, "imap.example.test", 143, goodMail(t, w, "imap", "imap.example.test", false))
	w.Mail(t, "pop.example.test", 995, goodMail(t, w, "pop3", "pop.example.test", true))
	smtps := goodMail(t, w, "smtp", "smtp.example.test", true)
	w.Mail(t, "smtp.example.test", 465, smtps)
	w.Mail(t, "smtp.example.test", 587, goodMail(t, w, "smtp", "smtp.example.test", false))
	publish(t, w, imapTLS(), imapSTARTTLS(), popTLS(), smtpTLS(), smtpSTARTTLS())
	var progress []report.Step
	rep := run(t, w, address, password, func(o *probe.Options) { o.Progress = func(s report.Step) { progress = append(progress, s) } })
	if rep.Summary.Status != report.OverallOK && rep.Summary.Status != report.OverallWarnings {
		t.Fatalf("status %s\n%s", rep.Summary.Status, dump(rep))
	}
	if f := rep.Summary.FirstFailure; f != "" {
		t.Fatalf("first failure %s\n%s", f, dump(rep))
	}
	if len(rep.Endpoints) != 5 {
		t.Fatalf("%d endpoints, want 5", len(rep.Endpoints))
	}
	in, out := rep.Summary.Recommended.Incoming, rep.Summary.Recommended.Outgoing
	if in == nil || in.Port != 993 || in.Security != "implicit_tls" || in.Username != address {
		t.Errorf("recommended incoming %+v", in)
	}
	if out == nil || out.Port != 465 {
		t.Errorf("recommended outgoing %+v", out)
	}
	// One login per protocol: IMAP once (on 993, the better rank), POP3
	// once, SMTP once.
	if n := imaps.Logins(); n != 1 {
		t.Errorf("IMAPS saw %d logins, want 1", n)
	}
	if n := smtps.Logins(); n != 1 {
		t.Errorf("SMTPS saw %d logins, want 1", n)
	}
	var sessions int
	for _, ep := range rep.Endpoints {
		for _, ip := range ep.IPs {
			if ip.Session != nil {
				sessions++
			}
			if ip.TLS == nil || ip.TLS.Certificate == nil || !ip.TLS.Certificate.Trusted {
				t.Errorf("%s:%d: TLS facts missing: %+v", ep.Host, ep.Port, ip.TLS)
			}
		}
	}
	if sessions != 3 {
		t.Errorf("%d session checks, want 3 (one per protocol)", sessions)
	}
	for _, c := range rep.Summary.Clients {
		if c.Client != "outlook" && !c.Works {
			t.Errorf("client %s does not work: %+v", c.Client, c)
		}
	}
	if len(progress) < 2*len(rep.Steps) {
		t.Errorf("progress saw %d updates for %d steps", len(progress), len(rep.Steps))
	}
	// The DNS stage, discovery's HTTP dials and the endpoint checks all
	// need these hosts; the resolver should hear each question once.
	for _, h := range []string{domain, "autoconfig." + domain, "autodiscover." + domain, "imap." + domain, "smtp." + domain} {
		for _, q := range []uint16{dns.TypeA, dns.TypeAAAA} {
			if n := w.DNS.Asked(h, q); n != 1 {
				t.Errorf("%s %s asked %d times, want 1", h, dns.TypeToString[q], n)
			}
		}
	}
	if n := w.DNS.Asked("_autodiscover._tcp."+domain, dns.TypeSRV); n != 1 {
		t.Errorf("_autodiscover._tcp SRV asked %d times, want 1", n)
	}
}

type codeCase struct {
	setup func(t *testing.T, w *probetest.World)
	addr  string // default address
	pw    string // default: password
	opts  func(*probe.Options)
}

// closedPort returns a loopback port with nothing listening.
func closedPort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return p
}

// imapCase publishes one implicit-TLS IMAP server with m's behaviour and a
// working SMTP server.
func imapCase(mod func(t *testing.T, w *probetest.World, m *probetest.Mail)) func(*testing.T, *probetest.World) {
	return func(t *testing.T, w *probetest.World) {
		m := goodMail(t, w, "imap", "imap.example.test", true)
		mod(t, w, m)
		w.Mail(t, "imap.example.test", 993, m)
		w.Mail(t, "smtp.example.test", 465, goodMail(t, w, "smtp", "smtp.example.test", true))
		publish(t, w, imapTLS(), smtpTLS())
	}
}

func smtpCase(port int, mod func(t *testing.T, w *probetest.World, m *probetest.Mail)) func(*testing.T, *probetest.World) {
	return func(t *testing.T, w *probetest.World) {
		m := goodMail(t, w, "smtp", "smtp.example.test", port == 465)
		mod(t, w, m)
		w.Mail(t, "smtp.example.test", port, m)
		w.Mail(t, "imap.example.test", 993, goodMail(t, w, "imap", "imap.example.test", true))
		s := smtpTLS()
		if port == 587 {
			s = smtpSTARTTLS()
		}
		publish(t, w, imapTLS(), s)
	}
}

func popCase(mod func(t *testing.T, w *probetest.World, m *probetest.Mail)) func(*testing.T, *probetest.World) {
	return func(t *testing.T, w *probetest.World) {
		m := goodMail(t, w, "pop3", "pop.example.test", true)
		mod(t, w, m)
		w.Mail(t, "pop.example.test", 995, m)
		w.Mail(t, "smtp.example.test", 465, goodMail(t, w, "smtp", "smtp.example.test", true))
		publish(t, w, popTLS(), smtpTLS())
	}
}

func imapStartTLSCase(mod func(t *testing.T, w *probetest.World, m *probetest.Mail)) func(*testing.T, *probetest.World) {
	return func(t *testing.T, w *probetest.World) {
		m := goodMail(t, w, "imap", "imap.example.test", false)
		mod(t, w, m)
		w.Mail(t, "imap.example.test", 143, m)
		w.Mail(t, "smtp.example.test", 465, goodMail(t, w, "smtp", "smtp.example.test", true))
		publish(t, w, imapSTARTTLS(), smtpTLS())
	}
}

func cert(f func(t *testing.T, w *probetest.World) *tls.Certificate) func(*testing.T, *probetest.World, *probetest.Mail) {
	return func(t *testing.T, w *probetest.World, m *probetest.Mail) { m.Cert = f(t, w) }
}

func reply(verb, text string) func(*testing.T, *probetest.World, *probetest.Mail) {
	return func(_ *testing.T, _ *probetest.World, m *probetest.Mail) {
		m.Replies = map[string]string{verb: text}
	}
}

func autoconfigPage(h http.HandlerFunc) func(*testing.T, *probetest.World) {
	return func(t *testing.T, w *probetest.World) {
		w.Page(t, "https://autoconfig."+domain+"/mail/config-v1.1.xml", h)
	}
}

// elsewhere lists codes whose emitting test lives in another package
// because the condition cannot be produced on loopback.
var elsewhere = map[report.Code]string{
	report.NetUnreachable: "check.TestClassifyUnreachable (ENETUNREACH needs a missing route; no packet may leave loopback)",
}

func codeCases() map[report.Code]codeCase {
	now := time.Now()
	day := 24 * time.Hour
	return map[report.Code]codeCase{
		report.DNSNXDomain: {addr: "bob@nowhere.test", setup: func(*testing.T, *probetest.World) {}},
		report.DNSNoData: {addr: "bob@nomx.test", setup: func(t *testing.T, w *probetest.World) {
			w.Host(t, "nomx.test")
		}},
		report.DNSServFail: {setup: func(t *testing.T, w *probetest.World) { w.DNS.Fail(domain) }},
		report.DNSTimeout:  {setup: func(t *testing.T, w *probetest.World) { w.DNS.Silent("_imaps._tcp." + domain) }},
		report.DNSNullMX: {addr: "bob@nullmx.test", setup: func(t *testing.T, w *probetest.World) {
			w.Zone(t, "nullmx.test. 300 IN MX 0 .\n")
		}},
		report.DNSSRVDisabled: {setup: func(t *testing.T, w *probetest.World) {
			w.Zone(t, "_imap._tcp.example.test. 300 IN SRV 0 0 0 .\n")
		}},
		report.DNSCNAMETarget: {setup: func(t *testing.T, w *probetest.World) {
			w.Zone(t, "_imaps._tcp.example.test. 300 IN SRV 0 1 993 alias.example.test.\nalias.example.test. 300 IN CNAME imap.example.test.\n")
			w.Mail(t, "imap.example.test", 993, goodMail(t, w, "imap", "imap.example.test", true))
		}},
		report.DNSNoAddress: {setup: func(t *testing.T, w *probetest.World) {
			publish(t, w, srv{"imap", "ghost.example.test", 993, "SSL"}, smtpTLS())
		}},
		report.DNSBogus: {setup: func(t *testing.T, w *probetest.World) { w.DNS.Bogus(domain) }},

		report.NetRefused: {setup: func(t *testing.T, w *probetest.World) {
			w.Host(t, "imap.example.test")
			w.PortMap[993] = closedPort(t)
			publish(t, w, imapTLS(), smtpTLS())
		}},
		report.NetTimeout: {setup: imapCase(func(_ *testing.T, _ *probetest.World, m *probetest.Mail) { m.Silent = true })},
		report.NetReset:   {setup: imapCase(func(_ *testing.T, _ *probetest.World, m *probetest.Mail) { m.ResetOnAuth = true })},
		report.NetClosedBeforeGreeting: {setup: imapCase(func(_ *testing.T, _ *probetest.World, m *probetest.Mail) {
			m.CloseOnAccept = true
		})},
		report.PolicyBlockedAddress: {
			setup: imapCase(func(*testing.T, *probetest.World, *probetest.Mail) {}),
			opts:  func(o *probe.Options) { o.Policy.AllowPrefixes = nil },
		},
		report.PolicyBlockedPort: {setup: func(t *testing.T, w *probetest.World) {
			w.Mail(t, "imap.example.test", 2993, goodMail(t, w, "imap", "imap.example.test", true))
			publish(t, w, srv{"imap", "imap.example.test", 2993, "SSL"}, smtpTLS())
		}},

		report.TLSPlaintextOnTLSPort: {setup: imapCase(func(_ *testing.T, _ *probetest.World, m *probetest.Mail) { m.Implicit, m.Cert = false, nil })},
		report.TLSOnPlainPort: {setup: imapStartTLSCase(func(_ *testing.T, _ *probetest.World, m *probetest.Mail) {
			m.RawGreeting = []byte("\x15\x03\x03\x00\x02\x02\x28")
		})},
		report.TLSProtocolVersion: {setup: imapStartTLSCase(func(_ *testing.T, _ *probetest.World, m *probetest.Mail) {
			m.TLSConfig = func(c *tls.Config) { c.MinVersion, c.MaxVersion = tls.VersionTLS10, tls.VersionTLS11 }
		})},
		report.TLSLegacyOnly: {setup: imapCase(func(_ *testing.T, _ *probetest.World, m *probetest.Mail) {
			m.TLSConfig = func(c *tls.Config) { c.MinVersion, c.MaxVersion = tls.VersionTLS10, tls.VersionTLS11 }
		})},
		report.TLSHandshakeFailure: {setup: imapCase(func(_ *testing.T, _ *probetest.World, m *probetest.Mail) {
			m.Implicit, m.Cert = false, nil
			m.RawGreeting = []byte("\x00\x01\x02\x03\x04\x05\x06\x07")
		})},
		report.TLSAlertPrefix + "certificate_required": {setup: imapCase(func(_ *testing.T, _ *probetest.World, m *probetest.Mail) {
			m.TLSConfig = func(c *tls.Config) { c.ClientAuth = tls.RequireAnyClientCert }
		})},

		report.CertUntrusted: {setup: imapCase(cert(func(t *testing.T, _ *probetest.World) *tls.Certificate {
			return probetest.Cert(t, testutil.NewCA(t), "imap.example.test")
		}))},
		report.CertSelfSigned: {setup: imapCase(cert(func(t *testing.T, _ *probetest.World) *tls.Certificate {
			c := probetest.SelfSigned(t, "imap.example.test")
			return &c
		}))},
		report.CertIncompleteChain: {setup: imapCase(cert(func(t *testing.T, w *probetest.World) *tls.Certificate {
			return probetest.LeafOnly(probetest.Cert(t, w.CA, "imap.example.test"))
		}))},
		report.CertExpired: {setup: imapCase(cert(func(t *testing.T, w *probetest.World) *tls.Certificate {
			return probetest.CertValid(t, w.CA, now.Add(-60*day), now.Add(-day), "imap.example.test")
		}))},
		report.CertNotYetValid: {setup: imapCase(cert(func(t *testing.T, w *probetest.World) *tls.Certificate {
			return probetest.CertValid(t, w.CA, now.Add(day), now.Add(60*day), "imap.example.test")
		}))},
		report.CertNameMismatchHost: {setup: imapCase(cert(func(t *testing.T, w *probetest.World) *tls.Certificate {
			return probetest.Cert(t, w.CA, "other.example.test")
		}))},
		report.CertNameMismatchEmailDomain: {setup: func(t *testing.T, w *probetest.World) {
			w.Zone(t, "_imaps._tcp.example.test. 300 IN SRV 0 1 993 imap.example.test.\n")
			w.Mail(t, "imap.example.test", 993, goodMail(t, w, "imap", "imap.example.test", true))
		}},
		report.CertExpiringSoon: {setup: imapCase(cert(func(t *testing.T, w *probetest.World) *tls.Certificate {
			return probetest.CertValid(t, w.CA, now.Add(-day), now.Add(10*day), "imap.example.test")
		}))},

		report.GreetingRejected: {setup: smtpCase(465, func(_ *testing.T, _ *probetest.World, m *probetest.Mail) {
			m.Greeting = "554 5.7.1 You are not welcome here"
		})},
		report.GreetingSlow: {setup: imapCase(func(_ *testing.T, _ *probetest.World, m *probetest.Mail) { m.GreetDelay = 500 * time.Millisecond })},
		report.GreetingPreauth: {setup: imapCase(func(_ *testing.T, _ *probetest.World, m *probetest.Mail) {
			m.Greeting = "* PREAUTH welcome, you are logged in"
		})},
		report.CapsStartTLSMissing: {setup: smtpCase(587, func(_ *testing.T, _ *probetest.World, m *probetest.Mail) {
			m.Caps = []string{"PIPELINING"}
		})},
		report.StartTLSRejected: {setup: imapStartTLSCase(reply("STARTTLS", "TAG BAD not now"))},
		report.StartTLSInjection: {
			setup: smtpCase(587, func(_ *testing.T, _ *probetest.World, m *probetest.Mail) { m.Injectable = true }),
			opts:  func(o *probe.Options) { o.Deep = true },
		},
		report.StartTLSBufferedPlaintext: {setup: smtpCase(587, func(_ *testing.T, _ *probetest.World, m *probetest.Mail) {
			m.StartTLSExtra = "250 pipelined answer\r\n"
		})},
		report.CapsAuthMissing: {setup: smtpCase(465, func(_ *testing.T, _ *probetest.World, m *probetest.Mail) {
			m.CapsTLS = []string{"PIPELINING"}
		})},
		report.CapsAuthBeforeTLS: {setup: smtpCase(587, func(_ *testing.T, _ *probetest.World, m *probetest.Mail) {
			m.Caps = []string{"STARTTLS", "AUTH PLAIN LOGIN"}
		})},
		report.CapsLoginDisabled: {setup: imapCase(func(_ *testing.T, _ *probetest.World, m *probetest.Mail) {
			m.CapsTLS = []string{"IMAP4rev1", "LOGINDISABLED"}
		})},
		report.ProtoUnexpectedReply: {setup: smtpCase(465, func(_ *testing.T, _ *probetest.World, m *probetest.Mail) {
			m.Greeting = "hello there"
		})},

		report.AuthFailed:              {pw: "wrong password", setup: imapCase(func(*testing.T, *probetest.World, *probetest.Mail) {})},
		report.AuthTemporary:           {setup: smtpCase(465, reply("AUTH", "454 4.7.0 Temporary authentication failure"))},
		report.AuthMechanismTooWeak:    {setup: smtpCase(465, reply("AUTH", "534 5.7.9 Authentication mechanism is too weak"))},
		report.AuthEncryptionRequired:  {setup: smtpCase(465, reply("AUTH", "538 5.7.11 Encryption required for requested authentication mechanism"))},
		report.AuthAuthorizationFailed: {setup: imapCase(reply("AUTHENTICATE", "TAG NO [AUTHORIZATIONFAILED] not allowed"))},
		report.AuthExpired:             {setup: imapCase(reply("AUTHENTICATE", "TAG NO [EXPIRED] password expired"))},
		report.AuthContactAdmin:        {setup: imapCase(reply("AUTHENTICATE", "TAG NO [CONTACTADMIN] account locked"))},
		report.AuthInUse:               {setup: popCase(reply("PASS", "-ERR [IN-USE] maildrop locked"))},
		report.AuthLoginDelay:          {setup: popCase(reply("PASS", "-ERR [LOGIN-DELAY] wait a minute"))},
		report.AuthAppPasswordOrOAuth:  {setup: smtpCase(465, reply("AUTH", "534 5.7.9 Application-specific password required."))},
		report.AuthSkipped: {
			setup: imapCase(func(*testing.T, *probetest.World, *probetest.Mail) {}),
			opts:  func(o *probe.Options) { o.AuthAllowed = false },
		},
		report.SessionMailboxUnavailable: {setup: imapCase(reply("EXAMINE", "TAG NO [NONEXISTENT] no INBOX"))},
		report.SessionSenderRejected:     {setup: smtpCase(465, reply("MAIL", "553 5.7.1 Sender address rejected: not owned by user"))},

		report.DiscoveryHTTPStatus:  {setup: autoconfigPage(func(rw http.ResponseWriter, _ *http.Request) { rw.WriteHeader(500) })},
		report.DiscoveryContentType: {setup: autoconfigPage(probetest.XML("text/plain", autoconfigXML(domain, imapTLS(), smtpTLS())))},
		report.DiscoveryInvalid:     {setup: autoconfigPage(probetest.XML("text/xml", "<clientConfig><emailProvider"))},
		report.DiscoveryTooLarge:    {setup: autoconfigPage(probetest.XML("text/xml", "<clientConfig>"+strings.Repeat("<x/>", 70000)+"</clientConfig>"))},
		report.DiscoveryTooManyRedir: {setup: autoconfigPage(func(rw http.ResponseWriter, r *http.Request) {
			http.Redirect(rw, r, "/mail/config-v1.1.xml", http.StatusFound)
		})},
		report.DiscoveryDomainMismatch: {setup: autoconfigPage(probetest.XML("text/xml", autoconfigXML("other.test", imapTLS(), smtpTLS())))},
		report.DiscoveryNone: {addr: "bob@empty.test", setup: func(t *testing.T, w *probetest.World) {
			w.Zone(t, "empty.test. 300 IN MX 10 mx.elsewhere.test.\n")
		}},
	}
}

// TestEveryCode makes the probe emit every failure code it knows, each
// from a world that fails in exactly that way.
func TestEveryCode(t *testing.T) {
	cases := codeCases()
	all := append(report.Codes(), report.TLSAlertPrefix+"certificate_required")
	for _, c := range all {
		if _, ok := cases[c]; !ok {
			if _, ok := elsewhere[c]; !ok {
				t.Errorf("code %s has no test case", c)
			}
		}
	}
	for c, tc := range cases {
		t.Run(string(c), func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			tc.setup(t, w)
			addr, pw := tc.addr, tc.pw
			if addr == "" {
				addr = address
			}
			if pw == "" {
				pw = password
			}
			rep := run(t, w, addr, pw, tc.opts)
			got := codes(rep)
			s, ok := got[c]
			if !ok {
				var have []string
				for k := range got {
					have = append(have, string(k))
				}
				t.Fatalf("code %s not emitted; got %v\n%s", c, have, dump(rep))
			}
			if s.Hint == "" && s.Status != report.StatusSkipped {
				t.Errorf("step %s has code %s but no hint", s.ID, c)
			}
		})
	}
}

// TestPasswordNeverShown runs failing and passing logins and searches every
// output - slog, JSON, text, error strings - for the password, its base64
// forms and the username/password pair.
func TestPasswordNeverShown(t *testing.T) {
	w := newWorld(t)
	w.Mail(t, "imap.example.test", 993, goodMail(t, w, "imap", "imap.example.test", true))
	w.Mail(t, "imap.example.test", 143, goodMail(t, w, "imap", "imap.example.test", false))
	pop := goodMail(t, w, "pop3", "pop.example.test", true)
	pop.CapsTLS = []string{"USER"} // USER/PASS path
	w.Mail(t, "pop.example.test", 995, pop)
	smtp := goodMail(t, w, "smtp", "smtp.example.test", true)
	smtp.CapsTLS = []string{"AUTH LOGIN"} // LOGIN path
	w.Mail(t, "smtp.example.test", 465, smtp)
	publish(t, w, imapTLS(), imapSTARTTLS(), popTLS(), smtpTLS())
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	rep := run(t, w, address, password, func(o *probe.Options) { o.Logger = logger })
	var js, txt bytes.Buffer
	if err := report.JSON(&js, rep); err != nil {
		t.Fatal(err)
	}
	if err := report.Text(&txt, rep, true); err != nil {
		t.Fatal(err)
	}
	secrets := []string{password, b64("\x00" + address + "\x00" + password), b64(password)}
	for name, out := range map[string]string{"log": logs.String(), "json": js.String(), "text": txt.String()} {
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("%s output contains a secret form %q", name, s)
			}
		}
	}
	if !strings.Contains(logs.String(), "[redacted]") {
		t.Errorf("the log does not show the redacted password field:\n%s", logs.String())
	}
	// The logins really happened (so the test could fail).
	if pop.Logins() != 1 || smtp.Logins() != 1 {
		t.Errorf("logins: pop3 %d smtp %d, want 1 each\n%s", pop.Logins(), smtp.Logins(), txt.String())
	}
	if !strings.Contains(txt.String(), "[redacted]") {
		t.Error("the transcript shows no redacted credential line")
	}
	if rep.Summary.Status == report.OverallBroken {
		t.Errorf("status %s\n%s", rep.Summary.Status, txt.String())
	}
}

func b64(s string) string {
	return strings.TrimRight(encodeStd(s), "=")
}

// TestWrongPasswordStopsOtherLogins: after IMAP rejects the password, POP3
// and SMTP are not tried with it.
func TestWrongPasswordStopsOtherLogins(t *testing.T) {
	w := newWorld(t)
	imap := goodMail(t, w, "imap", "imap.example.test", true)
	w.Mail(t, "imap.example.test", 993, imap)
	smtp := goodMail(t, w, "smtp", "smtp.example.test", true)
	w.Mail(t, "smtp.example.test", 465, smtp)
	publish(t, w, imapTLS(), smtpTLS())
	rep := run(t, w, address, "wrong", nil)
	if imap.Logins() != 1 || smtp.Logins() != 0 {
		t.Fatalf("logins imap %d smtp %d, want 1 and 0\n%s", imap.Logins(), smtp.Logins(), dump(rep))
	}
	if rep.Summary.Status != report.OverallBroken {
		t.Errorf("status %s, want broken", rep.Summary.Status)
	}
	s := rep.Steps[indexOf(rep, rep.Summary.FirstFailure)]
	if s.Error == nil || s.Error.Class != report.AuthFailed || s.Error.ServerReply == nil || s.Error.ServerReply.RespCode != "AUTHENTICATIONFAILED" {
		t.Errorf("first failure %+v", s)
	}
}

func indexOf(rep *report.Report, id string) int {
	for i, s := range rep.Steps {
		if s.ID == id {
			return i
		}
	}
	return 0
}

// TestNoPasswordOverBadCertificate: a password is never sent over TLS that
// did not verify.
func TestNoPasswordOverBadCertificate(t *testing.T) {
	w := newWorld(t)
	m := goodMail(t, w, "imap", "imap.example.test", true)
	c := probetest.SelfSigned(t, "imap.example.test")
	m.Cert = &c
	w.Mail(t, "imap.example.test", 993, m)
	w.Mail(t, "smtp.example.test", 465, goodMail(t, w, "smtp", "smtp.example.test", true))
	publish(t, w, imapTLS(), smtpTLS())
	rep := run(t, w, address, password, nil)
	if m.Logins() != 0 {
		t.Fatalf("the password was sent to a self-signed server")
	}
	var js bytes.Buffer
	_ = report.JSON(&js, rep)
	var back map[string]any
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || back["schema"] != report.Schema {
		t.Fatalf("JSON: %v %v", err, back["schema"])
	}
}

// TestRedirectToMetadataRefused: an autoconfig URL redirecting to a host
// that resolves to 169.254.169.254 is refused by the guard before any
// packet leaves.
func TestRedirectToMetadataRefused(t *testing.T) {
	w := newWorld(t)
	w.Zone(t, "metadata.example.test. 300 IN A 169.254.169.254\n")
	w.Page(t, "https://autoconfig."+domain+"/mail/config-v1.1.xml", func(rw http.ResponseWriter, r *http.Request) {
		http.Redirect(rw, r, "http://metadata.example.test/latest/meta-data/", http.StatusFound)
	})
	rep := run(t, w, address, "", nil)
	var found bool
	for _, d := range rep.Discovery {
		if d.Mechanism == "autoconfig.provider_https" {
			found = d.Error != nil && d.Error.Class == report.PolicyBlockedAddress && len(d.Redirects) == 1
			if !found {
				t.Errorf("%+v %+v", d, d.Error)
			}
		}
	}
	if !found {
		t.Fatal("no provider_https attempt")
	}
}

func TestBadAddress(t *testing.T) {
	for _, a := range []string{"", "no-at", "a@b", "<a@b.test>", strings.Repeat("x", 2000) + "@b.test"} {
		if _, err := probe.Run(context.Background(), probe.Request{Address: a}, probe.Options{Resolver: "127.0.0.1:1"}); err == nil {
			t.Errorf("%q accepted", a)
		}
	}
}
