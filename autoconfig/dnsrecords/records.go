// Package dnsrecords computes the DNS records a mailconf domain should
// publish (MX, RFC 6186/8314 SRV, Autodiscover SRV, autoconfig and
// autodiscover names, RFC 6764 CalDAV/CardDAV, SPF, DMARC, DKIM), prints
// them as a zone fragment and compares them with what live DNS answers.
//
// Records are built as typed miekg/dns resource records and printed with
// their String method, so every line is valid zone-file syntax.
package dnsrecords

import (
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/miekg/dns"

	"mailconf/autoconfig"
	"mailconf/config"
)

// TTL is the time to live of every record mailconf suggests.
const TTL = 3600

// mxPreference is the preference of the single MX record mailconf suggests.
const mxPreference = 10

// DMARCPolicy is the DMARC record mailconf suggests: quarantine rather than
// reject, so a forwarding mistake lands in spam instead of bouncing.
const DMARCPolicy = "v=DMARC1; p=quarantine"

// Group says which part of the setup a record belongs to; Write prints one
// commented block per group.
type Group string

const (
	GroupDelivery  Group = "delivery"  // MX
	GroupClients   Group = "clients"   // RFC 6186 / RFC 8314 SRV
	GroupDiscovery Group = "discovery" // autoconfig / autodiscover
	GroupDAV       Group = "dav"       // RFC 6764 CalDAV / CardDAV
	GroupPolicy    Group = "policy"    // SPF, DMARC, DKIM
)

// Record is one suggested resource record with the reason for it.
type Record struct {
	// Domain is the served domain (A-label) the record is for.
	Domain string
	Group  Group
	RR     dns.RR
	// Comment explains a value that is not obvious; Write prints it after
	// the record.
	Comment string
	// Advisory marks a record whose absence Check reports as a suggestion
	// only: RFC 2782 "not offered" SRV records (some DNS panels refuse
	// them, clients.md §3).
	Advisory bool
}

// Name is the record's owner name, fully qualified.
func (r Record) Name() string { return r.RR.Header().Name }

// Type is the record type's mnemonic, e.g. "SRV".
func (r Record) Type() string { return dns.TypeToString[r.RR.Header().Rrtype] }

// String is the record as one zone-file line.
func (r Record) String() string { return r.RR.String() }

// mailServices lists the mail SRV services in the order they are printed:
// submission first, as the setup page lists them.
func mailServices() []autoconfig.SRVService {
	all := autoconfig.SRVServices()
	slices.SortStableFunc(all, func(x, y autoconfig.SRVService) int {
		return boolInt(y.Protocol == autoconfig.SMTP) - boolInt(x.Protocol == autoconfig.SMTP)
	})
	return all
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Records returns the records every named domain should publish, or every
// served domain when domains is empty. dkim maps a domain to the TXT value
// of its DKIM public key ("v=DKIM1; k=rsa; p=..."); domains without one get
// no DKIM record.
func Records(cfg *config.Config, cat *autoconfig.Catalog, domains []string, dkim map[string]string) ([]Record, error) {
	if cfg == nil || cat == nil {
		return nil, fmt.Errorf("dnsrecords: Records needs a config and a catalog")
	}
	selected, err := selectDomains(cat, domains)
	if err != nil {
		return nil, err
	}
	keys := make(map[string]string, len(dkim))
	for d, v := range dkim {
		if n, err := config.HostName(d); err == nil && strings.TrimSpace(v) != "" {
			keys[n] = strings.TrimSpace(v)
		}
	}
	var recs []Record
	for _, s := range selected {
		b := builder{cfg: cfg, s: s, host: dns.Fqdn(cfg.Hostname)}
		b.build(keys[s.Domain])
		recs = append(recs, b.recs...)
	}
	return recs, nil
}

func selectDomains(cat *autoconfig.Catalog, names []string) ([]*autoconfig.Settings, error) {
	if len(names) == 0 {
		return cat.Domains(), nil
	}
	var out []*autoconfig.Settings
	seen := map[string]bool{}
	for _, n := range names {
		s, ok := cat.Lookup(n)
		if !ok {
			var served []string
			for _, d := range cat.Domains() {
				served = append(served, d.Domain)
			}
			return nil, fmt.Errorf("dnsrecords: %q is not a served domain (served: %s)", n, strings.Join(served, ", "))
		}
		if !seen[s.Domain] {
			seen[s.Domain] = true
			out = append(out, s)
		}
	}
	return out, nil
}

type builder struct {
	cfg  *config.Config
	s    *autoconfig.Settings
	host string // cfg.Hostname, fully qualified
	recs []Record
}

func (b *builder) hdr(name string, rrtype uint16) dns.RR_Header {
	return dns.RR_Header{Name: dns.Fqdn(name), Rrtype: rrtype, Class: dns.ClassINET, Ttl: TTL}
}

func (b *builder) add(g Group, rr dns.RR, comment string, advisory bool) {
	b.recs = append(b.recs, Record{Domain: b.s.Domain, Group: g, RR: rr, Comment: comment, Advisory: advisory})
}

func (b *builder) build(dkimValue string) {
	d := b.s.Domain
	mx := b.cfg.Listen.SMTP != ""
	// The built-in SMTP listener accepts mail for every served domain, also
	// one whose client settings point at other servers, so the MX follows
	// the listener rather than [[domain.server]].
	if mx {
		comment := ""
		if p := config.Port(b.cfg.Listen.SMTP); p != 25 {
			comment = fmt.Sprintf("other servers deliver to port 25; mailconf's SMTP listens on %d, forward 25 to it", p)
		}
		b.add(GroupDelivery, &dns.MX{Hdr: b.hdr(d, dns.TypeMX), Preference: mxPreference, Mx: b.host}, comment, false)
	}

	b.mailSRV()

	b.add(GroupDiscovery, &dns.SRV{Hdr: b.hdr("_autodiscover._tcp."+d, dns.TypeSRV), Priority: 0, Weight: 0, Port: 443, Target: b.host},
		"Outlook fetches https://"+strings.TrimSuffix(b.host, ".")+"/autodiscover/autodiscover.xml", false)
	for _, label := range []string{"autoconfig", "autodiscover"} {
		name := dns.Fqdn(label + "." + d)
		if strings.EqualFold(name, b.host) {
			continue
		}
		b.add(GroupDiscovery, &dns.CNAME{Hdr: b.hdr(name, dns.TypeCNAME), Target: b.host},
			"the certificate must also cover "+strings.TrimSuffix(name, "."), false)
	}

	b.dav("caldav", b.s.CalDAV)
	b.dav("carddav", b.s.CardDAV)

	if spf, comment := b.spf(mx); spf != "" {
		b.add(GroupPolicy, &dns.TXT{Hdr: b.hdr(d, dns.TypeTXT), Txt: txtStrings(spf)}, comment, false)
	}
	b.add(GroupPolicy, &dns.TXT{Hdr: b.hdr("_dmarc."+d, dns.TypeTXT), Txt: txtStrings(DMARCPolicy)}, "", false)
	if dkimValue != "" {
		b.add(GroupPolicy, &dns.TXT{Hdr: b.hdr(b.cfg.DKIM.Selector+"._domainkey."+d, dns.TypeTXT), Txt: txtStrings(dkimValue)},
			"public key of the DKIM signing key, selector "+b.cfg.DKIM.Selector, false)
	}
}

// mailSRV adds the RFC 6186 records. Priorities follow the settings'
// preference order, so implicit TLS comes before STARTTLS (RFC 8314 §5.1)
// and IMAP before POP3 (RFC 6186 compares priorities across the two).
func (b *builder) mailSRV() {
	for _, svc := range mailServices() {
		name := svc.Label + "." + b.s.Domain
		list := b.s.Incoming
		if svc.Protocol == autoconfig.SMTP {
			list = b.s.Outgoing
		}
		offered := false
		for i, e := range list {
			if e.Protocol != svc.Protocol || e.Security != svc.Security {
				continue
			}
			offered = true
			b.add(GroupClients, &dns.SRV{Hdr: b.hdr(name, dns.TypeSRV), Priority: uint16(10 * i), Weight: 1, Port: uint16(e.Port), Target: dns.Fqdn(e.Host)}, "", false)
		}
		if !offered {
			b.add(GroupClients, &dns.SRV{Hdr: b.hdr(name, dns.TypeSRV), Target: "."}, "not offered", true)
		}
	}
}

// dav adds the RFC 6764 records for a CalDAV or CardDAV URL. The config
// only accepts https URLs, so the plain-HTTP label is published as "not
// offered".
func (b *builder) dav(kind, raw string) {
	if raw == "" {
		return
	}
	u, err := url.Parse(raw)
	if err != nil {
		return
	}
	port := 443
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err == nil {
			port = n
		}
	}
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	host, err := config.HostName(u.Hostname())
	if err != nil {
		return
	}
	secure := "_" + kind + "s._tcp." + b.s.Domain
	b.add(GroupDAV, &dns.SRV{Hdr: b.hdr(secure, dns.TypeSRV), Priority: 0, Weight: 1, Port: uint16(port), Target: dns.Fqdn(host)}, "", false)
	b.add(GroupDAV, &dns.TXT{Hdr: b.hdr(secure, dns.TypeTXT), Txt: txtStrings("path=" + path)}, "context path of "+raw, false)
	b.add(GroupDAV, &dns.SRV{Hdr: b.hdr("_"+kind+"._tcp."+b.s.Domain, dns.TypeSRV), Target: "."}, "plain HTTP not offered", true)
}

// spf returns the SPF policy for the domain: the MX (mailconf itself, which
// also sends bounces) plus every host that submits the domain's outgoing
// mail. It returns "" when nothing sends mail for the domain.
func (b *builder) spf(mx bool) (value, comment string) {
	var terms []string
	seen := map[string]bool{}
	if mx {
		terms = append(terms, "mx")
		seen[strings.TrimSuffix(b.host, ".")] = true
	}
	var hosts []string
	for _, e := range b.s.Outgoing {
		if !seen[e.Host] {
			seen[e.Host] = true
			hosts = append(hosts, e.Host)
		}
	}
	sort.Strings(hosts)
	for _, h := range hosts {
		terms = append(terms, "a:"+h)
	}
	if len(terms) == 0 {
		return "", ""
	}
	if b.cfg.Relay.Smarthost != "" {
		comment = "mail leaves through " + b.cfg.Relay.Smarthost + ": add the include: your provider documents"
	}
	return "v=spf1 " + strings.Join(terms, " ") + " -all", comment
}

// txtStrings splits a TXT value into character-strings of at most 255
// bytes (RFC 1035 §3.3); receivers join them (RFC 7208 §3.3, RFC 6376
// §3.6.2.2).
func txtStrings(v string) []string {
	var out []string
	for len(v) > 255 {
		out = append(out, v[:255])
		v = v[255:]
	}
	return append(out, v)
}
