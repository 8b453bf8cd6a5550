package report

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// JSON writes the report as indented JSON.
func JSON(w io.Writer, r *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("report: encode: %w", err)
	}
	return nil
}

var icons = map[Status]string{
	StatusPass: "ok  ", StatusWarn: "WARN", StatusFail: "FAIL", StatusError: "ERR ",
	StatusSkipped: "skip", StatusInfo: "info", StatusRunning: "... ", StatusPending: "    ",
}

var colours = map[Status]string{
	StatusPass: "\x1b[32m", StatusWarn: "\x1b[33m", StatusFail: "\x1b[31m", StatusError: "\x1b[35m",
}

// Text writes the readable report: summary, what each client would do,
// recommended settings, endpoint matrix, step tree, findings. colour adds
// ANSI colours (for a terminal).
func Text(w io.Writer, r *Report, colour bool) error {
	b := &strings.Builder{}
	st := func(s Status) string {
		if c, ok := colours[s]; ok && colour {
			return c + icons[s] + "\x1b[0m"
		}
		return icons[s]
	}
	fmt.Fprintf(b, "Probe of %s (%s) - %s\n", r.Input.AddressMasked, r.Input.Mode, strings.ToUpper(string(r.Summary.Status)))
	fmt.Fprintf(b, "%s\n", r.Summary.Headline)
	if r.Summary.FirstFailure != "" {
		fmt.Fprintf(b, "First failure: step %s\n", r.Summary.FirstFailure)
	}
	fmt.Fprintf(b, "\nRecommended settings:\n")
	for _, s := range []struct {
		name string
		v    *Setting
	}{{"incoming", r.Summary.Recommended.Incoming}, {"outgoing", r.Summary.Recommended.Outgoing}} {
		if s.v == nil {
			fmt.Fprintf(b, "  %-9s none works\n", s.name)
			continue
		}
		fmt.Fprintf(b, "  %-9s %s %s port %d %s, username %s\n", s.name, strings.ToUpper(s.v.Protocol), s.v.Host, s.v.Port, s.v.Security, s.v.Username)
	}
	fmt.Fprintf(b, "\nWhat clients would configure:\n")
	for _, c := range r.Summary.Clients {
		works := "does not work"
		if c.Works {
			works = "works"
		}
		switch {
		case c.Source == "":
			fmt.Fprintf(b, "  %-20s %s\n", c.Client, c.Note)
		default:
			fmt.Fprintf(b, "  %-20s from %s: %s / %s - %s\n", c.Client, c.Source, setting(c.Incoming), setting(c.Outgoing), works)
		}
	}
	if len(r.Endpoints) > 0 {
		fmt.Fprintf(b, "\nEndpoints:\n")
		for _, ep := range r.Endpoints {
			fmt.Fprintf(b, "  %s %s %s:%d %s  (from %s)\n", st(ep.Status), strings.ToUpper(ep.Protocol), ep.Host, ep.Port, ep.Security, strings.Join(ep.Sources, ", "))
			for _, ip := range ep.IPs {
				tls := ""
				if ip.TLS != nil {
					tls = ip.TLS.Version
					if c := ip.TLS.Certificate; c != nil {
						tls += fmt.Sprintf(", certificate %d days left", c.DaysLeft)
					}
				}
				fmt.Fprintf(b, "      %s %-15s %dms %s\n", st(ip.Status), ip.IP, ip.TimingsMS["total"], tls)
			}
		}
	}
	fmt.Fprintf(b, "\nSteps:\n")
	depth := map[string]int{}
	for _, s := range r.Steps {
		d := 0
		if s.Parent != "" {
			d = depth[s.Parent] + 1
		}
		depth[s.ID] = d
		line := fmt.Sprintf("%s%s %s", strings.Repeat("  ", d+1), st(s.Status), s.Title)
		switch {
		case s.Error != nil && s.Status != StatusSkipped:
			line += fmt.Sprintf(" - %s [%s]", s.Error.Message, s.Error.Class)
			if rp := s.Error.ServerReply; rp != nil {
				line += fmt.Sprintf(" server said: %s", strings.TrimSpace(strings.Join([]string{rp.Code, rp.Enhanced, bracket(rp.RespCode), rp.Text}, " ")))
			}
		case s.SkipReason != "":
			line += " - " + s.SkipReason
		case s.Detail != "":
			line += " - " + s.Detail
		}
		fmt.Fprintln(b, line)
		if s.Hint != "" && (s.Status == StatusFail || s.Status == StatusWarn || s.Status == StatusError) {
			fmt.Fprintf(b, "%s     hint: %s\n", strings.Repeat("  ", d+1), s.Hint)
		}
	}
	if len(r.Findings) > 0 {
		fmt.Fprintf(b, "\nFindings:\n")
		for _, f := range r.Findings {
			fmt.Fprintf(b, "  [%s] %s: %s\n", f.Severity, f.Code, f.Title)
			if f.Fix != nil {
				for _, l := range strings.Split(f.Fix.Snippet, "\n") {
					fmt.Fprintf(b, "      %s\n", l)
				}
			}
		}
	}
	if len(r.Transcripts) > 0 {
		fmt.Fprintf(b, "\nTranscripts (credentials redacted):\n")
		for _, t := range r.Transcripts {
			fmt.Fprintf(b, "  -- %s %s on %s\n", t.ID, t.Endpoint, t.IP)
			for _, l := range t.Lines {
				arrow := map[string]string{"S": "<-", "C": "->", "*": "=="}[l.Dir]
				if l.TLS && l.Dir != "*" {
					arrow = map[string]string{"S": "<~", "C": "~>"}[l.Dir]
				}
				fmt.Fprintf(b, "  %5dms %s %s\n", l.TMS, arrow, l.Text)
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	if err != nil {
		return fmt.Errorf("report: write: %w", err)
	}
	return nil
}

func bracket(s string) string {
	if s == "" {
		return ""
	}
	return "[" + s + "]"
}

func setting(s *Setting) string {
	if s == nil {
		return "(none)"
	}
	return fmt.Sprintf("%s %s:%d %s", strings.ToUpper(s.Protocol), s.Host, s.Port, s.Security)
}
