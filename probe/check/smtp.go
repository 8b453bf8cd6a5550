package check

import (
	"encoding/base64"
	"strconv"
	"strings"

	"mailconf/probe/report"
)

type smtp struct{}

// smtpReply is one (possibly multi-line) SMTP reply.
type smtpReply struct {
	code  int
	lines []string // text after "NNN-" / "NNN "
}

func (s smtpReply) text() string { return strings.Join(s.lines, " ") }

func (s smtpReply) report() *report.Reply {
	r := &report.Reply{Code: strconv.Itoa(s.code), Text: s.text()}
	if len(s.lines) > 0 {
		if f := strings.Fields(s.lines[0]); len(f) > 0 && isEnhanced(f[0]) {
			r.Enhanced = f[0]
			r.Text = strings.TrimSpace(strings.TrimPrefix(r.Text, f[0]))
		}
	}
	return r
}

func isEnhanced(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return false
	}
	for _, p := range parts {
		if _, err := strconv.Atoi(p); err != nil {
			return false
		}
	}
	return true
}

func (p *smtp) read(r *run) (smtpReply, error) {
	var rep smtpReply
	for {
		line, err := r.w.readLine(0)
		if err != nil {
			return rep, err
		}
		if len(line) < 3 {
			return rep, errUnexpected
		}
		code, err := strconv.Atoi(line[:3])
		if err != nil || (rep.code != 0 && code != rep.code) {
			return rep, errUnexpected
		}
		rep.code = code
		rest := line[3:]
		if rest == "" {
			return rep, nil
		}
		rep.lines = append(rep.lines, rest[1:])
		switch rest[0] {
		case ' ':
			return rep, nil
		case '-':
			continue
		}
		return rep, errUnexpected
	}
}

func (p *smtp) greeting(r *run) outcome {
	line, o, ok := r.greetingLine()
	if !ok {
		return o
	}
	// A multi-line greeting: read the rest.
	rep := smtpReply{}
	if len(line) >= 4 {
		rep.code, _ = strconv.Atoi(line[:3])
		rep.lines = []string{line[4:]}
		for line[3] == '-' {
			var err error
			if line, err = r.w.readLine(0); err != nil {
				return netFail(err, phaseGreeting)
			}
			if len(line) < 4 {
				break
			}
			rep.lines = append(rep.lines, line[4:])
		}
	}
	switch {
	case rep.code == 220:
		return pass(rep.text())
	case rep.code >= 400 && rep.code < 600:
		return fail(report.GreetingRejected, "the server refused the connection", rep.report())
	}
	return fail(report.ProtoUnexpectedReply, "not an SMTP greeting", &report.Reply{Text: printable(line)})
}

func (p *smtp) capabilities(r *run) ([]string, outcome) {
	name := r.cfg.EHLOName
	if name == "" {
		name = "probe.mailconf.invalid"
	}
	if err := r.w.write("EHLO "+name, ""); err != nil {
		return nil, netFail(err, phaseDialogue)
	}
	rep, err := p.read(r)
	if err == errUnexpected {
		return nil, fail(report.ProtoUnexpectedReply, "malformed EHLO reply", rep.report())
	}
	if err != nil {
		return nil, netFail(err, phaseDialogue)
	}
	if rep.code != 250 {
		return nil, fail(report.ProtoUnexpectedReply, "EHLO was refused", rep.report())
	}
	var caps []string
	if len(rep.lines) > 1 {
		caps = rep.lines[1:]
	}
	if caps == nil {
		caps = []string{}
	}
	return caps, pass(strings.Join(caps, ", "))
}

func (p *smtp) startTLSOffered(caps []string) bool {
	_, ok := popCap(caps, "STARTTLS")
	return ok
}

func (p *smtp) startTLS(r *run, inject bool) outcome {
	if err := r.sendStartTLS("STARTTLS", "NOOP", inject); err != nil {
		return netFail(err, phaseDialogue)
	}
	rep, err := p.read(r)
	if err == errUnexpected {
		return fail(report.ProtoUnexpectedReply, "malformed STARTTLS reply", rep.report())
	}
	if err != nil {
		return netFail(err, phaseDialogue)
	}
	if rep.code != 220 {
		return fail(report.StartTLSRejected, "STARTTLS was refused", rep.report())
	}
	return pass(rep.text())
}

func (p *smtp) mechanisms(caps []string) []string {
	auth, ok := popCap(caps, "AUTH")
	if !ok {
		return nil
	}
	return usable(strings.Fields(strings.ToUpper(auth)))
}

func (p *smtp) authBeforeTLS(caps []string) bool { return len(p.mechanisms(caps)) > 0 }

func (p *smtp) loginDisabled([]string) bool { return false }

func smtpAuthCode(rep smtpReply) report.Code {
	if c := appPassword(rep.text()); c != "" {
		return c
	}
	switch rep.code {
	case 535:
		return report.AuthFailed
	case 454:
		return report.AuthTemporary
	case 534:
		return report.AuthMechanismTooWeak
	case 538:
		return report.AuthEncryptionRequired
	}
	if rep.code >= 400 && rep.code < 500 {
		return report.AuthTemporary
	}
	return report.AuthFailed
}

func (p *smtp) login(r *run, user string, pw report.Secret, mechs []string) (string, outcome) {
	b64 := base64.StdEncoding.EncodeToString
	final := func(mech string) (string, outcome) {
		rep, err := authRead(r, func() (smtpReply, error) { return p.read(r) })
		switch {
		case err == errUnexpected:
			return mech, fail(report.ProtoUnexpectedReply, "malformed AUTH reply", rep.report())
		case err != nil:
			return mech, netFail(err, phaseDialogue)
		case rep.code == 235:
			return mech, pass(rep.text())
		case rep.code == 334:
			return mech, fail(report.ProtoUnexpectedReply, "unexpected challenge", rep.report())
		}
		return mech, fail(smtpAuthCode(rep), rep.text(), rep.report())
	}
	if hasCap(mechs, "PLAIN") {
		ir := b64([]byte("\x00" + user + "\x00" + pw.Reveal()))
		if err := r.w.write("AUTH PLAIN "+ir, "AUTH PLAIN [redacted]"); err != nil {
			return "PLAIN", netFail(err, phaseDialogue)
		}
		return final("PLAIN")
	}
	if err := r.w.write("AUTH LOGIN", ""); err != nil {
		return "LOGIN", netFail(err, phaseDialogue)
	}
	for _, v := range []string{user, pw.Reveal()} {
		rep, err := p.read(r)
		switch {
		case err == errUnexpected:
			return "LOGIN", fail(report.ProtoUnexpectedReply, "malformed AUTH reply", rep.report())
		case err != nil:
			return "LOGIN", netFail(err, phaseDialogue)
		case rep.code != 334:
			return "LOGIN", fail(smtpAuthCode(rep), rep.text(), rep.report())
		}
		if err := r.w.write(b64([]byte(v)), "[redacted]"); err != nil {
			return "LOGIN", netFail(err, phaseDialogue)
		}
	}
	return final("LOGIN")
}

func (p *smtp) session(r *run) outcome {
	addr := r.cfg.Address.String()
	if err := r.w.write("MAIL FROM:<"+addr+">", ""); err != nil {
		return netFail(err, phaseDialogue)
	}
	rep, err := p.read(r)
	switch {
	case err == errUnexpected:
		return fail(report.ProtoUnexpectedReply, "malformed MAIL reply", rep.report())
	case err != nil:
		return netFail(err, phaseDialogue)
	case rep.code != 250:
		return fail(report.SessionSenderRejected, "the server refuses "+addr+" as sender", rep.report())
	}
	r.out.Session = &report.Session{SenderAccepted: true}
	if err := r.w.write("RSET", ""); err == nil {
		_, _ = p.read(r)
	}
	return pass("sender " + addr + " accepted (transaction reset, nothing sent)")
}

func (p *smtp) quit(r *run) {
	if r.w.write("QUIT", "") == nil {
		_, _ = p.read(r)
	}
}
