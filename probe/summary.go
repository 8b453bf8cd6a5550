package probe

import (
	"fmt"
	"sort"
	"strings"

	"mailconf/autoconfig"
	"mailconf/probe/discover"
	"mailconf/probe/report"
)

func works(s report.Status) bool { return s == report.StatusPass || s == report.StatusWarn }

// summarize fills the summary card and the findings from the steps.
func summarize(rep *report.Report, addr autoconfig.Address, cands []discover.Candidate) {
	sum := &rep.Summary
	sum.Counts = map[report.Status]int{}
	for _, s := range rep.Steps {
		sum.Counts[s.Status]++
	}
	working := map[string]bool{} // "proto host port security" with a working address
	anyFail := false
	type tally struct{ ok, all int }
	per := map[string]*tally{}
	for _, ep := range rep.Endpoints {
		key := fmt.Sprintf("%s %s %d %s", ep.Protocol, ep.Host, ep.Port, ep.Security)
		for _, ip := range ep.IPs {
			t := per[ep.Protocol]
			if t == nil {
				t = &tally{}
				per[ep.Protocol] = t
			}
			t.all++
			if works(ip.Status) {
				t.ok++
				working[key] = true
			} else {
				anyFail = true
			}
		}
		if len(ep.IPs) == 0 {
			anyFail = true
		}
	}
	// Recommended: the best working endpoint per direction.
	secRank := map[string]int{"implicit_tls": 0, "starttls": 1}
	pick := func(protos ...string) *report.Setting {
		var best *report.Setting
		bestRank := 99
		for _, c := range cands {
			e := c.Endpoint
			sec := securityName(e.Security)
			key := fmt.Sprintf("%s %s %d %s", e.Protocol, e.Host, e.Port, sec)
			pr := -1
			for i, p := range protos {
				if string(e.Protocol) == p {
					pr = i
				}
			}
			if pr < 0 || !working[key] {
				continue
			}
			if r := pr*10 + secRank[sec]; r < bestRank {
				bestRank = r
				best = &report.Setting{Protocol: string(e.Protocol), Host: e.Host, Port: e.Port, Security: sec, Auth: "password", Username: c.Username}
			}
		}
		return best
	}
	sum.Recommended.Incoming = pick("imap", "pop3")
	sum.Recommended.Outgoing = pick("smtp")
	// A rejected password stops every later login (check.Gate), so the
	// endpoints whose login was skipped only look working: with this
	// password no client gets in anywhere.
	rejected := false
	for _, s := range rep.Steps {
		rejected = rejected || (s.Status == report.StatusFail && s.Error != nil && s.Error.Class == report.AuthFailed)
	}
	for i := range sum.Clients {
		v := &sum.Clients[i]
		v.Works = !rejected && v.Incoming != nil && v.Outgoing != nil &&
			working[fmt.Sprintf("%s %s %d %s", v.Incoming.Protocol, v.Incoming.Host, v.Incoming.Port, v.Incoming.Security)] &&
			working[fmt.Sprintf("%s %s %d %s", v.Outgoing.Protocol, v.Outgoing.Host, v.Outgoing.Port, v.Outgoing.Security)]
	}
	var firstFail, firstErr *report.Step
	anyWarn := false
	for i := range rep.Steps {
		s := &rep.Steps[i]
		if s.Error == nil {
			continue
		}
		switch s.Status {
		case report.StatusFail:
			if firstFail == nil {
				firstFail = s
			}
		case report.StatusError:
			if firstErr == nil {
				firstErr = s
			}
		case report.StatusWarn:
			anyWarn = true
		}
	}
	first := firstFail
	if first == nil {
		first = firstErr
	}
	if first != nil {
		sum.FirstFailure = first.ID
	}
	inOK, outOK := sum.Recommended.Incoming != nil, sum.Recommended.Outgoing != nil
	switch {
	case rejected:
		sum.Status = report.OverallBroken
	case (!inOK || !outOK) && firstFail == nil && firstErr != nil:
		sum.Status = report.OverallInconclusive
	case !inOK || !outOK:
		sum.Status = report.OverallBroken
	case anyFail || firstFail != nil:
		sum.Status = report.OverallDegraded
	case anyWarn || firstErr != nil:
		sum.Status = report.OverallWarnings
	default:
		sum.Status = report.OverallOK
	}
	var parts []string
	for _, p := range []string{"imap", "pop3", "smtp"} {
		if t := per[p]; t != nil {
			word := "works"
			switch {
			case t.ok == 0:
				word = "fails"
			case t.ok < t.all:
				word = "partly works"
			}
			parts = append(parts, fmt.Sprintf("%s %s (%d of %d endpoint addresses)", strings.ToUpper(p), word, t.ok, t.all))
		}
	}
	if len(parts) == 0 {
		parts = append(parts, "no mail server found")
	}
	sum.Headline = strings.Join(parts, "; ")
	if first != nil {
		sum.Headline += "; first failure: " + describe(first)
	}
	rep.Findings = findings(rep, addr)
}

// describe is the one sentence support staff need about a step.
func describe(s *report.Step) string {
	where := s.Title
	if s.Target != nil && s.Target.Host != "" {
		where = fmt.Sprintf("%s (%s", s.Title, s.Target.Host)
		if s.Target.IP != "" {
			where += " " + s.Target.IP
		}
		if s.Target.Port != 0 {
			where += fmt.Sprintf(" port %d", s.Target.Port)
		}
		where += ")"
	}
	return fmt.Sprintf("%s: %s [%s]", where, s.Error.Message, s.Error.Class)
}

var severity = map[report.Code]string{
	report.AuthFailed: "high", report.CertExpired: "critical", report.CertNameMismatchHost: "high",
	report.CertSelfSigned: "high", report.CertUntrusted: "high", report.CertIncompleteChain: "high",
	report.CapsStartTLSMissing: "high", report.StartTLSInjection: "critical", report.StartTLSBufferedPlaintext: "high",
	report.GreetingPreauth: "high", report.TLSPlaintextOnTLSPort: "high", report.DNSNXDomain: "critical",
	report.DiscoveryNone: "high", report.CertExpiringSoon: "medium", report.CapsAuthBeforeTLS: "medium",
}

// findings groups failing and warning steps by code, with fixes.
func findings(rep *report.Report, addr autoconfig.Address) []report.Finding {
	by := map[report.Code]*report.Finding{}
	var order []report.Code
	hostsFor := map[report.Code][]string{}
	for _, s := range rep.Steps {
		if s.Error == nil || (s.Status != report.StatusFail && s.Status != report.StatusWarn && s.Status != report.StatusError) {
			continue
		}
		c := s.Error.Class
		f, ok := by[c]
		if !ok {
			sev := severity[c]
			if sev == "" {
				sev = map[report.Status]string{report.StatusFail: "high", report.StatusWarn: "low", report.StatusError: "medium"}[s.Status]
			}
			f = &report.Finding{Code: c, Severity: sev, Title: report.Hint(c), Detail: s.Error.Message, Refs: report.Refs(c)}
			by[c] = f
			order = append(order, c)
		}
		if s.Target != nil && s.Target.Host != "" {
			ep := fmt.Sprintf("%s:%d", s.Target.Host, s.Target.Port)
			if !contains(f.Endpoints, ep) {
				f.Endpoints = append(f.Endpoints, ep)
			}
			if !contains(hostsFor[c], s.Target.Host) {
				hostsFor[c] = append(hostsFor[c], s.Target.Host)
			}
		}
	}
	out := []report.Finding{}
	for _, c := range order {
		f := by[c]
		switch c {
		case report.CertNameMismatchHost, report.CertNameMismatchEmailDomain:
			names := hostsFor[c]
			if c == report.CertNameMismatchEmailDomain {
				names = []string{addr.Domain}
			}
			var sans []string
			for _, n := range names {
				sans = append(sans, "DNS:"+n)
			}
			f.Fix = &report.Fix{Kind: "certificate", Snippet: "subjectAltName = " + strings.Join(sans, ", ")}
		case report.DNSNullMX:
			f.Fix = &report.Fix{Kind: "dns", Snippet: fmt.Sprintf("; remove the null MX if %s should receive mail:\n; %s. IN MX 0 .", addr.Domain, addr.Domain)}
		}
		out = append(out, *f)
	}
	if f := srvFinding(rep, addr); f != nil {
		out = append(out, *f)
	}
	sort.SliceStable(out, func(i, j int) bool { return sevRank(out[i].Severity) < sevRank(out[j].Severity) })
	return out
}

func sevRank(s string) int {
	return map[string]int{"critical": 0, "high": 1, "medium": 2, "low": 3, "info": 4}[s]
}

// srvFinding proposes RFC 6186 SRV records for working endpoints that have
// none, as paste-ready zone lines.
func srvFinding(rep *report.Report, addr autoconfig.Address) *report.Finding {
	published := false
	for _, d := range rep.Discovery {
		if d.Mechanism == discover.SRV && d.Status == report.StatusPass {
			published = true
		}
	}
	if published {
		return nil
	}
	names := map[string]string{"imap implicit_tls": "_imaps", "imap starttls": "_imap", "pop3 implicit_tls": "_pop3s", "pop3 starttls": "_pop3", "smtp implicit_tls": "_submissions", "smtp starttls": "_submission"}
	var lines []string
	seen := map[string]bool{}
	for _, ep := range rep.Endpoints {
		if !works(ep.Status) {
			continue
		}
		svc := names[ep.Protocol+" "+ep.Security]
		if svc == "" || seen[svc] {
			continue
		}
		seen[svc] = true
		lines = append(lines, fmt.Sprintf("%s._tcp.%s. 3600 IN SRV 0 1 %d %s.", svc, addr.Domain, ep.Port, ep.Host))
	}
	if len(lines) == 0 {
		return nil
	}
	return &report.Finding{
		Code: report.DNSNoData, Severity: "info", Title: "No RFC 6186 SRV records: publish them for clients that use them",
		Fix: &report.Fix{Kind: "dns", Snippet: strings.Join(lines, "\n")}, Refs: []string{"RFC 6186", "RFC 8314"},
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
