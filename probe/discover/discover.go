// Package discover finds an address's mail settings the way real clients
// do - provider autoconfig over https and http, MX-derived autoconfig,
// Autodiscover POX, RFC 6186 SRV, and Thunderbird-style guessing as the
// last resort - runs every mechanism in parallel, records each attempt with
// its trust, and says what Thunderbird, Thunderbird for Android and
// Outlook would each configure (reference/probe.md §1, §4).
package discover

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/publicsuffix"

	"mailconf/autoconfig"
	"mailconf/probe/check"
	"mailconf/probe/dnsq"
	"mailconf/probe/report"
)

// Mechanism names (report.Discovery.Mechanism).
const (
	ProviderHTTPS      = "autoconfig.provider_https"
	WellKnownHTTPS     = "autoconfig.wellknown_https"
	ProviderHTTP       = "autoconfig.provider_http"
	WellKnownHTTP      = "autoconfig.wellknown_http"
	MXAutoconfig       = "autoconfig.mx"
	AutodiscoverDomain = "autodiscover.https_domain"
	AutodiscoverHost   = "autodiscover.https_autodiscover"
	AutodiscoverHTTP   = "autodiscover.http_redirect"
	AutodiscoverSRV    = "autodiscover.srv"
	SRV                = "srv"
	Guess              = "guess"
	// Published is no client's mechanism: it is what the mailconf running
	// the probe publishes for a domain it serves, so that its own servers
	// are tested even before DNS points clients at them.
	Published = "mailconf.published"
)

// Config is what discovery needs.
type Config struct {
	HTTP     *http.Client
	DNS      *dnsq.Client
	Recorder *report.Recorder
	Now      func() time.Time
	// Published is this server's own settings for the domain, when it
	// serves it (nil otherwise).
	Published *autoconfig.Settings
}

// DNSInfo are the lookups made before discovery.
type DNSInfo struct {
	MX  *dnsq.Result
	SRV map[string]*dnsq.Result // by service name ("_imaps._tcp")
}

// Candidate is one endpoint to check, merged over every source.
type Candidate struct {
	Endpoint     autoconfig.Endpoint
	Sources      []string
	Username     string
	UsernameForm string // email, localpart, other
	SRVOnly      bool
}

// Result is everything discovery found.
type Result struct {
	Attempts    []report.Discovery
	Candidates  []Candidate
	Clients     []report.ClientVerdict
	Consistency []report.Consistency
}

// attempt is one mechanism's outcome plus its parsed servers.
type attempt struct {
	rec      report.Discovery
	servers  []Server
	ok       bool // produced settings
	hasPlain bool
}

// Run runs every mechanism for addr in parallel.
func Run(ctx context.Context, cfg Config, addr autoconfig.Address, info DNSInfo) Result {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	d := addr.Domain
	q := "?emailaddress=" + url.QueryEscape(addr.String())
	type job struct {
		mech string
		prio float64
		run  func(*attempt)
	}
	jobs := []job{
		{ProviderHTTPS, 1.1, func(a *attempt) { autoconfigGet(ctx, cfg, a, "https://autoconfig."+d+"/mail/config-v1.1.xml"+q, d) }},
		{WellKnownHTTPS, 1.2, func(a *attempt) {
			autoconfigGet(ctx, cfg, a, "https://"+d+"/.well-known/autoconfig/mail/config-v1.1.xml"+q, d)
		}},
		// Over plain http the address is not sent: it would travel in clear.
		{ProviderHTTP, 1.3, func(a *attempt) { autoconfigGet(ctx, cfg, a, "http://autoconfig."+d+"/mail/config-v1.1.xml", d) }},
		{WellKnownHTTP, 1.4, func(a *attempt) {
			autoconfigGet(ctx, cfg, a, "http://"+d+"/.well-known/autoconfig/mail/config-v1.1.xml", d)
		}},
		{AutodiscoverDomain, 4.1, func(a *attempt) {
			autodiscoverPost(ctx, cfg, a, "https://"+d+"/autodiscover/autodiscover.xml", addr)
		}},
		{AutodiscoverHost, 4.2, func(a *attempt) {
			autodiscoverPost(ctx, cfg, a, "https://autodiscover."+d+"/autodiscover/autodiscover.xml", addr)
		}},
		{AutodiscoverHTTP, 4.3, func(a *attempt) {
			autodiscoverPost(ctx, cfg, a, "http://autodiscover."+d+"/autodiscover/autodiscover.xml", addr)
		}},
		{AutodiscoverSRV, 4.4, func(a *attempt) { autodiscoverSRV(ctx, cfg, a, addr) }},
	}
	for i, base := range mxDomains(info.MX, d) {
		base := base
		jobs = append(jobs, job{MXAutoconfig, 3.1 + float64(i)/10, func(a *attempt) {
			autoconfigGet(ctx, cfg, a, "https://autoconfig."+base+"/mail/config-v1.1.xml"+q, "")
			if a.rec.Trust == report.Trusted && !info.MX.AD {
				a.rec.Trust = report.UntrustedDNS
			}
		}})
	}
	atts := make([]*attempt, len(jobs))
	var wg sync.WaitGroup
	for i, j := range jobs {
		a := &attempt{rec: report.Discovery{Mechanism: j.mech, Priority: j.prio, Redirects: []string{}, Servers: []report.Server{}}}
		atts[i] = a
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("discovery.%02d", i+1)
			a.rec.StepID = id
			h := cfg.Recorder.Start(id, "discovery", title(j.mech), nil)
			t0 := time.Now()
			j.run(a)
			a.rec.DurationMS = time.Since(t0).Milliseconds()
			finishStep(h, a)
		}()
	}
	wg.Wait()
	srv := srvAttempt(info, d)
	srv.rec.StepID = "discovery.srv"
	h := cfg.Recorder.Start(srv.rec.StepID, "discovery", title(SRV), nil)
	finishStep(h, srv)
	atts = append(atts, srv)
	if cfg.Published != nil {
		pub := publishedAttempt(cfg.Published, addr)
		h := cfg.Recorder.Start(pub.rec.StepID, "discovery", title(Published), nil)
		finishStep(h, pub)
		atts = append(atts, pub)
	}

	var res Result
	for _, a := range atts {
		for _, s := range a.servers {
			a.rec.Servers = append(a.rec.Servers, report.Server{Protocol: s.Protocol, Host: s.Host, Port: s.Port, Security: s.Security, Username: s.Username, Auth: strings.Join(s.Auth, ",")})
		}
	}
	res.Candidates = merge(atts, addr)
	if len(res.Candidates) == 0 {
		g := guess(ctx, cfg, addr)
		g.rec.StepID = "discovery.guess"
		h := cfg.Recorder.Start(g.rec.StepID, "discovery", title(Guess), nil)
		finishStep(h, g)
		for _, s := range g.servers {
			g.rec.Servers = append(g.rec.Servers, report.Server{Protocol: s.Protocol, Host: s.Host, Port: s.Port, Security: s.Security})
		}
		atts = append(atts, g)
		res.Candidates = merge(atts, addr)
	}
	if len(res.Candidates) == 0 {
		h := cfg.Recorder.Start("discovery.none", "discovery", "Find any settings", nil)
		h.Fail(report.DiscoveryNone, "no discovery mechanism produced a server", nil)
	}
	sort.SliceStable(atts, func(i, j int) bool { return atts[i].rec.Priority < atts[j].rec.Priority })
	for _, a := range atts {
		res.Attempts = append(res.Attempts, a.rec)
	}
	res.Clients = verdicts(atts, addr)
	res.Consistency = consistency(atts)
	return res
}

// publishedAttempt turns this server's own settings into a discovery
// result. It comes last in priority: what clients can find ranks first.
func publishedAttempt(st *autoconfig.Settings, addr autoconfig.Address) *attempt {
	a := &attempt{ok: true, rec: report.Discovery{Mechanism: Published, Priority: 7, StepID: "discovery.published",
		Query: "the [[domain]] " + st.Domain + " of this server's config", Redirects: []string{}, Servers: []report.Server{},
		Status: report.StatusPass, Trust: report.Local}}
	login := st.LoginName(addr)
	for _, list := range [][]autoconfig.Endpoint{st.Incoming, st.Outgoing} {
		for _, e := range list {
			a.servers = append(a.servers, Server{Protocol: string(e.Protocol), Host: e.Host, Port: e.Port, Security: string(e.Security), Username: login})
		}
	}
	return a
}

func title(mech string) string {
	return map[string]string{
		ProviderHTTPS:      "Autoconfig at https://autoconfig.<domain>",
		WellKnownHTTPS:     "Autoconfig at https://<domain>/.well-known",
		ProviderHTTP:       "Autoconfig at http://autoconfig.<domain> (untrusted)",
		WellKnownHTTP:      "Autoconfig at http://<domain>/.well-known (untrusted)",
		MXAutoconfig:       "Autoconfig of the MX host's domain",
		AutodiscoverDomain: "Autodiscover at https://<domain>",
		Published:          "Settings this mailconf server publishes (its own config)",
		AutodiscoverHost:   "Autodiscover at https://autodiscover.<domain>",
		AutodiscoverHTTP:   "Autodiscover redirect from http://autodiscover.<domain>",
		AutodiscoverSRV:    "Autodiscover through the _autodiscover._tcp SRV record",
		SRV:                "RFC 6186 SRV records",
		Guess:              "Guess host names and ports (nothing else found servers)",
	}[mech]
}

func finishStep(h *report.Handle, a *attempt) {
	switch {
	case a.rec.Error != nil && a.rec.Status == report.StatusWarn:
		h.Warn(a.rec.Error.Class, a.rec.Error.Message, nil)
	case a.rec.Error != nil && a.rec.Status == report.StatusFail:
		h.Fail(a.rec.Error.Class, a.rec.Error.Message, nil)
	case a.rec.Status == report.StatusPass:
		h.Pass(fmt.Sprintf("%d servers", len(a.servers)))
	case a.rec.Status == report.StatusSkipped:
		h.Skip(detail(a))
	default:
		h.Info(detail(a))
	}
}

func detail(a *attempt) string {
	if a.rec.Error != nil {
		return a.rec.Error.Message
	}
	return "nothing found"
}

// notFound records an attempt that found nothing (normal for most
// mechanisms of most domains: info, not a failure).
func notFound(a *attempt, code report.Code, msg string) {
	a.rec.Status = report.StatusInfo
	a.rec.Error = &report.StepError{Class: code, Message: msg}
}

// broken records an attempt that found a misconfigured document.
func broken(a *attempt, code report.Code, msg string) {
	a.rec.Status = report.StatusWarn
	a.rec.Error = &report.StepError{Class: code, Message: msg}
}

func (a *attempt) fetchErr(err error, now time.Time) {
	code := check.ClassifyError(err, now)
	var noAddr *noAddressError
	if errors.As(err, &noAddr) {
		code = report.DNSNoAddress
	}
	switch code {
	case report.DNSNoAddress, report.NetRefused:
		notFound(a, code, err.Error())
	default:
		broken(a, code, err.Error())
	}
}

func (a *attempt) record(f *fetched) {
	a.rec.HTTPStatus = f.status
	a.rec.ContentType = f.contentType
	a.rec.Redirects = append([]string{}, f.redirects...)
	if f.tls != nil {
		a.rec.TLS = &report.TLSInfo{Version: tlsVersion(f.tls.Version), Cipher: cipherName(f.tls.CipherSuite)}
	}
	switch {
	case f.httpHop:
		a.rec.Trust = report.UntrustedHTTP
	default:
		// The transport verified the certificate, or the fetch failed.
		a.rec.Trust = report.Trusted
	}
}

func autoconfigGet(ctx context.Context, cfg Config, a *attempt, u, domain string) {
	a.rec.URL, a.rec.Method = u, http.MethodGet
	f, err := fetch(ctx, cfg.HTTP, http.MethodGet, u, nil, 5)
	if f != nil {
		a.record(f)
	}
	if err != nil {
		a.rec.Trust = ""
		a.fetchErr(err, cfg.Now())
		return
	}
	switch {
	case f.tooMany:
		broken(a, report.DiscoveryTooManyRedir, "more than 5 redirects")
		return
	case f.status == http.StatusNotFound:
		notFound(a, report.DiscoveryHTTPStatus, "HTTP 404")
		return
	case f.status != http.StatusOK:
		broken(a, report.DiscoveryHTTPStatus, fmt.Sprintf("HTTP %d", f.status))
		return
	case f.tooLarge:
		broken(a, report.DiscoveryTooLarge, "the document is larger than 256 KiB")
		return
	}
	ct := strings.ToLower(f.contentType)
	if !strings.HasPrefix(ct, "text/xml") && !strings.HasPrefix(ct, "application/xml") {
		broken(a, report.DiscoveryContentType, fmt.Sprintf("Content-Type %q: Thunderbird only parses text/xml or application/xml", f.contentType))
		return
	}
	ac, err := ParseAutoconfig(f.body)
	if err != nil {
		broken(a, report.DiscoveryInvalid, err.Error())
		return
	}
	a.servers = append(append([]Server{}, ac.Incoming...), ac.Outgoing...)
	for _, s := range a.servers {
		a.hasPlain = a.hasPlain || s.Security == "plain"
	}
	a.ok = len(ac.Incoming) > 0 && len(ac.Outgoing) > 0
	if domain != "" {
		claims := false
		for _, dd := range ac.Domains {
			claims = claims || strings.EqualFold(strings.TrimSpace(dd), domain)
		}
		a.rec.ClaimsDomain = &claims
		if !claims {
			broken(a, report.DiscoveryDomainMismatch, fmt.Sprintf("the document lists %s, not %s", strings.Join(ac.Domains, ", "), domain))
			return
		}
	}
	if !a.ok {
		broken(a, report.DiscoveryInvalid, "Thunderbird needs both an incoming and an outgoing server")
		return
	}
	a.rec.Status = report.StatusPass
}

func autodiscoverPost(ctx context.Context, cfg Config, a *attempt, u string, addr autoconfig.Address) {
	a.rec.URL, a.rec.Method = u, http.MethodPost
	body := autodiscoverRequest(addr.String())
	if strings.HasPrefix(u, "http:") {
		// Only a redirect to https is usable; never POST the address in clear.
		f, err := fetch(ctx, cfg.HTTP, http.MethodGet, u, nil, 0)
		if err != nil {
			a.fetchErr(err, cfg.Now())
			return
		}
		a.record(f)
		if len(f.redirects) == 0 {
			notFound(a, report.DiscoveryHTTPStatus, fmt.Sprintf("HTTP %d, no redirect to https", f.status))
			return
		}
		next := f.redirects[0]
		if !strings.HasPrefix(next, "https://") {
			broken(a, report.DiscoveryHTTPStatus, "redirects to "+next+", not https")
			return
		}
		u = next
	}
	f, err := fetch(ctx, cfg.HTTP, http.MethodPost, u, body, 10)
	if f != nil {
		prev := a.rec.Redirects
		a.record(f)
		a.rec.Redirects = append(prev, a.rec.Redirects...)
		if len(prev) > 0 {
			// The first hop was plain http; Outlook asks the user first.
			a.rec.Trust = report.UntrustedHTTP
		}
	}
	if err != nil {
		a.rec.Trust = ""
		a.fetchErr(err, cfg.Now())
		return
	}
	switch {
	case f.tooMany:
		broken(a, report.DiscoveryTooManyRedir, "more than 10 redirects")
		return
	case f.status == http.StatusUnauthorized:
		// Outlook would now prompt for the password; the endpoint exists.
		notFound(a, report.DiscoveryHTTPStatus, "HTTP 401: the server wants credentials (the probe never sends them to Autodiscover)")
		return
	case f.status != http.StatusOK:
		notFound(a, report.DiscoveryHTTPStatus, fmt.Sprintf("HTTP %d", f.status))
		return
	case f.tooLarge:
		broken(a, report.DiscoveryTooLarge, "the document is larger than 256 KiB")
		return
	}
	ad, err := ParseAutodiscover(f.body)
	if err != nil {
		broken(a, report.DiscoveryInvalid, err.Error())
		return
	}
	if ad.ErrorCode != "" {
		broken(a, report.DiscoveryInvalid, fmt.Sprintf("Autodiscover error %s: %s", ad.ErrorCode, ad.ErrorMessage))
		return
	}
	a.servers = ad.Servers
	hasIn, hasOut := false, false
	for _, s := range ad.Servers {
		hasIn = hasIn || s.Protocol != "smtp"
		hasOut = hasOut || s.Protocol == "smtp"
	}
	a.ok = hasIn && hasOut
	if len(ad.Servers) == 0 {
		broken(a, report.DiscoveryInvalid, "no IMAP, POP3 or SMTP settings (action "+ad.Action+")")
		return
	}
	a.rec.Status = report.StatusPass
}

func autodiscoverSRV(ctx context.Context, cfg Config, a *attempt, addr autoconfig.Address) {
	name := "_autodiscover._tcp." + addr.Domain + "."
	a.rec.Query = name + " SRV"
	res := cfg.DNS.Query(ctx, name, dns.TypeSRV)
	srvs := res.SRVs()
	if len(srvs) == 0 || res.Disabled() {
		if c := res.Code(); c != "" {
			notFound(a, c, "no _autodiscover._tcp record")
		} else {
			notFound(a, report.DNSSRVDisabled, "_autodiscover._tcp is disabled (target \".\")")
		}
		return
	}
	target := strings.TrimSuffix(srvs[0].Target, ".")
	autodiscoverPost(ctx, cfg, a, "https://"+target+"/autodiscover/autodiscover.xml", addr)
	a.rec.Query = name + " SRV"
	if a.rec.Trust == report.Trusted && !res.AD {
		a.rec.Trust = report.UntrustedDNS
	}
}

// mxDomains are Thunderbird's MX-derived autoconfig domains: the most
// preferred MX host minus its first label, then its registrable domain,
// unless that is the email domain itself.
func mxDomains(mx *dnsq.Result, domain string) []string {
	if mx == nil {
		return nil
	}
	list := mx.MXs()
	if len(list) == 0 || list[0].Host == "." {
		return nil
	}
	host := strings.TrimSuffix(list[0].Host, ".")
	base, err := publicsuffix.EffectiveTLDPlusOne(host)
	if err != nil || strings.EqualFold(base, domain) {
		return nil
	}
	var out []string
	if _, parent, ok := strings.Cut(host, "."); ok && parent != base && strings.Contains(parent, ".") {
		out = append(out, parent)
	}
	return append(out, base)
}

func srvAttempt(info DNSInfo, domain string) *attempt {
	a := &attempt{rec: report.Discovery{Mechanism: SRV, Priority: 5, Query: "_imaps _imap _pop3s _pop3 _submissions _submission ._tcp." + domain, Redirects: []string{}, Servers: []report.Server{}}}
	allAD := true
	for _, s := range autoconfig.SRVServices() {
		res := info.SRV[s.Label]
		if res == nil {
			continue
		}
		for _, r := range res.SRVs() {
			if r.Target == "." {
				continue
			}
			allAD = allAD && res.AD
			a.servers = append(a.servers, Server{Protocol: string(s.Protocol), Host: strings.TrimSuffix(r.Target, "."), Port: int(r.Port), Security: string(s.Security)})
		}
	}
	if len(a.servers) == 0 {
		notFound(a, report.DNSNoData, "no usable RFC 6186 SRV records")
		return a
	}
	a.rec.Status = report.StatusPass
	a.rec.Trust = report.UntrustedDNS
	if allAD {
		a.rec.Trust = report.Trusted
	}
	return a
}

// guess tries Thunderbird's host names, keeping the first that resolves
// per protocol, with the implicit-TLS and STARTTLS ports.
func guess(ctx context.Context, cfg Config, addr autoconfig.Address) *attempt {
	d := addr.Domain
	a := &attempt{rec: report.Discovery{Mechanism: Guess, Priority: 6, Query: "imap. pop3. pop. mail. smtp. " + d, Redirects: []string{}, Servers: []report.Server{}}}
	// Guessing runs when nothing else worked, often for a domain whose DNS
	// is slow or broken: ask for every name at once, then choose in
	// Thunderbird's order.
	names := []string{"imap." + d, "mail." + d, d, "pop3." + d, "pop." + d, "smtp." + d}
	resolves := make(map[string]bool, len(names))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, h := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := resolve(ctx, cfg.DNS, h)
			mu.Lock()
			resolves[h] = err == nil
			mu.Unlock()
		}()
	}
	wg.Wait()
	pick := func(hosts ...string) string {
		for _, h := range hosts {
			if resolves[h] {
				return h
			}
		}
		return ""
	}
	if h := pick("imap."+d, "mail."+d, d); h != "" {
		a.servers = append(a.servers, Server{Protocol: "imap", Host: h, Port: 993, Security: "tls"}, Server{Protocol: "imap", Host: h, Port: 143, Security: "starttls"})
	}
	if h := pick("pop3."+d, "pop."+d, "mail."+d, d); h != "" {
		a.servers = append(a.servers, Server{Protocol: "pop3", Host: h, Port: 995, Security: "tls"}, Server{Protocol: "pop3", Host: h, Port: 110, Security: "starttls"})
	}
	if h := pick("smtp."+d, "mail."+d, d); h != "" {
		a.servers = append(a.servers, Server{Protocol: "smtp", Host: h, Port: 465, Security: "tls"}, Server{Protocol: "smtp", Host: h, Port: 587, Security: "starttls"})
	}
	if len(a.servers) == 0 {
		notFound(a, report.DNSNoAddress, "none of the usual host names resolves")
		return a
	}
	a.rec.Status = report.StatusPass
	a.rec.Trust = report.UntrustedDNS
	return a
}

// expand replaces autoconfig placeholders in a username.
func expand(u string, addr autoconfig.Address) (string, string) {
	if u == "" {
		return addr.String(), "email"
	}
	v := strings.NewReplacer("%EMAILADDRESS%", addr.String(), "%EMAILLOCALPART%", addr.Local, "%EMAILDOMAIN%", addr.Domain).Replace(u)
	switch v {
	case addr.String():
		return v, "email"
	case addr.Local:
		return v, "localpart"
	}
	return v, "other"
}

// merge de-duplicates servers by (protocol, host, port, security) in
// source priority order; plain-text servers are not candidates (no
// password may cross them).
func merge(atts []*attempt, addr autoconfig.Address) []Candidate {
	sorted := append([]*attempt{}, atts...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].rec.Priority < sorted[j].rec.Priority })
	idx := map[autoconfig.Endpoint]int{}
	var out []Candidate
	for _, a := range sorted {
		if a.rec.Status != report.StatusPass && a.rec.Status != report.StatusWarn {
			continue
		}
		if a.rec.Status == report.StatusWarn && a.rec.Error != nil && a.rec.Error.Class != report.DiscoveryDomainMismatch {
			continue
		}
		for _, s := range a.servers {
			if s.Security == "plain" {
				continue
			}
			ep := autoconfig.Endpoint{Protocol: autoconfig.Protocol(s.Protocol), Host: strings.TrimSuffix(s.Host, "."), Port: s.Port, Security: autoconfig.Security(s.Security)}
			if i, ok := idx[ep]; ok {
				if !contains(out[i].Sources, a.rec.Mechanism) {
					out[i].Sources = append(out[i].Sources, a.rec.Mechanism)
				}
				out[i].SRVOnly = false
				continue
			}
			user, form := expand(s.Username, addr)
			idx[ep] = len(out)
			out = append(out, Candidate{Endpoint: ep, Sources: []string{a.rec.Mechanism}, Username: user, UsernameForm: form, SRVOnly: a.rec.Mechanism == SRV})
		}
	}
	rank := map[autoconfig.Protocol]int{autoconfig.IMAP: 0, autoconfig.POP3: 1, autoconfig.SMTP: 2}
	sort.SliceStable(out, func(i, j int) bool { return rank[out[i].Endpoint.Protocol] < rank[out[j].Endpoint.Protocol] })
	return out
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func toSetting(s Server, addr autoconfig.Address) *report.Setting {
	user, _ := expand(s.Username, addr)
	sec := map[string]string{"tls": "implicit_tls", "starttls": "starttls", "plain": "plain"}[s.Security]
	return &report.Setting{Protocol: s.Protocol, Host: s.Host, Port: s.Port, Security: sec, Auth: "password", Username: user}
}

// verdicts applies each client's rules to the attempts.
func verdicts(atts []*attempt, addr autoconfig.Address) []report.ClientVerdict {
	by := map[string][]*attempt{}
	for _, a := range atts {
		by[a.rec.Mechanism] = append(by[a.rec.Mechanism], a)
	}
	choose := func(client string, mechs []string, skipPlainFiles bool, note string) report.ClientVerdict {
		v := report.ClientVerdict{Client: client, Note: note}
		for _, m := range mechs {
			for _, a := range by[m] {
				if a.rec.Status != report.StatusPass || !a.ok || (skipPlainFiles && a.hasPlain) {
					continue
				}
				for _, s := range a.servers {
					if s.Protocol == "smtp" && v.Outgoing == nil {
						v.Outgoing = toSetting(s, addr)
					}
					if s.Protocol != "smtp" && v.Incoming == nil {
						v.Incoming = toSetting(s, addr)
					}
				}
				v.Source = m
				return v
			}
		}
		v.Note = "finds no settings: the user must enter them by hand"
		return v
	}
	return []report.ClientVerdict{
		choose("thunderbird", []string{ProviderHTTPS, WellKnownHTTPS, ProviderHTTP, WellKnownHTTP, MXAutoconfig, AutodiscoverDomain, AutodiscoverHost, AutodiscoverHTTP, AutodiscoverSRV, Guess}, false, ""),
		choose("thunderbird_android", []string{ProviderHTTPS, WellKnownHTTPS, ProviderHTTP, WellKnownHTTP, MXAutoconfig}, true, ""),
		choose("outlook", []string{AutodiscoverDomain, AutodiscoverHost, AutodiscoverHTTP, AutodiscoverSRV}, false, ""),
	}
}

// consistency compares the preferred incoming and outgoing server of each
// source family.
func consistency(atts []*attempt) []report.Consistency {
	family := func(m string) string {
		switch {
		case strings.HasPrefix(m, "autoconfig."):
			return "autoconfig"
		case strings.HasPrefix(m, "autodiscover."):
			return "autodiscover"
		case m == SRV:
			return "srv"
		case m == Published:
			return "published"
		}
		return ""
	}
	out := []report.Consistency{}
	for _, field := range []string{"incoming", "outgoing"} {
		vals := map[string]string{}
		for _, a := range atts {
			f := family(a.rec.Mechanism)
			if f == "" || a.rec.Status != report.StatusPass || vals[f] != "" {
				continue
			}
			for _, s := range a.servers {
				if (field == "outgoing") == (s.Protocol == "smtp") {
					vals[f] = fmt.Sprintf("%s %s:%d %s", s.Protocol, s.Host, s.Port, s.Security)
					break
				}
			}
		}
		distinct := map[string]bool{}
		for _, v := range vals {
			if v != "" {
				distinct[v] = true
			}
		}
		if len(distinct) > 1 {
			out = append(out, report.Consistency{Field: field + " server", Values: vals, Severity: "low"})
		}
	}
	return out
}
