package dnsrecords

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Problem classifies a Difference.
type Problem string

const (
	// Missing: the resolver has no record of the expected kind.
	Missing Problem = "missing"
	// Wrong: a record exists but says something else.
	Wrong Problem = "wrong"
	// Conflict: next to the expected record, another one sends clients or
	// mail elsewhere.
	Conflict Problem = "conflict"
	// LookupFailed: the resolver could not answer for this name (SERVFAIL).
	LookupFailed Problem = "lookup-failed"
)

// Difference is one way live DNS differs from the suggested records.
type Difference struct {
	Domain  string
	Name    string // owner name, fully qualified
	Type    string // "MX", "SRV", "TXT", "CNAME"
	Problem Problem
	// Advisory differences are suggestions; they do not fail a check.
	Advisory bool
	// Message says in one line what is wrong and what it breaks.
	Message string
	// Add is the zone line to publish; "" when only a removal is needed.
	Add string
	// Remove lists the resolver's records to delete or replace.
	Remove []string
}

// Failed reports whether any difference is not advisory.
func Failed(diffs []Difference) bool {
	for _, d := range diffs {
		if !d.Advisory {
			return true
		}
	}
	return false
}

// queryTimeout bounds one exchange when ctx has no earlier deadline.
const queryTimeout = 5 * time.Second

// Check queries resolver (HOST:PORT; "" means the servers of
// /etc/resolv.conf) for every record in recs and returns how the answers
// differ. Names compare case-insensitively, TTLs are ignored, record order
// does not matter; TXT records other than the expected kind (SPF, DMARC,
// DKIM, path=) at the same name are left alone. An error means the check
// could not run (resolver unreachable or refusing).
func Check(ctx context.Context, resolver string, recs []Record) ([]Difference, error) {
	servers, err := resolverServers(resolver, "/etc/resolv.conf")
	if err != nil {
		return nil, err
	}
	c := &checker{
		r:       &lookup{servers: servers, cache: map[question]*answer{}},
		expMX:   map[string][]string{},
		checked: map[question]bool{},
	}
	for _, r := range recs {
		if mx, ok := r.RR.(*dns.MX); ok {
			d := canonical(r.Name())
			c.expMX[d] = append(c.expMX[d], mx.Mx)
		}
	}
	for _, r := range recs {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("dnsrecords: check: %w", err)
		}
		if err := c.check(ctx, r, recs); err != nil {
			return nil, err
		}
	}
	if err := c.checkTargets(ctx, recs); err != nil {
		return nil, err
	}
	return c.diffs, nil
}

// resolverServers returns resolver, or the nameservers of the resolv.conf
// file at path when resolver is "".
func resolverServers(resolver, path string) ([]string, error) {
	if resolver != "" {
		if _, _, err := net.SplitHostPort(resolver); err != nil {
			return nil, fmt.Errorf("dnsrecords: resolver %q: want HOST:PORT", resolver)
		}
		return []string{resolver}, nil
	}
	cc, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("dnsrecords: system resolver: %w", err)
	}
	if len(cc.Servers) == 0 {
		return nil, fmt.Errorf("dnsrecords: system resolver: %s lists no nameserver; pass --resolver HOST:PORT", path)
	}
	var out []string
	for _, s := range cc.Servers {
		out = append(out, net.JoinHostPort(s, cc.Port))
	}
	return out, nil
}

type question struct {
	name  string
	qtype uint16
}

type answer struct {
	rrs      []dns.RR // answer section records of the asked type and owner
	servfail bool
}

// lookup sends queries and remembers the answers for one check.
type lookup struct {
	servers []string
	cache   map[question]*answer
}

// query asks for name/qtype, over UDP and again over TCP when the answer is
// truncated, trying each server until one answers.
func (l *lookup) query(ctx context.Context, name string, qtype uint16) (*answer, error) {
	q := question{canonical(name), qtype}
	if a, ok := l.cache[q]; ok {
		return a, nil
	}
	msg := new(dns.Msg)
	msg.SetQuestion(q.name, qtype)
	msg.SetEdns0(1232, false)
	var lastErr error
	for _, server := range l.servers {
		reply, err := exchange(ctx, msg, server)
		if err != nil {
			lastErr = err
			if ctx.Err() != nil {
				break
			}
			continue
		}
		switch reply.Rcode {
		case dns.RcodeSuccess, dns.RcodeNameError:
		case dns.RcodeServerFailure:
			a := &answer{servfail: true}
			l.cache[q] = a
			return a, nil
		default:
			lastErr = fmt.Errorf("%s answered %s", server, dns.RcodeToString[reply.Rcode])
			continue
		}
		a := &answer{}
		for _, rr := range reply.Answer {
			if rr.Header().Rrtype == qtype && canonical(rr.Header().Name) == q.name {
				a.rrs = append(a.rrs, rr)
			}
		}
		// A CNAME at the name makes the resolver answer with the chain;
		// keep the records of the chain's end.
		if len(a.rrs) == 0 && qtype != dns.TypeCNAME {
			for _, rr := range reply.Answer {
				if rr.Header().Rrtype == qtype {
					a.rrs = append(a.rrs, rr)
				}
			}
		}
		l.cache[q] = a
		return a, nil
	}
	return nil, fmt.Errorf("dnsrecords: check: query %s %s: %w", strings.TrimSuffix(q.name, "."), dns.TypeToString[qtype], lastErr)
}

func exchange(ctx context.Context, msg *dns.Msg, server string) (*dns.Msg, error) {
	udp := &dns.Client{Net: "udp", Timeout: queryTimeout}
	reply, _, err := udp.ExchangeContext(ctx, msg, server)
	if err != nil {
		return nil, err
	}
	if !reply.Truncated {
		return reply, nil
	}
	tcp := &dns.Client{Net: "tcp", Timeout: queryTimeout}
	reply, _, err = tcp.ExchangeContext(ctx, msg, server)
	if err != nil {
		return nil, fmt.Errorf("retry over TCP after a truncated answer: %w", err)
	}
	return reply, nil
}

// addrs returns the IPv4 and IPv6 addresses of host.
func (l *lookup) addrs(ctx context.Context, host string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, t := range []uint16{dns.TypeA, dns.TypeAAAA} {
		a, err := l.query(ctx, host, t)
		if err != nil {
			return nil, err
		}
		for _, rr := range a.rrs {
			var ip net.IP
			switch v := rr.(type) {
			case *dns.A:
				ip = v.A
			case *dns.AAAA:
				ip = v.AAAA
			}
			if addr, ok := netip.AddrFromSlice(ip); ok {
				out = append(out, addr.Unmap())
			}
		}
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return slices.Compact(out), nil
}

type checker struct {
	r       *lookup
	expMX   map[string][]string // domain -> expected MX targets
	checked map[question]bool   // record sets already compared
	diffs   []Difference
}

func (c *checker) report(r Record, p Problem, advisory bool, add string, remove []dns.RR, format string, args ...any) {
	d := Difference{
		Domain: r.Domain, Name: r.Name(), Type: r.Type(), Problem: p, Advisory: advisory,
		Message: fmt.Sprintf(format, args...), Add: add,
	}
	for _, rr := range remove {
		d.Remove = append(d.Remove, rr.String())
	}
	c.diffs = append(c.diffs, d)
}

func (c *checker) check(ctx context.Context, r Record, all []Record) error {
	name := r.Name()
	rrtype := r.RR.Header().Rrtype
	q := question{canonical(name), rrtype}
	if rrtype != dns.TypeTXT {
		// MX and SRV are compared as sets: the first record of a set
		// checks all of them.
		if c.checked[q] {
			return nil
		}
		c.checked[q] = true
	}
	a, err := c.r.query(ctx, name, rrtype)
	if err != nil {
		return err
	}
	if a.servfail {
		c.report(r, LookupFailed, false, r.String(), nil, "%s %s: the resolver answered SERVFAIL (broken delegation or DNSSEC?)", trim(name), r.Type())
		return nil
	}
	var set []Record
	for _, o := range all {
		if o.RR.Header().Rrtype == rrtype && canonical(o.Name()) == q.name {
			set = append(set, o)
		}
	}
	switch want := r.RR.(type) {
	case *dns.MX:
		c.checkMX(set, a.rrs)
	case *dns.SRV:
		c.checkSRV(set, a.rrs)
	case *dns.CNAME:
		return c.checkCNAME(ctx, r, want, a.rrs)
	case *dns.TXT:
		return c.checkTXT(ctx, r, strings.Join(want.Txt, ""), a.rrs)
	default:
		c.checkExact(r, a.rrs)
	}
	return nil
}

func (c *checker) checkMX(set []Record, got []dns.RR) {
	for _, r := range set {
		want := r.RR.(*dns.MX)
		found := false
		for _, rr := range got {
			if mx, ok := rr.(*dns.MX); ok && sameName(mx.Mx, want.Mx) {
				found = true
			}
		}
		switch {
		case found:
		case len(got) == 0:
			c.report(r, Missing, false, r.String(), nil, "%s has no MX record: mail for it cannot reach %s", trim(r.Name()), trim(want.Mx))
			continue
		default:
			c.report(r, Wrong, false, r.String(), got, "MX of %s points to %s, not to %s", trim(r.Name()), mxTargets(got), trim(want.Mx))
			continue
		}
		// A backup MX with a higher preference number is fine; one tried
		// before or alongside mailconf takes its mail.
		for _, rr := range got {
			mx, ok := rr.(*dns.MX)
			if !ok || sameName(mx.Mx, want.Mx) || mx.Preference > want.Preference || inSet(set, mx.Mx) {
				continue
			}
			c.report(r, Conflict, false, "", []dns.RR{rr}, "MX %s (preference %d) receives mail for %s before or alongside %s", trim(mx.Mx), mx.Preference, trim(r.Name()), trim(want.Mx))
		}
	}
}

func inSet(set []Record, target string) bool {
	for _, r := range set {
		if mx, ok := r.RR.(*dns.MX); ok && sameName(mx.Mx, target) {
			return true
		}
	}
	return false
}

func mxTargets(rrs []dns.RR) string {
	var out []string
	for _, rr := range rrs {
		if mx, ok := rr.(*dns.MX); ok {
			out = append(out, trim(mx.Mx))
		}
	}
	return strings.Join(out, ", ")
}

// checkSRV compares the SRV records of one owner name. Priority and weight
// are not compared: the target and port decide where a client connects.
func (c *checker) checkSRV(set []Record, got []dns.RR) {
	var live []*dns.SRV
	for _, rr := range got {
		if s, ok := rr.(*dns.SRV); ok {
			live = append(live, s)
		}
	}
	used := make([]bool, len(live))
	first := set[0]
	if null := set[0].RR.(*dns.SRV); null.Target == "." {
		for _, s := range live {
			if s.Target != "." {
				c.report(first, Conflict, false, first.String(), []dns.RR{s}, "%s advertises %s:%d, but %s does not offer this service", trim(first.Name()), trim(s.Target), s.Port, first.Domain)
				return
			}
		}
		if len(live) == 0 {
			c.report(first, Missing, first.Advisory, first.String(), nil, "%s is not published; the record tells clients the service is not offered", trim(first.Name()))
		}
		return
	}
	for _, r := range set {
		want := r.RR.(*dns.SRV)
		match, sameTarget := -1, -1
		for i, s := range live {
			if used[i] || !sameName(s.Target, want.Target) {
				continue
			}
			if s.Port == want.Port {
				match = i
				break
			}
			if sameTarget < 0 {
				sameTarget = i
			}
		}
		switch {
		case match >= 0:
			used[match] = true
		case sameTarget >= 0:
			used[sameTarget] = true
			s := live[sameTarget]
			c.report(r, Wrong, false, r.String(), []dns.RR{s}, "%s points to %s port %d, want port %d", trim(r.Name()), trim(s.Target), s.Port, want.Port)
		case len(live) == 0:
			c.report(r, Missing, r.Advisory, r.String(), nil, "%s is missing: clients that use SRV will not find %s:%d", trim(r.Name()), trim(want.Target), want.Port)
		default:
			var others []dns.RR
			for i, s := range live {
				if !used[i] {
					used[i] = true
					others = append(others, s)
				}
			}
			if len(others) == 0 {
				c.report(r, Missing, r.Advisory, r.String(), nil, "%s has no record for %s:%d", trim(r.Name()), trim(want.Target), want.Port)
				continue
			}
			c.report(r, Wrong, false, r.String(), others, "%s points to %s, want %s:%d", trim(r.Name()), srvTargets(others), trim(want.Target), want.Port)
		}
	}
	for i, s := range live {
		if used[i] {
			continue
		}
		if s.Target == "." {
			c.report(first, Conflict, false, "", []dns.RR{s}, "%s also says the service is not offered", trim(first.Name()))
		} else {
			c.report(first, Conflict, false, "", []dns.RR{s}, "%s also points to %s:%d; clients may connect there", trim(first.Name()), trim(s.Target), s.Port)
		}
	}
}

func srvTargets(rrs []dns.RR) string {
	var out []string
	for _, rr := range rrs {
		s, ok := rr.(*dns.SRV)
		switch {
		case !ok:
		case s.Target == ".":
			out = append(out, `"not offered"`)
		default:
			out = append(out, fmt.Sprintf("%s:%d", trim(s.Target), s.Port))
		}
	}
	return strings.Join(out, ", ")
}

// checkCNAME accepts the alias or, instead of it, address records equal to
// the target's (formats.md §4.3: A/AAAA work as well).
func (c *checker) checkCNAME(ctx context.Context, r Record, want *dns.CNAME, got []dns.RR) error {
	for _, rr := range got {
		if cn, ok := rr.(*dns.CNAME); ok {
			if sameName(cn.Target, want.Target) {
				return nil
			}
			c.report(r, Wrong, false, r.String(), []dns.RR{rr}, "%s is an alias of %s, want %s", trim(r.Name()), trim(cn.Target), trim(want.Target))
			return nil
		}
	}
	have, err := c.r.addrs(ctx, r.Name())
	if err != nil {
		return err
	}
	if len(have) == 0 {
		c.report(r, Missing, false, r.String(), nil, "%s does not resolve: clients cannot fetch their settings there", trim(r.Name()))
		return nil
	}
	target, err := c.r.addrs(ctx, want.Target)
	if err != nil {
		return err
	}
	if !slices.Equal(have, target) {
		c.report(r, Wrong, false, r.String(), nil, "%s has addresses %s, but %s has %s", trim(r.Name()), addrList(have), trim(want.Target), addrList(target))
	}
	return nil
}

func addrList(a []netip.Addr) string {
	if len(a) == 0 {
		return "none"
	}
	var s []string
	for _, x := range a {
		s = append(s, x.String())
	}
	return strings.Join(s, " ")
}

func liveTXT(got []dns.RR) []*dns.TXT {
	var out []*dns.TXT
	for _, rr := range got {
		if t, ok := rr.(*dns.TXT); ok {
			out = append(out, t)
		}
	}
	return out
}

func txtValue(t *dns.TXT) string { return strings.Join(t.Txt, "") }

// checkTXT compares by kind: only TXT records of the expected kind at the
// name count, so verification tokens and the like do not matter.
func (c *checker) checkTXT(ctx context.Context, r Record, want string, got []dns.RR) error {
	lw := strings.ToLower(want)
	switch {
	case hasTag(lw, "v=spf1"):
		return c.checkSPF(ctx, r, want, got)
	case hasTag(lw, "v=dmarc1"):
		c.checkDMARC(r, got)
	case hasTag(lw, "v=dkim1") || strings.Contains(canonical(r.Name()), "._domainkey."):
		c.checkDKIM(r, want, got)
	case strings.HasPrefix(lw, "path="):
		c.checkPrefixed(r, "path=", want, got, "context path")
	default:
		c.checkExact(r, got)
	}
	return nil
}

// hasTag reports whether a lower-cased TXT value starts with the version
// tag tag, followed by the end, a space or ';'.
func hasTag(v, tag string) bool {
	if !strings.HasPrefix(v, tag) {
		return false
	}
	rest := v[len(tag):]
	return rest == "" || rest[0] == ' ' || rest[0] == ';'
}

// versioned returns the TXT records in got whose value starts with the
// version tag (SPF, DMARC): other TXT records at the name do not count.
func versioned(got []dns.RR, tag string) []dns.RR {
	var out []dns.RR
	for _, t := range liveTXT(got) {
		if hasTag(strings.ToLower(txtValue(t)), tag) {
			out = append(out, t)
		}
	}
	return out
}

func (c *checker) checkPrefixed(r Record, prefix, want string, got []dns.RR, what string) {
	var matches []dns.RR
	for _, t := range liveTXT(got) {
		v := txtValue(t)
		if strings.HasPrefix(strings.ToLower(v), prefix) {
			if v == want {
				return
			}
			matches = append(matches, t)
		}
	}
	if len(matches) == 0 {
		c.report(r, Missing, r.Advisory, r.String(), nil, "%s has no %s record", trim(r.Name()), what)
		return
	}
	c.report(r, Wrong, false, r.String(), matches, "%s %s is %q, want %q", trim(r.Name()), what, txtValue(matches[0].(*dns.TXT)), want)
}

func (c *checker) checkExact(r Record, got []dns.RR) {
	for _, rr := range got {
		if dns.IsDuplicate(rr, r.RR) {
			return
		}
	}
	if len(got) == 0 {
		c.report(r, Missing, r.Advisory, r.String(), nil, "%s %s is missing", trim(r.Name()), r.Type())
		return
	}
	c.report(r, Wrong, false, r.String(), got, "%s %s differs", trim(r.Name()), r.Type())
}

func (c *checker) checkDMARC(r Record, got []dns.RR) {
	recs := versioned(got, "v=dmarc1")
	switch len(recs) {
	case 0:
		c.report(r, Missing, false, r.String(), nil, "%s has no DMARC record: receivers apply no policy to forged mail", trim(r.Name()))
		return
	case 1:
	default:
		c.report(r, Wrong, false, r.String(), recs, "%s has %d DMARC records; receivers ignore them all (RFC 7489 §6.6.3)", trim(r.Name()), len(recs))
		return
	}
	tags := parseTags(txtValue(recs[0].(*dns.TXT)))
	switch p := strings.ToLower(tags["p"]); p {
	case "quarantine", "reject":
	case "none":
		c.report(r, Wrong, true, r.String(), recs, "%s has p=none: forged mail is only reported, not held back", trim(r.Name()))
	case "":
		c.report(r, Wrong, false, r.String(), recs, "%s DMARC record has no p= policy, so receivers ignore it", trim(r.Name()))
	default:
		c.report(r, Wrong, false, r.String(), recs, "%s DMARC policy p=%s is invalid (want none, quarantine or reject)", trim(r.Name()), p)
	}
}

// parseTags splits "k=v; k=v" (DMARC, DKIM) into lower-cased keys.
func parseTags(v string) map[string]string {
	out := map[string]string{}
	for _, part := range strings.Split(v, ";") {
		k, val, ok := strings.Cut(part, "=")
		if !ok {
			continue
		}
		out[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(val)
	}
	return out
}

func (c *checker) checkDKIM(r Record, want string, got []dns.RR) {
	wantKey := stripSpace(parseTags(want)["p"])
	var keys []dns.RR
	for _, t := range liveTXT(got) {
		tags := parseTags(txtValue(t))
		if p, ok := tags["p"]; ok {
			if stripSpace(p) == wantKey {
				return
			}
			keys = append(keys, t)
		}
	}
	if len(keys) == 0 {
		c.report(r, Missing, false, r.String(), nil, "%s has no DKIM key: receivers cannot verify mailconf's signatures", trim(r.Name()))
		return
	}
	c.report(r, Wrong, false, r.String(), keys, "%s publishes a different DKIM key than the one mailconf signs with", trim(r.Name()))
}

func stripSpace(s string) string {
	return strings.Join(strings.Fields(s), "")
}

// checkSPF accepts any single SPF record that authorizes every sender of
// the suggested record and ends in -all or ~all; it does not demand the
// exact text.
func (c *checker) checkSPF(ctx context.Context, r Record, want string, got []dns.RR) error {
	recs := versioned(got, "v=spf1")
	switch len(recs) {
	case 0:
		c.report(r, Missing, false, r.String(), nil, "%s has no SPF record: receivers cannot tell which hosts send its mail", trim(r.Name()))
		return nil
	case 1:
	default:
		c.report(r, Wrong, false, r.String(), recs, "%s has %d SPF records, which receivers treat as an error (RFC 7208 §4.5)", trim(r.Name()), len(recs))
		return nil
	}
	live := parseSPF(txtValue(recs[0].(*dns.TXT)))
	if slices.Equal(live.terms, parseSPF(want).terms) {
		return nil
	}
	for _, term := range parseSPF(want).terms {
		if term.mech == "all" {
			continue
		}
		ok, err := c.spfCovers(ctx, r, live, term)
		if err != nil {
			return err
		}
		if !ok {
			c.report(r, Wrong, false, r.String(), recs, "SPF of %s does not authorize %s (%s), so its mail may be rejected", trim(r.Name()), c.spfHostsText(r, term), term)
			return nil
		}
	}
	switch all, found := live.all(); {
	case found && (all == '+' || all == '?'):
		c.report(r, Wrong, false, r.String(), recs, "SPF of %s ends in %call: any host may send as %s", trim(r.Name()), all, trim(r.Name()))
	case !found && !live.redirect:
		c.report(r, Wrong, true, r.String(), recs, "SPF of %s has no -all: mail from other hosts is not refused", trim(r.Name()))
	}
	return nil
}

type spfTerm struct {
	qual byte
	mech string // lower-cased, without the qualifier: "mx", "a:host", "ip4:net"
}

func (t spfTerm) String() string { return t.mech }

type spfRecord struct {
	terms    []spfTerm
	redirect bool
	// opaque: include:, exists:, ptr or redirect=, whose effect Check does
	// not evaluate; their presence makes the record plausibly right.
	opaque bool
}

func parseSPF(v string) spfRecord {
	var rec spfRecord
	fields := strings.Fields(strings.ToLower(v))
	for _, f := range fields[1:] {
		if strings.HasPrefix(f, "redirect=") {
			rec.redirect, rec.opaque = true, true
			continue
		}
		if strings.Contains(f, "=") && !strings.ContainsAny(f, ":/") {
			continue // other modifiers (exp=)
		}
		t := spfTerm{qual: '+', mech: f}
		if strings.ContainsRune("+-~?", rune(f[0])) {
			t.qual, t.mech = f[0], f[1:]
		}
		name, _, _ := strings.Cut(t.mech, ":")
		if name == "include" || name == "exists" || strings.HasPrefix(t.mech, "ptr") {
			rec.opaque = true
		}
		rec.terms = append(rec.terms, t)
	}
	return rec
}

func (s spfRecord) all() (byte, bool) {
	for _, t := range s.terms {
		if t.mech == "all" {
			return t.qual, true
		}
	}
	return 0, false
}

// spfHosts returns the host names a suggested mechanism stands for.
func (c *checker) spfHosts(r Record, t spfTerm) []string {
	name, arg, _ := strings.Cut(t.mech, ":")
	switch name {
	case "mx":
		if arg != "" {
			return c.expMX[canonical(arg)]
		}
		return c.expMX[canonical(r.Name())]
	case "a":
		if arg == "" {
			arg = r.Name()
		}
		return []string{arg}
	}
	return nil
}

func (c *checker) spfHostsText(r Record, t spfTerm) string {
	var out []string
	for _, h := range c.spfHosts(r, t) {
		out = append(out, trim(h))
	}
	if len(out) == 0 {
		return t.mech
	}
	return strings.Join(out, ", ")
}

// spfCovers reports whether the live record passes mail from the hosts the
// suggested mechanism t stands for.
func (c *checker) spfCovers(ctx context.Context, r Record, live spfRecord, t spfTerm) (bool, error) {
	domain := canonical(r.Name())
	hosts := c.spfHosts(r, t)
	var nets []netip.Prefix
	for _, lt := range live.terms {
		if lt.qual != '+' {
			continue
		}
		if lt.mech == t.mech {
			return true, nil
		}
		name, arg, _ := strings.Cut(lt.mech, ":")
		switch name {
		case "mx":
			if arg == "" || canonical(arg) == domain {
				if t.mech == "mx" {
					return true, nil
				}
				for _, h := range hosts {
					if slices.ContainsFunc(c.expMX[domain], func(m string) bool { return sameName(m, h) }) {
						return true, nil
					}
				}
			}
		case "a":
			target := domain
			if arg != "" {
				target = canonical(arg)
			}
			for _, h := range hosts {
				if sameName(h, target) {
					return true, nil
				}
			}
		case "ip4", "ip6":
			if p, err := netip.ParsePrefix(arg); err == nil {
				nets = append(nets, p.Masked())
			} else if a, err := netip.ParseAddr(arg); err == nil {
				nets = append(nets, netip.PrefixFrom(a, a.BitLen()))
			}
		}
	}
	if len(nets) > 0 && len(hosts) > 0 {
		all := true
		for _, h := range hosts {
			addrs, err := c.r.addrs(ctx, h)
			if err != nil {
				return false, err
			}
			for _, a := range addrs {
				if !slices.ContainsFunc(nets, func(p netip.Prefix) bool { return p.Contains(a) }) {
					all = false
				}
			}
			if len(addrs) == 0 {
				all = false
			}
		}
		if all {
			return true, nil
		}
	}
	return live.opaque, nil
}

func canonical(name string) string { return strings.ToLower(dns.Fqdn(name)) }

func sameName(a, b string) bool { return canonical(a) == canonical(b) }

func trim(name string) string { return strings.TrimSuffix(name, ".") }

// checkTargets makes sure every host the MX and SRV records name has an
// address and is not an alias: RFC 2181 §10.3 forbids MX and SRV targets
// that are CNAMEs, and some clients refuse them (clients.md §3).
func (c *checker) checkTargets(ctx context.Context, recs []Record) error {
	seen := map[string]bool{}
	for _, r := range recs {
		var target string
		switch v := r.RR.(type) {
		case *dns.MX:
			target = v.Mx
		case *dns.SRV:
			target = v.Target
		default:
			continue
		}
		host := canonical(target)
		if host == "." || seen[host] {
			continue
		}
		seen[host] = true
		alias, err := c.r.query(ctx, host, dns.TypeCNAME)
		if err != nil {
			return err
		}
		for _, rr := range alias.rrs {
			if cn, ok := rr.(*dns.CNAME); ok {
				c.diffs = append(c.diffs, Difference{
					Domain: r.Domain, Name: host, Type: "CNAME", Problem: Wrong, Advisory: true,
					Message: fmt.Sprintf("%s is an alias of %s; MX and SRV targets should have their own A/AAAA records (RFC 2181 §10.3)", trim(host), trim(cn.Target)),
					Remove:  []string{rr.String()},
				})
			}
		}
		addrs, err := c.r.addrs(ctx, host)
		if err != nil {
			return err
		}
		if len(addrs) == 0 {
			c.diffs = append(c.diffs, Difference{
				Domain: r.Domain, Name: host, Type: "A", Problem: Missing,
				Message: fmt.Sprintf("%s has no A or AAAA record: the %s records that name it lead nowhere", trim(host), r.Type()),
			})
		}
	}
	return nil
}
