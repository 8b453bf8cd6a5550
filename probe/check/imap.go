package check

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"mailconf/probe/report"
)

type imap struct {
	tag int
}

func (p *imap) next() string {
	p.tag++
	return "a" + strconv.Itoa(p.tag)
}

// imapResp is a tagged completion plus the untagged lines before it.
type imapResp struct {
	untagged []string
	status   string // OK, NO, BAD
	code     string // [RESP-CODE] without brackets, first word
	text     string
	line     string
}

func (p *imap) reply(resp imapResp) *report.Reply {
	return &report.Reply{Code: resp.status, RespCode: resp.code, Text: resp.text}
}

// read reads until the tagged completion of tag. Continuation requests end
// the read too (status "+").
func (p *imap) read(r *run, tag string) (imapResp, error) {
	var resp imapResp
	for {
		line, err := r.w.readLine(0)
		if err != nil {
			return resp, err
		}
		if strings.HasPrefix(line, "+") {
			resp.status, resp.line, resp.text = "+", line, strings.TrimSpace(line[1:])
			return resp, nil
		}
		if strings.HasPrefix(line, "* ") {
			resp.untagged = append(resp.untagged, line[2:])
			continue
		}
		if rest, ok := strings.CutPrefix(line, tag+" "); ok {
			resp.line = line
			st, text, _ := strings.Cut(rest, " ")
			resp.status = strings.ToUpper(st)
			resp.code, resp.text = respCode(text)
			return resp, nil
		}
		// An unknown tag: keep reading; the transcript has it.
	}
}

// respCode splits "[CODE args] text".
func respCode(text string) (code, rest string) {
	if !strings.HasPrefix(text, "[") {
		return "", text
	}
	end := strings.IndexByte(text, ']')
	if end < 0 {
		return "", text
	}
	inner := text[1:end]
	word, _, _ := strings.Cut(inner, " ")
	return strings.ToUpper(word), strings.TrimSpace(text[end+1:])
}

func (p *imap) greeting(r *run) outcome {
	line, o, ok := r.greetingLine()
	if !ok {
		return o
	}
	upper := strings.ToUpper(line)
	switch {
	case strings.HasPrefix(upper, "* OK"):
		_, text := respCode(strings.TrimSpace(line[4:]))
		return pass(text)
	case strings.HasPrefix(upper, "* PREAUTH"):
		return fail(report.GreetingPreauth, "the server pre-authenticated the connection; STARTTLS and login are impossible", &report.Reply{Code: "PREAUTH", Text: line})
	case strings.HasPrefix(upper, "* BYE"):
		return fail(report.GreetingRejected, "the server refused the connection", &report.Reply{Code: "BYE", Text: strings.TrimSpace(line[5:])})
	}
	return fail(report.ProtoUnexpectedReply, "not an IMAP greeting", &report.Reply{Text: printable(line)})
}

func (p *imap) capabilities(r *run) ([]string, outcome) {
	tag := p.next()
	if err := r.w.write(tag+" CAPABILITY", ""); err != nil {
		return nil, netFail(err, phaseDialogue)
	}
	resp, err := p.read(r, tag)
	if err != nil {
		return nil, netFail(err, phaseDialogue)
	}
	if resp.status != "OK" {
		return nil, fail(report.ProtoUnexpectedReply, "CAPABILITY failed", p.reply(resp))
	}
	var caps []string
	for _, u := range resp.untagged {
		if f := strings.Fields(u); len(f) > 0 && strings.EqualFold(f[0], "CAPABILITY") {
			caps = append(caps, f[1:]...)
		}
	}
	if caps == nil {
		return nil, fail(report.ProtoUnexpectedReply, "no CAPABILITY response", p.reply(resp))
	}
	return caps, pass(strings.Join(caps, " "))
}

func hasCap(caps []string, want string) bool {
	for _, c := range caps {
		if strings.EqualFold(c, want) {
			return true
		}
	}
	return false
}

func (p *imap) startTLSOffered(caps []string) bool { return hasCap(caps, "STARTTLS") }

func (p *imap) startTLS(r *run, inject bool) outcome {
	tag := p.next()
	if err := r.sendStartTLS(tag+" STARTTLS", "x1 NOOP", inject); err != nil {
		return netFail(err, phaseDialogue)
	}
	resp, err := p.read(r, tag)
	if err != nil {
		return netFail(err, phaseDialogue)
	}
	if resp.status != "OK" {
		return fail(report.StartTLSRejected, "STARTTLS was refused", p.reply(resp))
	}
	return pass(resp.text)
}

func (p *imap) mechanisms(caps []string) []string {
	var out []string
	for _, c := range caps {
		if m, ok := strings.CutPrefix(strings.ToUpper(c), "AUTH="); ok {
			out = append(out, m)
		}
	}
	if !hasCap(caps, "LOGINDISABLED") {
		out = append(out, "LOGIN-COMMAND")
	}
	return usable(out)
}

// usable keeps the mechanisms the probe can use with a password.
func usable(mechs []string) []string {
	var out []string
	for _, m := range mechs {
		switch m {
		case "PLAIN", "LOGIN", "LOGIN-COMMAND", "USER":
			out = append(out, m)
		}
	}
	return out
}

func (p *imap) authBeforeTLS(caps []string) bool {
	return hasCap(caps, "AUTH=PLAIN") || hasCap(caps, "AUTH=LOGIN")
}

func (p *imap) loginDisabled(caps []string) bool { return hasCap(caps, "LOGINDISABLED") }

// imapCodes maps RFC 5530 response codes to failure codes.
var imapCodes = map[string]report.Code{
	"AUTHENTICATIONFAILED": report.AuthFailed,
	"UNAVAILABLE":          report.AuthTemporary,
	"PRIVACYREQUIRED":      report.AuthEncryptionRequired,
	"AUTHORIZATIONFAILED":  report.AuthAuthorizationFailed,
	"EXPIRED":              report.AuthExpired,
	"CONTACTADMIN":         report.AuthContactAdmin,
	"INUSE":                report.AuthInUse,
}

func (p *imap) login(r *run, user string, pw report.Secret, mechs []string) (string, outcome) {
	tag := p.next()
	mech := "PLAIN"
	if hasCap(mechs, "PLAIN") {
		if err := r.w.write(tag+" AUTHENTICATE PLAIN", ""); err != nil {
			return mech, netFail(err, phaseDialogue)
		}
		resp, err := p.read(r, tag)
		if err != nil {
			return mech, netFail(err, phaseDialogue)
		}
		if resp.status != "+" {
			return mech, p.authOutcome(resp)
		}
		ir := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pw.Reveal()))
		if err := r.w.write(ir, "[redacted]"); err != nil {
			return mech, netFail(err, phaseDialogue)
		}
	} else {
		mech = "LOGIN"
		if strings.ContainsAny(user+pw.Reveal(), "\r\n\x00") {
			return mech, outcome{status: report.StatusError, code: report.AuthSkipped, msg: "the password contains characters the IMAP LOGIN command cannot carry"}
		}
		if err := r.w.write(tag+" LOGIN "+quote(user)+" "+quote(pw.Reveal()), tag+" LOGIN [redacted]"); err != nil {
			return mech, netFail(err, phaseDialogue)
		}
	}
	resp, err := authRead(r, func() (imapResp, error) { return p.read(r, tag) })
	if err != nil {
		return mech, netFail(err, phaseDialogue)
	}
	return mech, p.authOutcome(resp)
}

func (p *imap) authOutcome(resp imapResp) outcome {
	reply := p.reply(resp)
	switch resp.status {
	case "OK":
		return pass(resp.text)
	case "+":
		return fail(report.ProtoUnexpectedReply, "unexpected continuation request", reply)
	}
	if c := appPassword(resp.text); c != "" {
		return fail(c, resp.text, reply)
	}
	if c, ok := imapCodes[resp.code]; ok {
		return fail(c, resp.text, reply)
	}
	return fail(report.AuthFailed, resp.text, reply)
}

func (p *imap) session(r *run) outcome {
	tag := p.next()
	if err := r.w.write(tag+` LIST "" ""`, ""); err != nil {
		return netFail(err, phaseDialogue)
	}
	resp, err := p.read(r, tag)
	if err != nil {
		return netFail(err, phaseDialogue)
	}
	if resp.status != "OK" {
		return fail(report.ProtoUnexpectedReply, "LIST failed", p.reply(resp))
	}
	tag = p.next()
	if err := r.w.write(tag+" EXAMINE INBOX", ""); err != nil {
		return netFail(err, phaseDialogue)
	}
	resp, err = p.read(r, tag)
	if err != nil {
		return netFail(err, phaseDialogue)
	}
	if resp.status != "OK" {
		return fail(report.SessionMailboxUnavailable, "EXAMINE INBOX failed", p.reply(resp))
	}
	s := &report.Session{InboxExists: true}
	for _, u := range resp.untagged {
		f := strings.Fields(u)
		if len(f) == 2 && strings.EqualFold(f[1], "EXISTS") {
			if n, err := strconv.Atoi(f[0]); err == nil {
				s.Messages = &n
			}
		}
	}
	r.out.Session = s
	msg := "INBOX opened read-only"
	if s.Messages != nil {
		msg = fmt.Sprintf("INBOX opened read-only, %d messages", *s.Messages)
	}
	return pass(msg)
}

func (p *imap) quit(r *run) {
	tag := p.next()
	if r.w.write(tag+" LOGOUT", "") == nil {
		_, _ = p.read(r, tag)
	}
}

func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}
