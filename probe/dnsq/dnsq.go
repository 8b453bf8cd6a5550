// Package dnsq makes the probe's own DNS lookups with github.com/miekg/dns,
// keeping what the stdlib resolver hides: rcode, the AD bit, TTLs,
// truncation and the CNAME chain (reference/probe.md §9).
package dnsq

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"mailconf/probe/report"
)

// DefaultTimeout is the per-query budget (probe.md §4: 3 s, one TCP retry).
const DefaultTimeout = 3 * time.Second

// Client asks one resolver. It asks each question once and hands every
// later asker the same answer: one probe run needs the same host from the
// DNS stage, discovery's HTTP dials and the endpoint checks, and should
// neither wait for nor report more than one answer per question. Make one
// Client per run.
type Client struct {
	Server  string // host:port
	Timeout time.Duration

	mu   sync.Mutex
	seen map[question]*answer
}

type question struct {
	name  string
	qtype uint16
}

// answer is one question's result once done is closed; abandoned says the
// asker's context ended first, so waiters must ask again themselves.
type answer struct {
	done      chan struct{}
	res       *Result
	abandoned bool
}

// New returns a client for server ("host:port", "host" for port 53, or ""
// for the first nameserver of /etc/resolv.conf).
func New(server string) (*Client, error) {
	if server == "" {
		cc, err := dns.ClientConfigFromFile("/etc/resolv.conf")
		if err != nil {
			return nil, fmt.Errorf("dnsq: read resolv.conf: %w", err)
		}
		if len(cc.Servers) == 0 {
			return nil, errors.New("dnsq: resolv.conf names no nameserver")
		}
		server = net.JoinHostPort(cc.Servers[0], cc.Port)
	}
	if _, _, err := net.SplitHostPort(server); err != nil {
		server = net.JoinHostPort(strings.Trim(server, "[]"), "53")
	}
	return &Client{Server: server, Timeout: DefaultTimeout}, nil
}

// Result is one answered (or failed) question.
type Result struct {
	Name      string
	Type      uint16
	Rcode     int
	AD        bool
	Truncated bool // the UDP answer was truncated (then TCP was used)
	Via       string
	RTT       time.Duration
	Answer    []dns.RR
	CNAMEs    []string // the chain from Name to the final owner
	Err       error    // transport failure (timeout, refused)
	Bogus     bool     // SERVFAIL that answers with checking disabled
}

// Code classifies a result into a failure code; "" when it has an answer.
func (r *Result) Code() report.Code {
	switch {
	case r.Err != nil:
		return report.DNSTimeout
	case r.Bogus:
		return report.DNSBogus
	case r.Rcode == dns.RcodeNameError:
		return report.DNSNXDomain
	case r.Rcode != dns.RcodeSuccess:
		return report.DNSServFail
	case len(r.typed()) == 0:
		return report.DNSNoData
	}
	return ""
}

// typed returns the answers of the asked type.
func (r *Result) typed() []dns.RR {
	var out []dns.RR
	for _, rr := range r.Answer {
		if rr.Header().Rrtype == r.Type {
			out = append(out, rr)
		}
	}
	return out
}

// TTL is the smallest TTL of the typed answers.
func (r *Result) TTL() uint32 {
	var ttl uint32
	for i, rr := range r.typed() {
		if i == 0 || rr.Header().Ttl < ttl {
			ttl = rr.Header().Ttl
		}
	}
	return ttl
}

// Query asks one question: UDP with EDNS0 and the DO bit, TCP when the
// answer is truncated. On SERVFAIL it asks again with checking disabled to
// tell a DNSSEC failure (bogus) from a broken server. A question this
// Client has asked before gets the first answer (see Client).
func (c *Client) Query(ctx context.Context, name string, qtype uint16) *Result {
	name = dns.Fqdn(strings.ToLower(name))
	q := question{name, qtype}
	for {
		c.mu.Lock()
		if c.seen == nil {
			c.seen = map[question]*answer{}
		}
		a, asked := c.seen[q]
		if !asked {
			a = &answer{done: make(chan struct{})}
			c.seen[q] = a
		}
		c.mu.Unlock()
		if !asked {
			a.res = c.ask(ctx, name, qtype)
			if ctx.Err() != nil {
				// The failure may be this caller's deadline, not the
				// resolver's: let the next asker try for itself.
				c.mu.Lock()
				delete(c.seen, q)
				c.mu.Unlock()
				a.abandoned = true
			}
			close(a.done)
			return a.res
		}
		select {
		case <-a.done:
			if !a.abandoned {
				return a.res
			}
		case <-ctx.Done():
			return &Result{Name: name, Type: qtype, Err: fmt.Errorf("dnsq: %s %s: %w", name, dns.TypeToString[qtype], ctx.Err())}
		}
	}
}

func (c *Client) ask(ctx context.Context, name string, qtype uint16) *Result {
	res := &Result{Name: name, Type: qtype}
	reply, rtt, via, err := c.exchange(ctx, name, qtype, false)
	res.RTT, res.Via = rtt, via
	if err != nil {
		res.Err = err
		return res
	}
	res.Truncated = via == "tcp"
	res.Rcode = reply.Rcode
	res.AD = reply.AuthenticatedData
	res.Answer = reply.Answer
	if reply.Rcode == dns.RcodeServerFailure {
		if cd, _, _, err := c.exchange(ctx, name, qtype, true); err == nil && cd.Rcode == dns.RcodeSuccess {
			res.Bogus = true
		}
	}
	owner := name
	for _, rr := range reply.Answer {
		if cn, ok := rr.(*dns.CNAME); ok && strings.EqualFold(cn.Hdr.Name, owner) {
			res.CNAMEs = append(res.CNAMEs, cn.Target)
			owner = cn.Target
		}
	}
	return res
}

func (c *Client) exchange(ctx context.Context, name string, qtype uint16, cd bool) (*dns.Msg, time.Duration, string, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.SetEdns0(4096, true)
	m.CheckingDisabled = cd
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	qctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	udp := &dns.Client{Net: "udp", Timeout: timeout, UDPSize: 4096}
	reply, rtt, err := udp.ExchangeContext(qctx, m, c.Server)
	if err != nil {
		return nil, rtt, "udp", fmt.Errorf("dnsq: %s %s via udp: %w", name, dns.TypeToString[qtype], err)
	}
	if !reply.Truncated {
		return reply, rtt, "udp", nil
	}
	tcp := &dns.Client{Net: "tcp", Timeout: timeout}
	reply, rtt2, err := tcp.ExchangeContext(qctx, m, c.Server)
	if err != nil {
		return nil, rtt + rtt2, "tcp", fmt.Errorf("dnsq: %s %s via tcp: %w", name, dns.TypeToString[qtype], err)
	}
	return reply, rtt + rtt2, "tcp", nil
}

// MX is one mail exchanger.
type MX struct {
	Pref uint16
	Host string // FQDN with trailing dot; "." for a null MX
}

// MXs returns the MX records sorted by preference.
func (r *Result) MXs() []MX {
	var out []MX
	for _, rr := range r.typed() {
		mx := rr.(*dns.MX)
		out = append(out, MX{Pref: mx.Preference, Host: strings.ToLower(mx.Mx)})
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].Pref < out[j-1].Pref; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// NullMX reports RFC 7505's "MX 0 .".
func (r *Result) NullMX() bool {
	mx := r.MXs()
	return len(mx) == 1 && mx[0].Host == "."
}

// SRV is one service record.
type SRV struct {
	Priority, Weight, Port uint16
	Target                 string // FQDN with trailing dot; "." = not offered
}

// SRVs returns the SRV records sorted by priority, then weight descending
// (RFC 2782's weighted choice made deterministic for a report).
func (r *Result) SRVs() []SRV {
	var out []SRV
	for _, rr := range r.typed() {
		s := rr.(*dns.SRV)
		out = append(out, SRV{s.Priority, s.Weight, s.Port, strings.ToLower(s.Target)})
	}
	less := func(a, b SRV) bool {
		if a.Priority != b.Priority {
			return a.Priority < b.Priority
		}
		return a.Weight > b.Weight
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && less(out[j], out[j-1]); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// Disabled reports RFC 2782's "service decidedly not available" (target ".").
func (r *Result) Disabled() bool {
	s := r.SRVs()
	return len(s) == 1 && s[0].Target == "."
}

// Addrs returns the A or AAAA addresses.
func (r *Result) Addrs() []netip.Addr {
	var out []netip.Addr
	for _, rr := range r.typed() {
		switch a := rr.(type) {
		case *dns.A:
			if ip, ok := netip.AddrFromSlice(a.A.To4()); ok {
				out = append(out, ip)
			}
		case *dns.AAAA:
			if ip, ok := netip.AddrFromSlice(a.AAAA.To16()); ok {
				out = append(out, ip)
			}
		}
	}
	return out
}

// Strings renders the typed answers' data for a report.
func (r *Result) Strings() []string {
	var out []string
	for _, rr := range r.typed() {
		hdr := rr.Header().String()
		out = append(out, strings.TrimSpace(strings.TrimPrefix(rr.String(), hdr)))
	}
	return out
}

// Record converts the result for the report.
func (r *Result) Record() report.DNSQuery {
	q := report.DNSQuery{
		Name: r.Name, Type: dns.TypeToString[r.Type], AD: r.AD, TTL: r.TTL(),
		CNAMEChain: append([]string{}, r.CNAMEs...), Answers: r.Strings(),
		RTTMS: r.RTT.Milliseconds(), Via: r.Via,
	}
	if q.Answers == nil {
		q.Answers = []string{}
	}
	if r.Err != nil {
		q.Rcode = "TIMEOUT"
		q.Error = r.Err.Error()
	} else {
		q.Rcode = dns.RcodeToString[r.Rcode]
	}
	return q
}

// TypeName is the mnemonic of a query type.
func TypeName(t uint16) string { return dns.TypeToString[t] }

// Lookup returns host's addresses, IPv4 first: an IP literal as it is,
// RFC 6761 localhost names as loopback (see Localhost), anything else from
// A then AAAA queries, whose results are returned too (nil when no query
// was needed) so that callers can record them.
func (c *Client) Lookup(ctx context.Context, host string) ([]netip.Addr, []*Result) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip}, nil
	}
	if ips, ok := Localhost(host); ok {
		return ips, nil
	}
	var ips []netip.Addr
	var results []*Result
	for _, t := range []uint16{dns.TypeA, dns.TypeAAAA} {
		res := c.Query(ctx, host, t)
		results = append(results, res)
		ips = append(ips, res.Addrs()...)
	}
	return ips, results
}

// Localhost answers RFC 6761's special names: "localhost" and every name
// under it are loopback, whatever a DNS server says (clients' stub
// resolvers never ask one). The default config publishes "localhost" and
// binds 127.0.0.1 (SPEC §3), so the answer is the IPv4 loopback only: ::1
// is a host's own choice in /etc/hosts, not something DNS could tell.
func Localhost(host string) ([]netip.Addr, bool) {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return []netip.Addr{netip.AddrFrom4([4]byte{127, 0, 0, 1})}, true
	}
	return nil, false
}
