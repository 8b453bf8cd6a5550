package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"

	"mailconf/autoconfig"
	"mailconf/autoconfig/dnsrecords"
	"mailconf/config"
	"mailconf/mailserver/dkim"
)

const dnsUsage = "usage: mailconf dns [DOMAIN ...] [--check] [--resolver HOST:PORT]"

// runDNS prints the records every (or every named) domain should publish
// and, with --check, compares them with what a resolver answers: exit 1
// when a record is missing or wrong, 0 when all match.
func runDNS(ctx context.Context, cfg *config.Config, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dns", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	check := fs.Bool("check", false, "compare the records with live DNS")
	resolver := fs.String("resolver", cfg.DNS.Resolver, "DNS server to ask, HOST:PORT")
	domains, err := parseInterleaved(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(stdout, dnsUsage)
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "mailconf dns: %v; %s\n", err, dnsUsage)
		return exitUsage
	}
	if *resolver != "" {
		if err := checkResolver(*resolver); err != nil {
			fmt.Fprintf(stderr, "mailconf dns: --resolver %q: %v\n", *resolver, err)
			return exitUsage
		}
	}
	// The lead wires the DKIM public keys in once the signing key exists.
	// The DKIM keys are made on first use, so a fresh install prints its
	// TXT record before the server ever ran.
	dkimTXT, err := dkim.TXTRecords(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "mailconf dns: %v\n", err)
		return exitFailure
	}
	recs, err := dnsrecords.Records(cfg, autoconfig.NewCatalog(cfg), domains, dkimTXT)
	if err != nil {
		fmt.Fprintf(stderr, "mailconf dns: %v\n", err)
		return exitUsage
	}
	if err := dnsrecords.Write(stdout, recs); err != nil {
		fmt.Fprintf(stderr, "mailconf dns: %v\n", err)
		return exitFailure
	}
	if !*check {
		return exitOK
	}
	diffs, err := dnsrecords.Check(ctx, *resolver, recs)
	if err != nil {
		fmt.Fprintf(stderr, "mailconf dns: %v\n", err)
		return exitFailure
	}
	writeDifferences(stdout, *resolver, len(recs), diffs)
	if dnsrecords.Failed(diffs) {
		return exitFailure
	}
	return exitOK
}

func checkResolver(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return errors.New("want HOST:PORT, e.g. 127.0.0.1:53")
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("port %q: want 1 to 65535", port)
	}
	return nil
}

func writeDifferences(w io.Writer, resolver string, total int, diffs []dnsrecords.Difference) {
	if resolver == "" {
		resolver = "the system resolver"
	}
	fmt.Fprintf(w, "\nCheck against %s:\n", resolver)
	problems, suggestions := 0, 0
	for _, d := range diffs {
		label := string(d.Problem)
		if d.Advisory {
			label = "suggest"
			suggestions++
		} else {
			problems++
		}
		fmt.Fprintf(w, "  %-9s %s\n", label, d.Message)
		for _, r := range d.Remove {
			fmt.Fprintf(w, "            remove: %s\n", strings.ReplaceAll(r, "\t", " "))
		}
		if d.Add != "" {
			fmt.Fprintf(w, "            add:    %s\n", strings.ReplaceAll(d.Add, "\t", " "))
		}
	}
	switch {
	case problems == 0 && suggestions == 0:
		fmt.Fprintf(w, "  all %d records are published as suggested.\n", total)
	case problems == 0:
		fmt.Fprintf(w, "  no problems; %d suggestion(s).\n", suggestions)
	default:
		fmt.Fprintf(w, "  %d problem(s), %d suggestion(s).\n", problems, suggestions)
	}
}
