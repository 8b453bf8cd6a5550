// Package probe answers "my mail doesn't work" in one run: it looks up an
// address's DNS, discovers its settings the way Thunderbird, Thunderbird
// for Android and Outlook would, checks every candidate endpoint on every
// address (TLS, certificate, capabilities, one login, a read-only session)
// and returns a report with a stable failure code per step
// (reference/probe.md). It works against any mail server.
//
// Callers: the CLI (`mailconf probe`, Options.Policy.Unrestricted) and the
// HTTP API (a restricted policy). Run is safe for concurrent use.
package probe

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/idna"

	"mailconf/autoconfig"
	"mailconf/probe/check"
	"mailconf/probe/discover"
	"mailconf/probe/dnsq"
	"mailconf/probe/netguard"
	"mailconf/probe/report"
)

// Request is what to probe.
type Request struct {
	Address  string
	Password report.Secret // zero: no login tests
}

// Options configure one run.
type Options struct {
	// Resolver is "host:port" of the DNS resolver; "" uses /etc/resolv.conf.
	Resolver string
	// RootCAs are the trust anchors for mail and web servers; nil means
	// the system roots.
	RootCAs *x509.CertPool
	Policy  netguard.Policy
	// AuthAllowed permits the login test when a password is given (the
	// API's policy decision); AuthReason explains it in the report.
	AuthAllowed bool
	AuthReason  string
	// Timeout bounds the whole probe (default 90 s).
	Timeout  time.Duration
	Timeouts check.Timeouts
	// Progress sees every step as it starts and finishes (may be nil); it
	// must not block for long.
	Progress func(report.Step)
	Logger   *slog.Logger
	// Deep adds the STARTTLS command-injection test.
	Deep bool
	// EHLOName is the name the probe greets SMTP servers with.
	EHLOName string
	// Concurrency bounds parallel endpoint checks (default 8).
	Concurrency int
	// PortMap and Now are for hermetic tests: logical port → real port,
	// and the clock for certificate validity.
	PortMap map[int]int
	Now     func() time.Time
	// Published is the catalog of the mailconf running the probe: for a
	// domain it serves, its published settings are tested too, so a fresh
	// install is probed end to end before DNS points clients at it.
	Published *autoconfig.Catalog
}

// ErrAddress is returned for an address that cannot be probed.
var ErrAddress = autoconfig.ErrAddress

// Run probes one address. It returns an error only for bad input; every
// problem found on the way is in the report.
func Run(ctx context.Context, req Request, opts Options) (*report.Report, error) {
	addr, err := autoconfig.ParseAddress(req.Address)
	if err != nil {
		return nil, fmt.Errorf("probe: %w", err)
	}
	resolver, err := dnsq.New(opts.Resolver)
	if err != nil {
		return nil, fmt.Errorf("probe: %w", err)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 90 * time.Second
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 8
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	start := time.Now()
	rep := newReport(addr, req, opts, resolver)
	log.Info("probe start", "id", rep.ID, "address", rep.Input.AddressMasked, "password", req.Password, "mode", rep.Input.Mode)
	rec := report.NewRecorder(opts.Progress)
	dialer := &netguard.Dialer{Policy: opts.Policy, Timeout: 5 * time.Second, PortMap: opts.PortMap}

	info := lookups(ctx, resolver, addr, rec, rep)
	rec.Start("discovery", "", "Discover settings as mail clients do", nil)
	dcfg := discover.Config{
		HTTP:     discover.NewHTTPClient(dialer, resolver, opts.RootCAs, 10*time.Second),
		DNS:      resolver,
		Recorder: rec,
		Now:      opts.Now,
	}
	if opts.Published != nil {
		if st, ok := opts.Published.Lookup(addr.Domain); ok {
			dcfg.Published = st
		}
	}
	disc := discover.Run(ctx, dcfg, addr, info)
	finishGroup(rec, "discovery")
	rep.Discovery, rep.Summary.Clients, rep.Consistency = disc.Attempts, disc.Clients, disc.Consistency
	if rep.Consistency == nil {
		rep.Consistency = []report.Consistency{}
	}

	ccfg := &check.Config{
		Dialer: dialer, RootCAs: opts.RootCAs, Timeouts: opts.Timeouts, Now: opts.Now,
		EHLOName: opts.EHLOName, Address: addr, Password: req.Password,
		AuthAllowed: opts.AuthAllowed, Deep: opts.Deep, Logger: log,
	}
	checkEndpoints(ctx, resolver, ccfg, disc.Candidates, rec, rep, opts.Concurrency)

	rep.Steps = rec.Steps()
	summarize(rep, addr, disc.Candidates)
	rep.DurationMS = time.Since(start).Milliseconds()
	log.Info("probe done", "id", rep.ID, "status", string(rep.Summary.Status), "duration_ms", rep.DurationMS)
	return rep, nil
}

func newReport(addr autoconfig.Address, req Request, opts Options, r *dnsq.Client) *report.Report {
	var id [8]byte
	_, _ = rand.Read(id[:])
	uni, err := idna.ToUnicode(addr.Domain)
	if err != nil {
		uni = addr.Domain
	}
	mode := "discover"
	if !req.Password.IsZero() {
		mode = "auth"
	}
	reason := opts.AuthReason
	if reason == "" {
		reason = "operator"
	}
	return &report.Report{
		Schema: report.Schema, ID: hex.EncodeToString(id[:]), CreatedAt: time.Now().UTC(),
		Input: report.Input{
			AddressMasked: Mask(addr), Domain: addr.Domain, DomainUnicode: uni,
			EAI: !isASCII(addr.Local), Mode: mode, PasswordSupplied: !req.Password.IsZero(),
		},
		Policy:  report.Policy{AuthAllowed: opts.AuthAllowed, Reason: reason, Unrestricted: opts.Policy.Unrestricted},
		Vantage: report.Vantage{Resolver: r.Server},
		DNS:     []report.DNSQuery{}, Discovery: []report.Discovery{}, Endpoints: []report.Endpoint{},
		Findings: []report.Finding{}, Transcripts: []report.Transcript{},
	}
}

// Mask hides most of the local part: "j***@example.com".
func Mask(a autoconfig.Address) string {
	r := []rune(a.Local)
	return string(r[:1]) + "***@" + a.Domain
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// finishGroup re-starts a group step with its original id and gives it
// the worst status of its children.
func finishGroup(rec *report.Recorder, id string) {
	s, ok := rec.Get(id)
	if !ok {
		return
	}
	worst := report.StatusPass
	for _, c := range rec.Steps() {
		if c.Parent == id && rank(c.Status) > rank(worst) {
			worst = c.Status
		}
	}
	h := rec.Start(id, s.Parent, s.Title, s.Target)
	if worst == report.StatusFail || worst == report.StatusError || worst == report.StatusWarn {
		h.Finish(worst, "", "see the steps below", nil)
		return
	}
	h.Pass("")
}

func rank(s report.Status) int {
	return map[report.Status]int{report.StatusWarn: 1, report.StatusError: 2, report.StatusFail: 3}[s]
}

// lookups runs the DNS questions of reference/probe.md §4 step 3 in
// parallel and records each.
func lookups(ctx context.Context, r *dnsq.Client, addr autoconfig.Address, rec *report.Recorder, rep *report.Report) discover.DNSInfo {
	rec.Start("dns", "", "Look up DNS", nil)
	d := addr.Domain
	type q struct {
		name  string
		qtype uint16
		kind  string // mx, srv, host
	}
	qs := []q{{d, dns.TypeMX, "mx"}}
	for _, s := range autoconfig.SRVServices() {
		qs = append(qs, q{s.Label + "." + d, dns.TypeSRV, "srv"})
	}
	qs = append(qs, q{"_autodiscover._tcp." + d, dns.TypeSRV, "srv"})
	for _, h := range []string{"autoconfig." + d, "autodiscover." + d} {
		qs = append(qs, q{h, dns.TypeA, "host"}, q{h, dns.TypeAAAA, "host"})
	}
	results := make([]*dnsq.Result, len(qs))
	var wg sync.WaitGroup
	for i, qq := range qs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = r.Query(ctx, qq.name, qq.qtype)
		}()
	}
	wg.Wait()
	info := discover.DNSInfo{SRV: map[string]*dnsq.Result{}}
	for i, qq := range qs {
		res := results[i]
		rep.DNS = append(rep.DNS, res.Record())
		id := fmt.Sprintf("dns.%02d", i+1)
		h := rec.Start(id, "dns", fmt.Sprintf("%s %s", strings.TrimSuffix(res.Name, "."), dnsq.TypeName(qq.qtype)), nil)
		code := res.Code()
		switch qq.kind {
		case "mx":
			info.MX = res
			switch {
			case code == report.DNSNXDomain:
				h.Fail(code, d+" does not exist", nil)
			case code == report.DNSNoData:
				h.Warn(code, d+" has no MX records: it receives no mail", nil)
			case code != "":
				dnsProblem(h, code, res)
			case res.NullMX():
				h.Warn(report.DNSNullMX, d+" publishes a null MX: it accepts no mail", nil)
			default:
				h.Pass(strings.Join(res.Strings(), ", "))
				targetChecks(ctx, r, rec, id, hosts(res), rep)
			}
		case "srv":
			name := strings.TrimSuffix(strings.TrimSuffix(res.Name, "."), "."+d)
			info.SRV[name] = res
			switch {
			case code == report.DNSNXDomain || code == report.DNSNoData:
				h.Info("no record")
			case code != "":
				dnsProblem(h, code, res)
			case res.Disabled():
				h.Finish(report.StatusInfo, report.DNSSRVDisabled, name+" is declared not available (target \".\")", nil)
			default:
				h.Pass(strings.Join(res.Strings(), ", "))
				var ts []string
				for _, s := range res.SRVs() {
					ts = append(ts, s.Target)
				}
				targetChecks(ctx, r, rec, id, ts, rep)
			}
		default:
			switch {
			case code == report.DNSNXDomain || code == report.DNSNoData:
				h.Info("no record")
			case code != "":
				dnsProblem(h, code, res)
			default:
				h.Pass(strings.Join(append(res.CNAMEs, res.Strings()...), " → "))
			}
		}
	}
	rep.Vantage.ResolverValidatesDNSSEC = info.MX != nil && info.MX.AD
	finishGroup(rec, "dns")
	return info
}

func dnsProblem(h *report.Handle, code report.Code, res *dnsq.Result) {
	msg := fmt.Sprintf("%s %s: %s", res.Name, dnsq.TypeName(res.Type), code)
	if res.Err != nil {
		msg = res.Err.Error()
	}
	if code == report.DNSBogus {
		h.Fail(code, msg, nil)
		return
	}
	h.Finish(report.StatusError, code, msg, nil)
}

func hosts(res *dnsq.Result) []string {
	var out []string
	for _, m := range res.MXs() {
		out = append(out, m.Host)
	}
	return out
}

// targetChecks flags MX/SRV targets that are CNAMEs (RFC 2181 §10.3).
func targetChecks(ctx context.Context, r *dnsq.Client, rec *report.Recorder, parent string, targets []string, rep *report.Report) {
	for i, t := range targets {
		if t == "." || t == "" {
			continue
		}
		res := r.Query(ctx, t, dns.TypeA)
		if len(res.CNAMEs) > 0 {
			rep.DNS = append(rep.DNS, res.Record())
			h := rec.Start(fmt.Sprintf("%s.target%d", parent, i+1), parent, "Check that "+strings.TrimSuffix(t, ".")+" is not a CNAME", nil)
			h.Warn(report.DNSCNAMETarget, fmt.Sprintf("%s is a CNAME for %s", t, res.CNAMEs[len(res.CNAMEs)-1]), nil)
		}
	}
}

// checkEndpoints resolves every candidate host and checks every
// (endpoint, address) pair in parallel, at most conc at a time.
func checkEndpoints(ctx context.Context, r *dnsq.Client, cfg *check.Config, cands []discover.Candidate, rec *report.Recorder, rep *report.Report, conc int) {
	if len(cands) == 0 {
		return
	}
	rec.Start("endpoints", "", "Check every endpoint on every address", nil)
	type job struct {
		ep, ip int
		t      check.Target
	}
	var jobs []job
	var ranks []int
	var protos []autoconfig.Protocol
	addrs := map[string][]netip.Addr{}
	for i, c := range cands {
		e := c.Endpoint
		epID := fmt.Sprintf("ep%02d", i+1)
		rep.Endpoints = append(rep.Endpoints, report.Endpoint{
			Protocol: string(e.Protocol), Host: e.Host, Port: e.Port, Security: securityName(e.Security),
			Sources: c.Sources, StepID: epID, IPs: []report.EndpointIP{},
		})
		rec.Start(epID, "endpoints", fmt.Sprintf("%s %s port %d (%s)", strings.ToUpper(string(e.Protocol)), e.Host, e.Port, securityName(e.Security)), &report.Target{Host: e.Host, Port: e.Port})
		ips, ok := addrs[e.Host]
		if !ok {
			ips = resolveHost(ctx, r, rec, epID, e.Host, rep)
			addrs[e.Host] = ips
		} else if len(ips) == 0 {
			h := rec.Start(epID+".resolve", epID, "Resolve "+e.Host, &report.Target{Host: e.Host})
			h.Fail(report.DNSNoAddress, e.Host+" has no A or AAAA record", nil)
		}
		for j, ip := range ips {
			id := fmt.Sprintf("%s.ip%02d", epID, j+1)
			rank := len(jobs)
			rec.Start(id, epID, fmt.Sprintf("%s on %s", e.Host, ip), &report.Target{Host: e.Host, IP: ip.String(), Port: e.Port})
			jobs = append(jobs, job{ep: i, ip: j, t: check.Target{
				Endpoint: e, IP: ip, Username: c.Username, UsernameForm: c.UsernameForm, SRVOnly: c.SRVOnly,
				Rank: rank, StepID: id, TranscriptID: fmt.Sprintf("t%d", rank+1),
			}})
			ranks = append(ranks, rank)
			protos = append(protos, e.Protocol)
		}
	}
	cfg.Gate = check.NewGate([]autoconfig.Protocol{autoconfig.IMAP, autoconfig.POP3, autoconfig.SMTP}, ranks, protos)
	results := make([]check.Result, len(jobs))
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	// Slots are taken strictly in rank order: a check waiting in the gate
	// for better-ranked checks then never blocks them from a slot.
	for k, j := range jobs {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			cfg.Gate.Done(j.t.Rank, false, "", false)
			results[k] = check.Check(ctx, cfg, j.t, rec)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			results[k] = check.Check(ctx, cfg, j.t, rec)
		}()
	}
	wg.Wait()
	for k, j := range jobs {
		res := results[k]
		if res.IP.IP == "" {
			continue
		}
		ep := &rep.Endpoints[j.ep]
		ep.IPs = append(ep.IPs, res.IP)
		rep.Transcripts = append(rep.Transcripts, res.Transcript)
		finishGroup(rec, j.t.StepID)
	}
	for i := range rep.Endpoints {
		ep := &rep.Endpoints[i]
		finishGroup(rec, ep.StepID)
		s, _ := rec.Get(ep.StepID)
		ep.Status = s.Status
	}
	finishGroup(rec, "endpoints")
}

func securityName(s autoconfig.Security) string {
	if s == autoconfig.TLS {
		return "implicit_tls"
	}
	return string(s)
}

func resolveHost(ctx context.Context, r *dnsq.Client, rec *report.Recorder, parent, host string, rep *report.Report) []netip.Addr {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip}
	}
	h := rec.Start(parent+".resolve", parent, "Resolve "+host, &report.Target{Host: host})
	ips, results := r.Lookup(ctx, host)
	if results == nil {
		h.Pass("loopback (RFC 6761 special name)")
		return ips
	}
	var codes []report.Code
	for _, res := range results {
		rep.DNS = append(rep.DNS, res.Record())
		if c := res.Code(); c != "" && c != report.DNSNoData && c != report.DNSNXDomain {
			codes = append(codes, c)
		}
	}
	switch {
	case len(ips) > 0:
		var s []string
		for _, ip := range ips {
			s = append(s, ip.String())
		}
		h.Pass(strings.Join(s, ", "))
	case len(codes) > 0:
		h.Finish(report.StatusError, codes[0], host+": "+string(codes[0]), nil)
	default:
		h.Fail(report.DNSNoAddress, host+" has no A or AAAA record", nil)
	}
	return ips
}
