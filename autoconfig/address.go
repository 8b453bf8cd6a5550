package autoconfig

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"mailconf/config"
)

// Address is a validated email address. Domain is lower-case A-label form.
type Address struct {
	Local  string
	Domain string
}

func (a Address) String() string { return a.Local + "@" + a.Domain }

// Limits from RFC 5321 §4.5.3.1.
const (
	maxLocalLen   = 64
	maxAddressLen = 254
)

// ErrAddress is wrapped by every address parsing error.
var ErrAddress = errors.New("invalid email address")

// checkLocal applies RFC 5322's dot-atom rule to a local part, with UTF-8
// allowed as RFC 6532 does (the same rule net/mail applies, without its
// cost on every configuration request).
func checkLocal(local string) error {
	if local == "" {
		return errors.New("empty")
	}
	prevDot := true // a leading dot is as wrong as two in a row
	for i := 0; i < len(local); i++ {
		c := local[i]
		switch {
		case c == '.':
			if prevDot {
				return errors.New("misplaced dot")
			}
			prevDot = true
			continue
		case c >= 0x80: // part of a UTF-8 sequence, validated earlier
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0:
		default:
			return fmt.Errorf("character %q is not allowed", c)
		}
		prevDot = false
	}
	if prevDot {
		return errors.New("ends with a dot")
	}
	return nil
}

// ParseAddress validates a bare address ("user@example.com") the way clients
// type it: net/mail syntax, no display name or angle brackets, RFC 5321
// length limits, and IDN domains converted to A-labels.
func ParseAddress(s string) (Address, error) {
	if len(s) > maxAddressLen*4 { // before any parsing work
		return Address{}, fmt.Errorf("%w: longer than %d bytes", ErrAddress, maxAddressLen)
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return Address{}, fmt.Errorf("%w: empty", ErrAddress)
	}
	if !utf8.ValidString(s) {
		return Address{}, fmt.Errorf("%w: not UTF-8", ErrAddress)
	}
	if strings.ContainsAny(s, "<>\"\\ \t\r\n") {
		// Quoted local parts and display names are valid RFC 5322 but no
		// mail client configures them, and they are the usual carriers of
		// injection attempts.
		return Address{}, fmt.Errorf("%w: quotes, brackets and spaces are not allowed", ErrAddress)
	}
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || at == len(s)-1 {
		return Address{}, fmt.Errorf("%w: want local-part@domain", ErrAddress)
	}
	local, domain := s[:at], s[at+1:]
	dom, err := config.HostName(domain)
	if err != nil {
		return Address{}, fmt.Errorf("%w: domain: %v", ErrAddress, err)
	}
	if last := dom[strings.LastIndexByte(dom, '.')+1:]; strings.Trim(last, "0123456789") == "" {
		// An all-numeric top label is an IP address literal, not a domain.
		return Address{}, fmt.Errorf("%w: domain %q is an address, not a name", ErrAddress, domain)
	}
	if !strings.Contains(dom, ".") {
		return Address{}, fmt.Errorf("%w: domain %q has a single label", ErrAddress, domain)
	}
	if len(local) > maxLocalLen {
		return Address{}, fmt.Errorf("%w: local part longer than %d bytes", ErrAddress, maxLocalLen)
	}
	if err := checkLocal(local); err != nil {
		return Address{}, fmt.Errorf("%w: local part: %v", ErrAddress, err)
	}
	a := Address{Local: local, Domain: dom}
	if len(a.String()) > maxAddressLen {
		return Address{}, fmt.Errorf("%w: longer than %d bytes", ErrAddress, maxAddressLen)
	}
	return a, nil
}
