// Package autoconfig owns the neutral settings model — what a mail client
// should use for an address — and renders it into every format clients
// understand: Thunderbird autoconfig, Outlook Autodiscover (POX and v2 JSON),
// Apple configuration profiles, the setup page and DNS records.
//
// The model is built once from the config; each renderer maps it on its own
// terms (see reference/formats.md §6), never reusing one format's values in
// another.
package autoconfig

import (
	"sort"

	"mailconf/config"
)

// Protocol is a mail access or submission protocol.
type Protocol string

const (
	IMAP Protocol = "imap"
	POP3 Protocol = "pop3"
	SMTP Protocol = "smtp"
)

// Security is how an endpoint protects the connection.
type Security string

const (
	// TLS is implicit TLS from the first byte (993, 995, 465).
	TLS Security = "tls"
	// StartTLS is a plain connection upgraded with STARTTLS/STLS, required
	// before login.
	StartTLS Security = "starttls"
)

// UsernameForm says what a client logs in with.
type UsernameForm string

const (
	UsernameAddress   UsernameForm = config.UsernameAddress
	UsernameLocalpart UsernameForm = config.UsernameLocalpart
)

// Endpoint is one server a client may use. Every endpoint published by
// mailconf uses password authentication inside TLS.
type Endpoint struct {
	Protocol Protocol `json:"protocol"`
	Host     string   `json:"host"`
	Port     int      `json:"port"`
	Security Security `json:"security"`
}

// Settings is what a client should configure for any address of one domain.
type Settings struct {
	Domain      string       `json:"domain"` // A-label
	DisplayName string       `json:"display_name"`
	Username    UsernameForm `json:"username"`
	// Incoming lists IMAP endpoints before POP3 ones; within a protocol,
	// implicit TLS before STARTTLS.
	Incoming []Endpoint `json:"incoming"`
	// Outgoing lists SMTP submission endpoints, implicit TLS first.
	Outgoing []Endpoint `json:"outgoing"`
	CalDAV   string     `json:"caldav,omitempty"`
	CardDAV  string     `json:"carddav,omitempty"`
}

// LoginName is the username a client sends for addr.
func (s *Settings) LoginName(addr Address) string {
	if s.Username == UsernameLocalpart {
		return addr.Local
	}
	return addr.String()
}

// Endpoints returns the endpoints of one protocol in preference order.
func (s *Settings) Endpoints(p Protocol) []Endpoint {
	var out []Endpoint
	for _, list := range [][]Endpoint{s.Incoming, s.Outgoing} {
		for _, e := range list {
			if e.Protocol == p {
				out = append(out, e)
			}
		}
	}
	return out
}

// Preferred returns the first endpoint of p, preferring implicit TLS.
func (s *Settings) Preferred(p Protocol) (Endpoint, bool) {
	eps := s.Endpoints(p)
	if len(eps) == 0 {
		return Endpoint{}, false
	}
	return eps[0], true
}

// Catalog holds the settings of every served domain.
type Catalog struct {
	domains map[string]*Settings
	order   []string
}

// NewCatalog builds the settings of every domain in cfg. Domains without
// [[domain.server]] publish the built-in server: cfg.Hostname with the ports
// it listens on.
func NewCatalog(cfg *config.Config) *Catalog {
	c := &Catalog{domains: map[string]*Settings{}}
	builtin := builtinEndpoints(cfg)
	for _, d := range cfg.Domains {
		s := &Settings{
			Domain:      d.Name,
			DisplayName: d.DisplayName,
			Username:    UsernameForm(d.Username),
			CalDAV:      d.CalDAV,
			CardDAV:     d.CardDAV,
		}
		eps := builtin
		if len(d.Servers) > 0 {
			eps = nil
			for _, srv := range d.Servers {
				eps = append(eps, Endpoint{Protocol: Protocol(srv.Protocol), Host: srv.Host, Port: srv.Port, Security: Security(srv.Security)})
			}
		}
		s.Incoming, s.Outgoing = split(eps)
		c.domains[d.Name] = s
		c.order = append(c.order, d.Name)
	}
	return c
}

// Lookup returns the settings of a served domain (A-label, any case).
func (c *Catalog) Lookup(domain string) (*Settings, bool) {
	if s, ok := c.domains[domain]; ok { // already canonical: the usual case
		return s, true
	}
	s, ok := c.domains[normalizeDomain(domain)]
	return s, ok
}

// Domains returns every served domain's settings in config order.
func (c *Catalog) Domains() []*Settings {
	out := make([]*Settings, 0, len(c.order))
	for _, n := range c.order {
		out = append(out, c.domains[n])
	}
	return out
}

func builtinEndpoints(cfg *config.Config) []Endpoint {
	l := cfg.Listen
	var eps []Endpoint
	add := func(p Protocol, addr string, sec Security) {
		if port := config.Port(addr); port != 0 {
			eps = append(eps, Endpoint{Protocol: p, Host: cfg.Hostname, Port: port, Security: sec})
		}
	}
	add(IMAP, l.IMAPS, TLS)
	add(IMAP, l.IMAP, StartTLS)
	add(POP3, l.POP3S, TLS)
	add(POP3, l.POP3, StartTLS)
	add(SMTP, l.Submissions, TLS)
	add(SMTP, l.Submission, StartTLS)
	return eps
}

// split orders endpoints: IMAP, then POP3, then SMTP; implicit TLS first
// within a protocol; otherwise config order.
func split(eps []Endpoint) (incoming, outgoing []Endpoint) {
	rank := map[Protocol]int{IMAP: 0, POP3: 1, SMTP: 2}
	sorted := append([]Endpoint(nil), eps...)
	sort.SliceStable(sorted, func(i, j int) bool {
		a, b := sorted[i], sorted[j]
		if rank[a.Protocol] != rank[b.Protocol] {
			return rank[a.Protocol] < rank[b.Protocol]
		}
		return a.Security == TLS && b.Security != TLS
	})
	for _, e := range sorted {
		if e.Protocol == SMTP {
			outgoing = append(outgoing, e)
		} else {
			incoming = append(incoming, e)
		}
	}
	return incoming, outgoing
}

func normalizeDomain(d string) string {
	n, err := config.HostName(d)
	if err != nil {
		return ""
	}
	return n
}
