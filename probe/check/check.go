// Package check tests one mail endpoint on one address: connect, implicit
// TLS or STARTTLS, certificate, greeting, capabilities before and after
// TLS, one login, and a read-only session check, with raw transcripts in
// which credentials are redacted. It speaks IMAP, POP3 and SMTP submission
// itself (small dialogues, not client libraries) because the report needs
// the server's exact words.
package check

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"mailconf/autoconfig"
	"mailconf/probe/netguard"
	"mailconf/probe/report"
)

// Timeouts are the per-step budgets (reference/probe.md §4).
type Timeouts struct {
	TLS           time.Duration // handshake, 10 s
	Greeting      time.Duration // 15 s
	GreetingSlow  time.Duration // greeting reported as slow above, 5 s
	Command       time.Duration // each command, 10 s
	Auth          time.Duration // the login, 15 s
	Endpoint      time.Duration // the whole check, 30 s
	InjectionWait time.Duration // how long to wait for injected replies, 500 ms
	ExpiryWarn    time.Duration // certificate expiring soon, 30 days
}

// WithDefaults fills zero fields.
func (t Timeouts) WithDefaults() Timeouts {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&t.TLS, 10*time.Second)
	def(&t.Greeting, 15*time.Second)
	def(&t.GreetingSlow, 5*time.Second)
	def(&t.Command, 10*time.Second)
	def(&t.Auth, 15*time.Second)
	def(&t.Endpoint, 30*time.Second)
	def(&t.InjectionWait, 500*time.Millisecond)
	def(&t.ExpiryWarn, 30*24*time.Hour)
	return t
}

// Config is shared by every check of one probe run.
type Config struct {
	Dialer   *netguard.Dialer
	RootCAs  *x509.CertPool // nil: system roots
	Timeouts Timeouts
	// Now is the clock for certificate validity; nil means time.Now.
	Now      func() time.Time
	EHLOName string
	Address  autoconfig.Address
	// Password is sent only when AuthAllowed, over verified TLS, and only
	// by the participant the Gate chooses.
	Password    report.Secret
	AuthAllowed bool
	Gate        *Gate
	// Deep adds the STARTTLS command-injection test (one extra wait per
	// STARTTLS endpoint).
	Deep   bool
	Logger *slog.Logger
}

// Target is one endpoint on one address.
type Target struct {
	Endpoint autoconfig.Endpoint
	IP       netip.Addr
	Username string // login name for this endpoint
	// UsernameForm is "email" or "localpart", for the report.
	UsernameForm string
	// SRVOnly is set when the endpoint was found only through RFC 6186 SRV
	// records: RFC 7817 then requires the certificate to cover the email
	// domain.
	SRVOnly      bool
	Rank         int
	StepID       string // parent step id
	TranscriptID string
}

// Result is the outcome of one check.
type Result struct {
	IP         report.EndpointIP
	Transcript report.Transcript
}

// run is the state of one check.
type run struct {
	ctx     context.Context
	cfg     *Config
	t       Target
	rec     *report.Recorder
	w       *wire
	out     *report.EndpointIP
	proto   dialogue
	steps   []string
	worst   report.Status
	certOK  bool
	tlsDone bool
}

// dialogue is one protocol's half of the conversation.
type dialogue interface {
	greeting(r *run) outcome
	capabilities(r *run) ([]string, outcome)
	startTLSOffered(caps []string) bool
	startTLS(r *run, inject bool) outcome
	// mechanisms lists the login methods usable with a password.
	mechanisms(caps []string) []string
	// authBeforeTLS says plaintext login is offered before TLS.
	authBeforeTLS(caps []string) bool
	loginDisabled(caps []string) bool
	login(r *run, user string, pass report.Secret, mechs []string) (string, outcome)
	session(r *run) outcome
	quit(r *run)
}

// outcome is the end of one step.
type outcome struct {
	status report.Status
	code   report.Code
	msg    string
	reply  *report.Reply
}

func pass(msg string) outcome { return outcome{status: report.StatusPass, msg: msg} }

func fail(code report.Code, msg string, reply *report.Reply) outcome {
	return outcome{status: report.StatusFail, code: code, msg: msg, reply: reply}
}

func netFail(err error, ph phase) outcome {
	return fail(classifyNet(err, ph), err.Error(), nil)
}

// Check runs every stage against one endpoint address. It never returns an
// error: every problem is a step in rec.
func Check(ctx context.Context, cfg *Config, t Target, rec *report.Recorder) Result {
	tm := cfg.Timeouts.WithDefaults()
	ctx, cancel := context.WithTimeout(ctx, tm.Endpoint)
	defer cancel()
	cfg2 := *cfg
	cfg2.Timeouts = tm
	if cfg2.Now == nil {
		cfg2.Now = time.Now
	}
	r := &run{ctx: ctx, cfg: &cfg2, t: t, rec: rec, worst: report.StatusPass}
	family := "ipv4"
	if t.IP.Is6() && !t.IP.Is4In6() {
		family = "ipv6"
	}
	r.out = &report.EndpointIP{IP: t.IP.String(), Family: family, TimingsMS: map[string]int64{}, Transcript: t.TranscriptID}
	switch t.Endpoint.Protocol {
	case autoconfig.IMAP:
		r.proto = &imap{}
	case autoconfig.POP3:
		r.proto = &pop3{}
	default:
		r.proto = &smtp{}
	}
	start := time.Now()
	gateDone := false
	finishGate := func(attempted bool, rejected bool) {
		if !gateDone && cfg.Gate != nil {
			gateDone = true
			cfg.Gate.Done(t.Rank, attempted, r.where(), rejected)
		}
	}
	defer finishGate(false, false)
	r.sequence(finishGate)
	r.out.TimingsMS["total"] = time.Since(start).Milliseconds()
	r.out.Status = r.worst
	r.out.Steps = r.steps
	var tr report.Transcript
	if r.w != nil {
		_ = r.w.conn.Close()
		tr = r.w.transcript(t.TranscriptID, r.endpointName(), t.IP.String())
	} else {
		tr = report.Transcript{ID: t.TranscriptID, Endpoint: r.endpointName(), IP: t.IP.String(), Lines: []report.Line{}}
	}
	return Result{IP: *r.out, Transcript: tr}
}

func (r *run) endpointName() string {
	e := r.t.Endpoint
	return fmt.Sprintf("%s %s:%d (%s)", strings.ToUpper(string(e.Protocol)), e.Host, e.Port, e.Security)
}

func (r *run) where() string {
	e := r.t.Endpoint
	return fmt.Sprintf("%s on %s:%d", strings.ToUpper(string(e.Protocol)), e.Host, e.Port)
}

// step runs fn as one recorded step and returns its outcome.
func (r *run) step(name, title, timing string, fn func() outcome) outcome {
	id := r.t.StepID + "." + name
	h := r.rec.Start(id, r.t.StepID, title, &report.Target{Host: r.t.Endpoint.Host, IP: r.t.IP.String(), Port: r.t.Endpoint.Port})
	h.SetTranscript(r.t.TranscriptID)
	r.steps = append(r.steps, id)
	t0 := time.Now()
	o := fn()
	if timing != "" {
		r.out.TimingsMS[timing] += time.Since(t0).Milliseconds()
	}
	h.Finish(o.status, o.code, o.msg, o.reply)
	r.note(o.status)
	if o.status == report.StatusFail || o.status == report.StatusError {
		r.cfg.log().Debug("probe step failed", "step", id, "code", string(o.code))
	}
	return o
}

func (r *run) skip(name, title, reason string, code report.Code) {
	id := r.t.StepID + "." + name
	h := r.rec.Start(id, r.t.StepID, title, &report.Target{Host: r.t.Endpoint.Host, IP: r.t.IP.String(), Port: r.t.Endpoint.Port})
	r.steps = append(r.steps, id)
	h.Finish(report.StatusSkipped, code, reason, nil)
}

var rank = map[report.Status]int{report.StatusPass: 0, report.StatusInfo: 0, report.StatusSkipped: 0, report.StatusWarn: 1, report.StatusError: 2, report.StatusFail: 3}

func (r *run) note(s report.Status) {
	if rank[s] > rank[r.worst] {
		r.worst = s
	}
}

func (c *Config) log() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (r *run) sequence(finishGate func(attempted, rejected bool)) {
	e := r.t.Endpoint
	// connect
	o := r.step("connect", fmt.Sprintf("Connect to %s port %d", r.t.IP, e.Port), "connect", func() outcome {
		c, err := r.cfg.Dialer.DialIP(r.ctx, e.Host, r.t.IP, e.Port)
		if err != nil {
			return netFail(err, phaseConnect)
		}
		r.w = newWire(c, time.Now(), r.cfg.Timeouts.Command)
		return pass("connected")
	})
	if o.status != report.StatusPass {
		return
	}
	if e.Security == autoconfig.TLS {
		if !r.handshake("tls", "TLS handshake (implicit TLS)") {
			return
		}
	}
	o = r.step("greeting", "Read the server greeting", "greeting", func() outcome {
		t0 := time.Now()
		o := r.proto.greeting(r)
		if o.status == report.StatusPass {
			if d := time.Since(t0); d > r.cfg.Timeouts.GreetingSlow {
				return outcome{status: report.StatusWarn, code: report.GreetingSlow, msg: fmt.Sprintf("greeting took %s", d.Round(time.Millisecond))}
			}
		}
		return o
	})
	if o.status == report.StatusFail || o.status == report.StatusError {
		return
	}
	caps, o := r.capStep("capability", "Ask for capabilities")
	if o.status == report.StatusFail {
		return
	}
	if e.Security == autoconfig.StartTLS {
		r.out.Capabilities.BeforeTLS = caps
		r.out.AuthMechanisms.BeforeTLS = r.proto.mechanisms(caps)
		if r.proto.authBeforeTLS(caps) {
			r.step("auth_before_tls", "Check that no password login is offered before TLS", "", func() outcome {
				return outcome{status: report.StatusWarn, code: report.CapsAuthBeforeTLS, msg: "plaintext login mechanisms are offered before STARTTLS: " + strings.Join(r.out.AuthMechanisms.BeforeTLS, " ")}
			})
		}
		o = r.step("starttls", "Upgrade the connection with STARTTLS", "starttls", func() outcome {
			if !r.proto.startTLSOffered(caps) {
				return fail(report.CapsStartTLSMissing, "STARTTLS is not among the capabilities", nil)
			}
			o := r.proto.startTLS(r, false)
			if o.status != report.StatusPass {
				return o
			}
			if n := r.w.r.Buffered(); n > 0 {
				r.w.note("%d plaintext bytes buffered after the STARTTLS answer (discarded)", n)
				return fail(report.StartTLSBufferedPlaintext, fmt.Sprintf("%d bytes arrived after the STARTTLS answer, before the TLS handshake", n), nil)
			}
			return o
		})
		if o.status == report.StatusFail && o.code != report.StartTLSBufferedPlaintext {
			return
		}
		if !r.handshake("tls", "TLS handshake (after STARTTLS)") {
			return
		}
		if r.cfg.Deep {
			r.step("starttls_injection", "Check that commands sent before TLS are not executed inside it", "", r.injection)
		}
		caps, o = r.capStep("capability_tls", "Ask for capabilities again inside TLS")
		if o.status == report.StatusFail {
			return
		}
	}
	r.out.Capabilities.AfterTLS = caps
	mechs := r.proto.mechanisms(caps)
	r.out.AuthMechanisms.AfterTLS = mechs
	r.login(mechs, caps, finishGate)
	r.proto.quit(r)
}

func (r *run) capStep(name, title string) ([]string, outcome) {
	var caps []string
	o := r.step(name, title, "capability", func() outcome {
		c, o := r.proto.capabilities(r)
		caps = c
		return o
	})
	return caps, o
}

func (r *run) login(mechs, caps []string, finishGate func(attempted, rejected bool)) {
	title := "Log in"
	switch {
	case r.cfg.Password.IsZero():
		finishGate(false, false)
		r.out.Auth = &report.AuthResult{Result: report.StatusSkipped, SkipReason: "no password given"}
		r.skip("auth", title, "no password given", "")
		r.checkMechanisms(mechs, caps)
		return
	case !r.cfg.AuthAllowed:
		finishGate(false, false)
		r.out.Auth = &report.AuthResult{Result: report.StatusSkipped, SkipReason: "login tests are not allowed for this caller"}
		r.skip("auth", title, "login tests are not allowed for this caller", report.AuthSkipped)
		return
	case !r.certOK:
		finishGate(false, false)
		r.out.Auth = &report.AuthResult{Result: report.StatusSkipped, SkipReason: "certificate invalid"}
		r.skip("auth", title, "auth skipped: certificate invalid (a password is only sent over verified TLS)", report.AuthSkipped)
		return
	}
	if !r.checkMechanisms(mechs, caps) {
		finishGate(false, false)
		r.out.Auth = &report.AuthResult{Result: report.StatusSkipped, SkipReason: "no usable login mechanism"}
		return
	}
	if r.cfg.Gate != nil {
		ok, reason := r.cfg.Gate.Acquire(r.ctx, r.t.Rank)
		if !ok {
			finishGate(false, false)
			r.out.Auth = &report.AuthResult{Result: report.StatusSkipped, SkipReason: reason}
			r.skip("auth", title, reason, report.AuthSkipped)
			return
		}
	}
	var mech string
	o := r.step("auth", title, "auth", func() outcome {
		m, o := r.proto.login(r, r.t.Username, r.cfg.Password, mechs)
		mech = m
		return o
	})
	r.out.Auth = &report.AuthResult{Attempted: true, Mechanism: mech, UsernameForm: r.t.UsernameForm, Result: o.status, ServerReply: o.reply}
	finishGate(true, o.code == report.AuthFailed)
	if o.status != report.StatusPass {
		return
	}
	r.step("session", "Read-only session check", "session", func() outcome { return r.proto.session(r) })
}

// checkMechanisms records a step when no password mechanism is usable.
func (r *run) checkMechanisms(mechs, caps []string) bool {
	if r.proto.loginDisabled(caps) && len(mechs) == 0 {
		r.step("mechanisms", "Check the offered login mechanisms", "", func() outcome {
			return fail(report.CapsLoginDisabled, "LOGINDISABLED is advertised inside TLS and no AUTH=PLAIN", nil)
		})
		return false
	}
	if len(mechs) == 0 {
		r.step("mechanisms", "Check the offered login mechanisms", "", func() outcome {
			return fail(report.CapsAuthMissing, "no password login mechanism is offered", nil)
		})
		return false
	}
	return true
}

// handshake runs the TLS handshake and the certificate checks; false means
// the connection is unusable.
func (r *run) handshake(name, title string) bool {
	var cs tls.ConnectionState
	o := r.step(name, title, "tls", func() outcome {
		tc := tls.Client(r.w.conn, &tls.Config{
			ServerName:         r.t.Endpoint.Host,
			InsecureSkipVerify: true, // verified below, so that a bad certificate is a finding, not a dead end
			MinVersion:         tls.VersionTLS12,
		})
		hctx, cancel := context.WithTimeout(r.ctx, r.cfg.Timeouts.TLS)
		defer cancel()
		if err := tc.HandshakeContext(hctx); err != nil {
			code := classifyNet(err, phaseTLS)
			if code == report.TLSProtocolVersion && r.t.Endpoint.Security == autoconfig.TLS && r.legacyOnly() {
				return fail(report.TLSLegacyOnly, "the server only accepts TLS 1.1 or older: "+err.Error(), nil)
			}
			return fail(code, err.Error(), nil)
		}
		r.w.upgrade(tc)
		cs = tc.ConnectionState()
		r.out.TLS = &report.TLSInfo{
			Version: tls.VersionName(cs.Version), Cipher: tls.CipherSuiteName(cs.CipherSuite),
			Group: curveName(cs.CurveID), ALPN: cs.NegotiatedProtocol, OCSPStapled: len(cs.OCSPResponse) > 0,
		}
		r.w.note("TLS %s %s", r.out.TLS.Version, r.out.TLS.Cipher)
		return pass(r.out.TLS.Version + " " + r.out.TLS.Cipher)
	})
	if o.status != report.StatusPass {
		return false
	}
	r.tlsDone = true
	r.certStep(cs)
	return true
}

func curveName(c tls.CurveID) string {
	if c == 0 {
		return ""
	}
	return c.String()
}

// legacyOnly makes a second connection that accepts TLS 1.0 and 1.1.
func (r *run) legacyOnly() bool {
	e := r.t.Endpoint
	c, err := r.cfg.Dialer.DialIP(r.ctx, e.Host, r.t.IP, e.Port)
	if err != nil {
		return false
	}
	defer c.Close()
	tc := tls.Client(c, &tls.Config{ServerName: e.Host, InsecureSkipVerify: true, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}) // only to name the server's problem, never to log in
	hctx, cancel := context.WithTimeout(r.ctx, r.cfg.Timeouts.TLS)
	defer cancel()
	return tc.HandshakeContext(hctx) == nil
}

func (r *run) certStep(cs tls.ConnectionState) {
	r.step("certificate", "Verify the certificate", "", func() outcome {
		if len(cs.PeerCertificates) == 0 {
			return fail(report.CertUntrusted, "the server sent no certificate", nil)
		}
		now := r.cfg.Now()
		leaf := cs.PeerCertificates[0]
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		_, chainErr := leaf.Verify(x509.VerifyOptions{Roots: r.cfg.RootCAs, Intermediates: inter, CurrentTime: now})
		sum := sha256.Sum256(leaf.Raw)
		ci := &report.Certificate{
			Subject: leaf.Subject.String(), SANs: append([]string{}, leaf.DNSNames...), Issuer: leaf.Issuer.String(),
			NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter,
			DaysLeft: int(leaf.NotAfter.Sub(now).Hours() / 24), Key: keyName(leaf),
			SHA256: hex.EncodeToString(sum[:]), ChainLength: len(cs.PeerCertificates),
			Trusted:            chainErr == nil,
			ChainComplete:      chainErr == nil,
			MatchesHost:        leaf.VerifyHostname(r.t.Endpoint.Host) == nil,
			MatchesEmailDomain: leaf.VerifyHostname(r.cfg.Address.Domain) == nil,
		}
		for _, ip := range leaf.IPAddresses {
			ci.SANs = append(ci.SANs, ip.String())
		}
		if r.out.TLS != nil {
			r.out.TLS.Certificate = ci
		}
		switch {
		case chainErr != nil:
			code := classifyCert(chainErr, cs.PeerCertificates, now)
			ci.Error = chainErr.Error()
			return fail(code, chainErr.Error(), nil)
		case !ci.MatchesHost:
			return fail(report.CertNameMismatchHost, fmt.Sprintf("the certificate names %s, not %s", strings.Join(ci.SANs, ", "), r.t.Endpoint.Host), nil)
		case r.t.SRVOnly && !ci.MatchesEmailDomain:
			r.certOK = true
			return outcome{status: report.StatusWarn, code: report.CertNameMismatchEmailDomain, msg: fmt.Sprintf("found through SRV only, and the certificate does not cover %s (RFC 7817)", r.cfg.Address.Domain)}
		case leaf.NotAfter.Sub(now) <= r.cfg.Timeouts.ExpiryWarn:
			r.certOK = true
			return outcome{status: report.StatusWarn, code: report.CertExpiringSoon, msg: fmt.Sprintf("expires in %d days (%s)", ci.DaysLeft, leaf.NotAfter.UTC().Format(time.DateOnly))}
		}
		r.certOK = true
		return pass(fmt.Sprintf("valid for %s, %d days left", r.t.Endpoint.Host, ci.DaysLeft))
	})
}

func keyName(c *x509.Certificate) string {
	switch c.PublicKeyAlgorithm {
	case x509.ECDSA:
		return "ECDSA"
	case x509.RSA:
		return "RSA"
	case x509.Ed25519:
		return "Ed25519"
	}
	return c.PublicKeyAlgorithm.String()
}

// injection runs the STARTTLS command-injection test on a second
// connection: STARTTLS and one more command in one segment; a vulnerable
// server answers the second command inside TLS.
func (r *run) injection() outcome {
	e := r.t.Endpoint
	c, err := r.cfg.Dialer.DialIP(r.ctx, e.Host, r.t.IP, e.Port)
	if err != nil {
		return outcome{status: report.StatusError, msg: "second connection failed: " + err.Error()}
	}
	sub := &run{ctx: r.ctx, cfg: r.cfg, t: r.t, rec: r.rec, out: &report.EndpointIP{TimingsMS: map[string]int64{}}, proto: r.proto, worst: report.StatusPass}
	sub.w = newWire(c, r.w.start, r.cfg.Timeouts.Command)
	defer func() {
		_ = sub.w.conn.Close()
		for _, l := range sub.w.lines {
			r.w.record(l.Dir, "[injection test] "+l.Text)
		}
	}()
	if o := sub.proto.greeting(sub); o.status == report.StatusFail {
		return outcome{status: report.StatusError, msg: "second connection: " + o.msg}
	}
	if _, o := sub.proto.capabilities(sub); o.status == report.StatusFail {
		return outcome{status: report.StatusError, msg: "second connection: " + o.msg}
	}
	if o := sub.proto.startTLS(sub, true); o.status != report.StatusPass {
		return outcome{status: report.StatusError, msg: "second connection: " + o.msg}
	}
	tc := tls.Client(sub.w.conn, &tls.Config{ServerName: e.Host, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}) // no credentials are sent on this connection
	hctx, cancel := context.WithTimeout(r.ctx, r.cfg.Timeouts.TLS)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		return pass("the server dropped the connection instead of executing the injected command")
	}
	sub.w.upgrade(tc)
	line, err := sub.w.readLine(r.cfg.Timeouts.InjectionWait)
	if err == nil {
		return fail(report.StartTLSInjection, "the server answered, inside TLS, a command sent in plaintext before the handshake: "+line, nil)
	}
	return pass("no injected command was executed")
}
