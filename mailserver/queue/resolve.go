package queue

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/miekg/dns"
)

// target is one address to try: a host name (for TLS and reports) and an
// IP:port to dial.
type target struct {
	name      string
	addr      string
	implicit  bool // TLS from the first byte (smarthost on 465)
	smarthost bool
}

// failure is a delivery problem for one or more recipients: permanent (the
// recipient bounces) or temporary (retried). smtpReply is set when the text
// is a remote server's reply, which the DSN reports as an smtp
// Diagnostic-Code.
type failure struct {
	perm      bool
	status    string // enhanced status code, e.g. 5.1.1
	text      string
	smtpReply bool
	remoteMTA string
	// note explains a decision on top of the reply ("gave up after 120h").
	note string
}

func (f *failure) Error() string { return f.String() }

// String is the reply with the note, for logs, the queue and the DSN text.
func (f *failure) String() string {
	if f.note == "" {
		return f.text
	}
	return f.note + ": " + f.text
}

func permf(status, format string, a ...any) *failure {
	return &failure{perm: true, status: status, text: fmt.Sprintf(format, a...)}
}

func tempf(status, format string, a ...any) *failure {
	return &failure{status: status, text: fmt.Sprintf(format, a...)}
}

func systemResolvers(path string) ([]string, error) {
	cc, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("system resolvers from %s: %w", path, err)
	}
	var out []string
	for _, s := range cc.Servers {
		out = append(out, net.JoinHostPort(s, cc.Port))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no nameserver in %s; set [dns] resolver", path)
	}
	return out, nil
}

// query asks the configured resolvers in turn, over TCP when the UDP
// answer is truncated.
func (q *Queue) query(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = true
	m.SetEdns0(1232, false)
	var errs []error
	for _, srv := range q.servers {
		for _, network := range []string{"udp", "tcp"} {
			c := dns.Client{Net: network, Timeout: dnsTimeout}
			r, _, err := c.ExchangeContext(ctx, m, srv)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s %s: %w", network, srv, err))
				break
			}
			if r.Truncated && network == "udp" {
				continue
			}
			return r, nil
		}
	}
	return nil, fmt.Errorf("dns %s %s: %w", dns.TypeToString[qtype], name, errors.Join(errs...))
}

// addresses returns the IPv4 then IPv6 addresses of host. nxdomain is true
// when the name does not exist at all.
func (q *Queue) addresses(ctx context.Context, host string) (ips []string, nxdomain bool, err error) {
	for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
		r, err := q.query(ctx, host, qt)
		if err != nil {
			return nil, false, err
		}
		switch r.Rcode {
		case dns.RcodeSuccess:
		case dns.RcodeNameError:
			return nil, true, nil
		default:
			return nil, false, fmt.Errorf("dns %s %s: %s", dns.TypeToString[qt], host, dns.RcodeToString[r.Rcode])
		}
		for _, rr := range r.Answer {
			switch a := rr.(type) {
			case *dns.A:
				ips = append(ips, a.A.String())
			case *dns.AAAA:
				ips = append(ips, a.AAAA.String())
			}
		}
	}
	return ips, false, nil
}

// route returns where mail for domain goes, in the order to try.
func (q *Queue) route(ctx context.Context, domain string) ([]target, *failure) {
	if q.cfg.Smarthost != "" {
		return q.smarthostTargets(ctx)
	}
	r, err := q.query(ctx, domain, dns.TypeMX)
	if err != nil {
		return nil, tempf("4.4.3", "MX lookup for %s failed: %v", domain, err)
	}
	switch r.Rcode {
	case dns.RcodeSuccess:
	case dns.RcodeNameError:
		return nil, permf("5.1.2", "domain %s does not exist (NXDOMAIN)", domain)
	default:
		return nil, tempf("4.4.3", "MX lookup for %s: %s", domain, dns.RcodeToString[r.Rcode])
	}
	var mxs []*dns.MX
	for _, rr := range r.Answer {
		if mx, ok := rr.(*dns.MX); ok {
			mxs = append(mxs, mx)
		}
	}
	// RFC 7505: a single MX with the root as exchange says the domain
	// takes no mail at all.
	if len(mxs) == 1 && mxs[0].Mx == "." {
		return nil, permf("5.1.10", "domain %s accepts no mail (null MX, RFC 7505)", domain)
	}
	mxs = slices.DeleteFunc(mxs, func(mx *dns.MX) bool { return mx.Mx == "." })
	slices.SortStableFunc(mxs, func(a, b *dns.MX) int { return int(a.Preference) - int(b.Preference) })
	port := strconv.Itoa(q.cfg.Port)
	if len(mxs) == 0 {
		// RFC 5321 §5.1: no MX means the domain itself is the host.
		ips, nx, err := q.addresses(ctx, domain)
		switch {
		case err != nil:
			return nil, tempf("4.4.3", "address lookup for %s failed: %v", domain, err)
		case nx || len(ips) == 0:
			return nil, permf("5.1.2", "domain %s has no MX and no address", domain)
		}
		var out []target
		for _, ip := range ips {
			out = append(out, target{name: domain, addr: net.JoinHostPort(ip, port)})
		}
		return out, nil
	}
	var out []target
	var lookupErr error
	for _, mx := range mxs {
		host := strings.TrimSuffix(strings.ToLower(mx.Mx), ".")
		ips, _, err := q.addresses(ctx, host)
		if err != nil {
			lookupErr = err
			continue
		}
		for _, ip := range ips {
			out = append(out, target{name: host, addr: net.JoinHostPort(ip, port)})
		}
	}
	if len(out) == 0 {
		if lookupErr != nil {
			return nil, tempf("4.4.3", "no address for the MX hosts of %s: %v", domain, lookupErr)
		}
		return nil, tempf("4.4.4", "the MX hosts of %s have no address", domain)
	}
	return out, nil
}

func (q *Queue) smarthostTargets(ctx context.Context) ([]target, *failure) {
	host, port, _ := net.SplitHostPort(q.cfg.Smarthost)
	implicit := port == "465" || q.cfg.SmarthostImplicitTLS
	if ip := net.ParseIP(host); ip != nil {
		return []target{{name: host, addr: q.cfg.Smarthost, implicit: implicit, smarthost: true}}, nil
	}
	ips, nx, err := q.addresses(ctx, host)
	if err != nil || nx || len(ips) == 0 {
		// The operator's smarthost is never the recipient's fault.
		return nil, tempf("4.4.3", "smarthost %s has no address (err %v)", host, err)
	}
	var out []target
	for _, ip := range ips {
		out = append(out, target{name: host, addr: net.JoinHostPort(ip, port), implicit: implicit, smarthost: true})
	}
	return out, nil
}
