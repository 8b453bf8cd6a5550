package dnsrecords

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"golang.org/x/net/idna"
)

// groupHeading explains a block of records in the printed zone fragment.
func groupHeading(g Group) []string {
	switch g {
	case GroupDelivery:
		return []string{"Mail delivery: other servers send mail for this domain to mailconf."}
	case GroupClients:
		return []string{
			"Mail clients (RFC 6186, RFC 8314): lower priority is preferred, implicit TLS first.",
			`"0 0 0 ." says a service is not offered; leave it out if your DNS panel refuses it.`,
		}
	case GroupDiscovery:
		return []string{"Client setup: Thunderbird autoconfig and Outlook Autodiscover find mailconf here."}
	case GroupDAV:
		return []string{"Calendars and contacts (RFC 6764)."}
	case GroupPolicy:
		return []string{"Sender policy: SPF, DMARC and DKIM let receivers trust mail from this domain."}
	}
	return nil
}

// Write prints recs as a zone fragment: one block per domain, and within it
// one commented block per group, columns aligned. Every line is valid zone
// syntax (comments start with ';').
func Write(w io.Writer, recs []Record) error {
	bw := bufio.NewWriter(w)
	tw := tabwriter.NewWriter(bw, 0, 8, 1, ' ', 0)
	domain, group := "", Group("")
	for i, r := range recs {
		if i == 0 || r.Domain != domain {
			if i > 0 {
				fmt.Fprintln(tw)
			}
			domain, group = r.Domain, ""
			title := r.Domain
			if u, err := idna.ToUnicode(r.Domain); err == nil && u != r.Domain {
				title += " (" + u + ")"
			}
			fmt.Fprintf(tw, "; ==== %s ====\n", title)
		}
		if r.Group != group {
			group = r.Group
			fmt.Fprintln(tw, ";")
			for _, line := range groupHeading(group) {
				fmt.Fprintf(tw, "; %s\n", line)
			}
		}
		line := r.String()
		if r.Comment != "" {
			line += "\t; " + strings.ReplaceAll(r.Comment, "\n", " ")
		}
		fmt.Fprintln(tw, line)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("dnsrecords: write: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("dnsrecords: write: %w", err)
	}
	return nil
}
