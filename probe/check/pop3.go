package check

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"mailconf/probe/report"
)

type pop3 struct {
	noCAPA bool
}

// status reads one +OK/-ERR line.
func (p *pop3) status(r *run) (ok bool, reply *report.Reply, err error) {
	line, err := r.w.readLine(0)
	if err != nil {
		return false, nil, err
	}
	return parsePOP(line)
}

func parsePOP(line string) (bool, *report.Reply, error) {
	switch {
	case strings.HasPrefix(line, "+OK"):
		return true, &report.Reply{Code: "+OK", Text: strings.TrimSpace(line[3:])}, nil
	case strings.HasPrefix(line, "-ERR"):
		code, text := respCode(strings.TrimSpace(line[4:]))
		return false, &report.Reply{Code: "-ERR", RespCode: code, Text: text}, nil
	case strings.HasPrefix(line, "+"):
		return true, &report.Reply{Code: "+", Text: strings.TrimSpace(line[1:])}, nil
	}
	return false, &report.Reply{Text: printable(line)}, errUnexpected
}

type unexpectedError struct{}

func (unexpectedError) Error() string { return "reply is neither +OK nor -ERR" }

var errUnexpected error = unexpectedError{}

func (p *pop3) greeting(r *run) outcome {
	line, o, ok := r.greetingLine()
	if !ok {
		return o
	}
	ok, reply, err := parsePOP(line)
	switch {
	case err != nil:
		return fail(report.ProtoUnexpectedReply, "not a POP3 greeting", reply)
	case !ok:
		return fail(report.GreetingRejected, "the server refused the connection", reply)
	}
	return pass(reply.Text)
}

func (p *pop3) capabilities(r *run) ([]string, outcome) {
	if err := r.w.write("CAPA", ""); err != nil {
		return nil, netFail(err, phaseDialogue)
	}
	ok, reply, err := p.status(r)
	if err != nil {
		if err == errUnexpected {
			return nil, fail(report.ProtoUnexpectedReply, "unexpected answer to CAPA", reply)
		}
		return nil, netFail(err, phaseDialogue)
	}
	if !ok {
		p.noCAPA = true
		return nil, outcome{status: report.StatusInfo, msg: "the server does not support CAPA (RFC 2449)"}
	}
	var caps []string
	for {
		line, err := r.w.readLine(0)
		if err != nil {
			return nil, netFail(err, phaseDialogue)
		}
		if line == "." {
			break
		}
		caps = append(caps, strings.TrimPrefix(line, "."))
	}
	return caps, pass(strings.Join(caps, ", "))
}

func popCap(caps []string, word string) (string, bool) {
	for _, c := range caps {
		f := strings.Fields(c)
		if len(f) > 0 && strings.EqualFold(f[0], word) {
			return strings.Join(f[1:], " "), true
		}
	}
	return "", false
}

func (p *pop3) startTLSOffered(caps []string) bool {
	_, ok := popCap(caps, "STLS")
	return ok
}

func (p *pop3) startTLS(r *run, inject bool) outcome {
	if err := r.sendStartTLS("STLS", "NOOP", inject); err != nil {
		return netFail(err, phaseDialogue)
	}
	ok, reply, err := p.status(r)
	if err != nil {
		if err == errUnexpected {
			return fail(report.ProtoUnexpectedReply, "unexpected answer to STLS", reply)
		}
		return netFail(err, phaseDialogue)
	}
	if !ok {
		return fail(report.StartTLSRejected, "STLS was refused", reply)
	}
	return pass(reply.Text)
}

func (p *pop3) mechanisms(caps []string) []string {
	if p.noCAPA {
		// Without CAPA, USER/PASS is the one method RFC 1939 guarantees.
		return []string{"USER"}
	}
	var out []string
	if sasl, ok := popCap(caps, "SASL"); ok {
		out = append(out, strings.Fields(strings.ToUpper(sasl))...)
	}
	if _, ok := popCap(caps, "USER"); ok {
		out = append(out, "USER")
	}
	return usable(out)
}

func (p *pop3) authBeforeTLS(caps []string) bool {
	if _, ok := popCap(caps, "USER"); ok {
		return true
	}
	sasl, _ := popCap(caps, "SASL")
	return hasCap(strings.Fields(sasl), "PLAIN") || hasCap(strings.Fields(sasl), "LOGIN")
}

func (p *pop3) loginDisabled([]string) bool { return false }

// popCodes maps RFC 2449/3206 response codes to failure codes.
var popCodes = map[string]report.Code{
	"AUTH":        report.AuthFailed,
	"SYS/TEMP":    report.AuthTemporary,
	"IN-USE":      report.AuthInUse,
	"LOGIN-DELAY": report.AuthLoginDelay,
}

func (p *pop3) login(r *run, user string, pw report.Secret, mechs []string) (string, outcome) {
	if hasCap(mechs, "PLAIN") {
		if err := r.w.write("AUTH PLAIN", ""); err != nil {
			return "PLAIN", netFail(err, phaseDialogue)
		}
		ok, reply, err := p.status(r)
		if o, done := p.authStep(ok, reply, err, true); done {
			return "PLAIN", o
		}
		ir := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pw.Reveal()))
		if err := r.w.write(ir, "[redacted]"); err != nil {
			return "PLAIN", netFail(err, phaseDialogue)
		}
		return "PLAIN", p.authFinal(r)
	}
	if strings.ContainsAny(user+pw.Reveal(), "\r\n") {
		return "USER", outcome{status: report.StatusError, code: report.AuthSkipped, msg: "the password contains line breaks"}
	}
	if err := r.w.write("USER "+user, "USER [redacted]"); err != nil {
		return "USER", netFail(err, phaseDialogue)
	}
	ok, reply, err := p.status(r)
	if o, done := p.authStep(ok, reply, err, true); done {
		return "USER", o
	}
	if err := r.w.write("PASS "+pw.Reveal(), "PASS [redacted]"); err != nil {
		return "USER", netFail(err, phaseDialogue)
	}
	return "USER", p.authFinal(r)
}

// authFinal reads the login's last answer with the login budget.
func (p *pop3) authFinal(r *run) outcome {
	type st struct {
		ok    bool
		reply *report.Reply
	}
	res, err := authRead(r, func() (st, error) { ok, reply, err := p.status(r); return st{ok, reply}, err })
	o, _ := p.authStep(res.ok, res.reply, err, false)
	return o
}

// authStep turns one reply of the login dialogue into an outcome; done is
// false for an intermediate +OK/+ that lets the dialogue continue.
func (p *pop3) authStep(ok bool, reply *report.Reply, err error, intermediate bool) (outcome, bool) {
	switch {
	case err == errUnexpected:
		return fail(report.ProtoUnexpectedReply, "unexpected reply during login", reply), true
	case err != nil:
		return netFail(err, phaseDialogue), true
	case ok && intermediate:
		return outcome{}, false
	case ok:
		return pass(reply.Text), true
	}
	if c := appPassword(reply.Text); c != "" {
		return fail(c, reply.Text, reply), true
	}
	if c, found := popCodes[reply.RespCode]; found {
		return fail(c, reply.Text, reply), true
	}
	return fail(report.AuthFailed, reply.Text, reply), true
}

func (p *pop3) session(r *run) outcome {
	if err := r.w.write("STAT", ""); err != nil {
		return netFail(err, phaseDialogue)
	}
	ok, reply, err := p.status(r)
	switch {
	case err == errUnexpected:
		return fail(report.ProtoUnexpectedReply, "unexpected answer to STAT", reply)
	case err != nil:
		return netFail(err, phaseDialogue)
	case !ok:
		return fail(report.SessionMailboxUnavailable, "STAT failed", reply)
	}
	s := &report.Session{InboxExists: true}
	if f := strings.Fields(reply.Text); len(f) >= 1 {
		if n, err := strconv.Atoi(f[0]); err == nil {
			s.Messages = &n
		}
	}
	r.out.Session = s
	if s.Messages != nil {
		return pass(fmt.Sprintf("maildrop has %d messages", *s.Messages))
	}
	return pass("maildrop opened")
}

func (p *pop3) quit(r *run) {
	if r.w.write("QUIT", "") == nil {
		_, _, _ = p.status(r)
	}
}
