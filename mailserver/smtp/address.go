package smtp

import (
	"errors"
	"strings"
	"unicode/utf8"

	"mailconf/config"
)

// Reasons an envelope address is refused before any lookup. go-smtp has
// already removed angle brackets, source routes (@a,@b:) and the quotes of
// a quoted local part, so "user@remote"@ours arrives as user@remote@ours.
var (
	errLocalPart  = errors.New("local part is not a plain dot-atom")
	errDomain     = errors.New("domain is not a valid host name")
	errIPLiteral  = errors.New("address literal as domain")
	errTrailedDot = errors.New("domain ends with a dot")
)

// address is an envelope address split at its last '@', with the domain in
// lower-case A-label form.
type address struct {
	local, domain string
}

func (a address) String() string { return a.local + "@" + a.domain }

// parseAddress splits and canonicalizes an envelope address. The local part
// is checked separately (checkLocalPart) so that callers can tell "served
// domain, impossible mailbox" (550 5.1.1) from "not our domain" (554 5.7.1).
func parseAddress(s string) (address, error) {
	i := strings.LastIndexByte(s, '@')
	if i <= 0 || i == len(s)-1 {
		return address{}, errDomain
	}
	local, domain := s[:i], s[i+1:]
	if strings.HasPrefix(domain, "[") {
		return address{local: local}, errIPLiteral
	}
	// config.HostName would quietly drop the dot; for relay control a
	// trailing dot must not turn a foreign spelling into ours.
	if strings.HasSuffix(domain, ".") {
		return address{local: local}, errTrailedDot
	}
	d, err := config.HostName(domain)
	if err != nil {
		return address{local: local}, errDomain
	}
	return address{local: local, domain: d}, nil
}

// checkLocalPart accepts RFC 5322 dot-atoms only, minus '%' and '!': the
// percent hack and bang paths are routing syntax older MTAs act on, and no
// mailconf account can contain them. A quoted local part has lost its quotes
// by now and so fails here too when it holds anything special (@, space).
// UTF-8 is allowed when the client declared SMTPUTF8 (RFC 6531).
func checkLocalPart(local string, utf8OK bool) error {
	if local == "" || len(local) > 64 || local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, "..") {
		return errLocalPart
	}
	if !utf8.ValidString(local) {
		return errLocalPart
	}
	for _, r := range local {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.':
		case strings.ContainsRune("#$&'*+-/=?^_`{|}~", r):
		case r >= 0x80 && utf8OK:
		default:
			return errLocalPart
		}
	}
	return nil
}

// isASCII reports whether s needs no SMTPUTF8.
func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// sameMailbox compares two addresses the way the store does: mailconf keeps
// addresses lower-cased, so case never distinguishes two accounts.
func sameMailbox(a, b address) bool {
	return a.domain == b.domain && strings.EqualFold(a.local, b.local)
}
