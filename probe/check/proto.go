package check

import (
	"strings"

	"mailconf/probe/report"
)

// greetingLine reads the first greeting line, the step every protocol
// starts with; ok is false when o ends the greeting. A TLS record in place
// of text means the port speaks implicit TLS: it never ends in a newline,
// so a failed read's partial line is looked at too.
func (r *run) greetingLine() (line string, o outcome, ok bool) {
	line, err := r.w.readLine(r.cfg.Timeouts.Greeting)
	if err != nil {
		if looksLikeTLS(line) {
			return "", tlsOnPlainPort(), false
		}
		return "", netFail(err, phaseGreeting), false
	}
	r.out.Greeting = printable(line)
	if looksLikeTLS(line) {
		return "", tlsOnPlainPort(), false
	}
	return line, outcome{}, true
}

func tlsOnPlainPort() outcome {
	return fail(report.TLSOnPlainPort, "the greeting is a TLS record: this port speaks implicit TLS", nil)
}

// sendStartTLS sends the STARTTLS command cmd. For the injection test
// (inject) it sends noop in the same write, which a vulnerable server
// answers inside TLS.
func (r *run) sendStartTLS(cmd, noop string, inject bool) error {
	if inject {
		return r.w.writeRaw(cmd+"\r\n"+noop+"\r\n", cmd, noop+" (same segment, before the handshake)")
	}
	return r.w.write(cmd, "")
}

// authRead runs one read with the login budget instead of the command one.
func authRead[T any](r *run, fn func() (T, error)) (T, error) {
	old := r.w.timeout
	r.w.timeout = r.cfg.Timeouts.Auth
	defer func() { r.w.timeout = old }()
	return fn()
}

// appPassword recognises provider texts that mean "your normal password is
// not accepted here" (Google, Microsoft, Yahoo, Apple wording).
func appPassword(text string) report.Code {
	t := strings.ToLower(text)
	for _, s := range []string{"application-specific password", "app password", "app-specific password", "application password", "basic authentication is disabled", "basicauthblocked", "oauth"} {
		if strings.Contains(t, s) {
			return report.AuthAppPasswordOrOAuth
		}
	}
	return ""
}
