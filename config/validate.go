package config

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

type validator struct {
	listen Listen
	file   string
	lines  *lineIndex
	err    error
}

// fail records the first error, placed at the given indexed path.
func (v *validator) fail(path, format string, args ...any) {
	if v.err != nil {
		return
	}
	v.err = &Error{File: v.file, Line: v.lines.at(path), Msg: fmt.Sprintf(format, args...)}
}

func (v *validator) config(c *Config) {
	if strings.TrimSpace(c.DataDir) == "" {
		v.fail("data_dir", `data_dir is empty; set it to a writable directory, e.g. data_dir = "/var/lib/mailconf"`)
	}
	if c.Hostname == "" {
		v.fail("hostname", `hostname is empty; set the server's own name, e.g. hostname = "mail.example.com"`)
	} else if h, err := HostName(c.Hostname); err != nil {
		v.fail("hostname", "hostname %q: %v", c.Hostname, err)
	} else {
		c.Hostname = h
	}

	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		v.fail("tls", "[tls] needs both cert and key (or neither, for a self-signed certificate)")
	}

	seen := map[string]string{}
	anyListener := false
	for _, s := range c.Listen.Services() {
		if s.Addr == "" {
			continue
		}
		anyListener = true
		path := "listen." + s.Name
		if err := checkHostPort(s.Addr); err != nil {
			v.fail(path, "listen %s = %q: %v", s.Name, s.Addr, err)
			continue
		}
		if other, dup := seen[s.Addr]; dup {
			v.fail(path, "listen %s = %q is already used by %s", s.Name, s.Addr, other)
		}
		seen[s.Addr] = s.Name
	}
	if !anyListener {
		v.fail("listen", "[listen] enables no service; set at least one address, e.g. http = \":80\"")
	}

	if len(c.Domains) == 0 {
		v.fail("", `no [[domain]]; add one with name = "example.com"`)
	}
	names := map[string]bool{}
	for i := range c.Domains {
		v.domain(fmt.Sprintf("domain#%d", i), &c.Domains[i])
		if names[c.Domains[i].Name] {
			v.fail(fmt.Sprintf("domain#%d.name", i), "domain %q is listed twice", c.Domains[i].Name)
		}
		names[c.Domains[i].Name] = true
	}

	if c.DNS.Resolver != "" {
		if err := checkHostPort(c.DNS.Resolver); err != nil {
			v.fail("dns.resolver", "[dns] resolver = %q: %v (want HOST:PORT, e.g. \"127.0.0.1:53\")", c.DNS.Resolver, err)
		}
	}

	if c.Relay.Smarthost != "" {
		if err := checkHostPort(c.Relay.Smarthost); err != nil {
			v.fail("relay.smarthost", "[relay] smarthost = %q: %v (want HOST:PORT)", c.Relay.Smarthost, err)
		}
	}
	if (c.Relay.Username == "") != (c.Relay.PasswordFile == "") {
		v.fail("relay", "[relay] needs both username and password_file, or neither")
	}
	if c.Relay.Username != "" && c.Relay.Smarthost == "" {
		v.fail("relay.username", "[relay] username is set but smarthost is not")
	}

	if c.Limits.MessageSize == 0 {
		c.Limits.MessageSize = DefaultMessageSize
	} else if c.Limits.MessageSize < 1024 || c.Limits.MessageSize > 1<<30 {
		v.fail("limits.message_size", "[limits] message_size = %d is out of range (1024 to 1073741824 bytes)", c.Limits.MessageSize)
	}

	if c.DKIM.Selector == "" {
		c.DKIM.Selector = "mailconf"
	} else if _, err := HostName(c.DKIM.Selector); err != nil || strings.Contains(c.DKIM.Selector, ".") {
		v.fail("dkim.selector", "[dkim] selector = %q is not a single DNS label", c.DKIM.Selector)
	}
}

func (v *validator) domain(path string, d *Domain) {
	if d.Name == "" {
		v.fail(path, `[[domain]] without name; add name = "example.com"`)
		return
	}
	name, err := HostName(d.Name)
	if err != nil {
		v.fail(path+".name", "domain name %q: %v", d.Name, err)
		return
	}
	if !strings.Contains(name, ".") {
		v.fail(path+".name", "domain name %q needs at least two labels, e.g. \"example.com\"", d.Name)
	}
	d.Name = name
	if d.DisplayName == "" {
		d.DisplayName = name
	}
	if len(d.DisplayName) > 200 {
		v.fail(path+".display_name", "display_name is longer than 200 bytes")
	}
	switch d.Username {
	case "":
		d.Username = UsernameAddress
	case UsernameAddress, UsernameLocalpart:
	default:
		v.fail(path+".username", "username = %q: want \"address\" or \"localpart\"", d.Username)
	}
	for _, dav := range []struct{ key, val string }{{"caldav", d.CalDAV}, {"carddav", d.CardDAV}} {
		if dav.val == "" {
			continue
		}
		u, err := url.Parse(dav.val)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			v.fail(path+"."+dav.key, "%s = %q: want an https URL such as \"https://dav.example.com/%s/\"", dav.key, dav.val, dav.key)
			continue
		}
		if _, err := HostName(u.Hostname()); err != nil {
			v.fail(path+"."+dav.key, "%s = %q: host: %v", dav.key, dav.val, err)
		}
	}
	for j := range d.Servers {
		v.server(fmt.Sprintf("%s.server#%d", path, j), &d.Servers[j])
	}
	v.publishable(path, d)
}

// publishable checks that a domain gives clients something to configure:
// an incoming (IMAP or POP3) and an outgoing (SMTP) server, either its own
// [[domain.server]] entries or the built-in listeners.
func (v *validator) publishable(path string, d *Domain) {
	var in, out bool
	if len(d.Servers) > 0 {
		for _, s := range d.Servers {
			in = in || s.Protocol == "imap" || s.Protocol == "pop3"
			out = out || s.Protocol == "smtp"
		}
		if !in || !out {
			v.fail(path, "domain %q: [[domain.server]] needs at least one imap or pop3 server and one smtp server", d.Name)
		}
		return
	}
	l := v.listen
	in = l.IMAP != "" || l.IMAPS != "" || l.POP3 != "" || l.POP3S != ""
	out = l.Submission != "" || l.Submissions != ""
	if !in || !out {
		v.fail(path, "domain %q is served by the built-in server, which listens for no mail access (imap, imaps, pop3, pop3s) or no submission (submission, submissions): enable them in [listen] or add [[domain.server]] entries", d.Name)
	}
}

func (v *validator) server(path string, s *Server) {
	switch s.Protocol {
	case "imap", "pop3", "smtp":
	default:
		v.fail(path+".protocol", "protocol = %q: want \"imap\", \"pop3\" or \"smtp\"", s.Protocol)
	}
	if s.Host == "" {
		v.fail(path, "[[domain.server]] without host")
	} else if h, err := HostName(s.Host); err != nil {
		v.fail(path+".host", "host %q: %v", s.Host, err)
	} else {
		s.Host = h
	}
	if s.Port < 1 || s.Port > 65535 {
		v.fail(path+".port", "port = %d: want 1 to 65535", s.Port)
	}
	switch s.Security {
	case "tls", "starttls":
	default:
		v.fail(path+".security", "security = %q: want \"tls\" (implicit) or \"starttls\"; plain text is not published", s.Security)
	}
}

// HostName validates a DNS host name and returns it lower-cased in A-label
// form. IDN names are converted with IDNA 2008 lookup rules.
func HostName(s string) (string, error) {
	s = strings.TrimSuffix(s, ".")
	if s == "" {
		return "", fmt.Errorf("empty name")
	}
	if !utf8.ValidString(s) {
		// IDNA would map the bad bytes to U+FFFD and punycode that.
		return "", fmt.Errorf("not valid UTF-8")
	}
	a := strings.ToLower(s)
	if !plainASCII(a) {
		// IDNA mapping is needed only for non-ASCII names and for
		// A-labels, whose punycode must be checked; the common case skips
		// it (it is most of the cost of an autoconfig request).
		var err error
		if a, err = idna.Lookup.ToASCII(s); err != nil {
			return "", fmt.Errorf("not a valid host name: %v", err)
		}
		a = strings.ToLower(a)
	}
	if len(a) > 253 {
		return "", fmt.Errorf("longer than 253 bytes")
	}
	for _, label := range strings.Split(a, ".") {
		if label == "" || len(label) > 63 {
			return "", fmt.Errorf("label %q must be 1 to 63 bytes", label)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return "", fmt.Errorf("label %q starts or ends with a hyphen", label)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return "", fmt.Errorf("label %q has the character %q", label, c)
			}
		}
	}
	return a, nil
}

// plainASCII reports whether s is made of letters, digits, hyphens and dots
// only, with no A-label (xn--) in it.
func plainASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return !strings.Contains(s, "xn--")
}

func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want HOST:PORT or :PORT")
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("port %q: want 1 to 65535", port)
	}
	if host != "" && net.ParseIP(host) == nil {
		if _, err := HostName(host); err != nil {
			return fmt.Errorf("host %q: %v", host, err)
		}
	}
	return nil
}

// Port returns the numeric port of a listen address, or 0 if disabled.
func Port(addr string) int {
	if addr == "" {
		return 0
	}
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}
