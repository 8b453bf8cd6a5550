package check

import (
	"strings"

	"mailconf/probe/report"
)

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
