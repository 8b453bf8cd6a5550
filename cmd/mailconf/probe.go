package main

import (
	"context"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"golang.org/x/term"

	"mailconf/autoconfig"
	"mailconf/config"
	"mailconf/internal/certs"
	"mailconf/probe"
	"mailconf/probe/netguard"
	"mailconf/probe/report"
)

const probeUsage = `usage: mailconf probe ADDRESS [--password-stdin] [--json] [--resolver HOST:PORT] [--ca FILE] [--timeout DURATION]
`

// runProbe is `mailconf probe`: one probe with the operator's trust (any
// address, any port), the report as text or JSON, exit 0 when the address
// works, 1 when the probe found a problem, 2 for bad usage.
func runProbe(ctx context.Context, cfg *config.Config, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return probeCommand(ctx, cfg, args, stdin, stdout, stderr, nil)
}

// probeCommand is runProbe with a hook that adjusts the probe options
// after the command line is applied: hermetic tests map logical ports to
// their listeners with it.
func probeCommand(ctx context.Context, cfg *config.Config, args []string, stdin io.Reader, stdout, stderr io.Writer, adjust func(*probe.Options)) int {
	fset := flag.NewFlagSet("probe", flag.ContinueOnError)
	fset.SetOutput(stderr)
	fset.Usage = func() { fmt.Fprint(stderr, probeUsage) }
	passwordStdin := fset.Bool("password-stdin", false, "read the password from the first line of standard input")
	asJSON := fset.Bool("json", false, "print the report as JSON (schema probe-report/1)")
	resolver := fset.String("resolver", cfg.DNS.Resolver, "DNS resolver HOST:PORT (default: [dns] resolver, else the system's)")
	var caFiles []string
	fset.Func("ca", "PEM file of extra trust anchors (repeatable)", func(s string) error {
		caFiles = append(caFiles, s)
		return nil
	})
	timeout := fset.Duration("timeout", 90*time.Second, "limit for the whole probe")
	rest, err := parseInterleaved(fset, args)
	if err != nil {
		return exitUsage
	}
	if len(rest) != 1 {
		fmt.Fprintf(stderr, "mailconf probe: want exactly one ADDRESS, got %d argument(s)\n%s", len(rest), probeUsage)
		return exitUsage
	}
	if *timeout <= 0 {
		fmt.Fprintf(stderr, "mailconf probe: --timeout %s: want a positive duration\n", *timeout)
		return exitUsage
	}
	if *resolver != "" {
		if err := checkResolver(*resolver); err != nil {
			fmt.Fprintf(stderr, "mailconf probe: --resolver %q: %v\n", *resolver, err)
			return exitUsage
		}
	}
	address := rest[0]

	roots, warnings, err := probeRoots(cfg, caFiles)
	if err != nil {
		fmt.Fprintf(stderr, "mailconf probe: %v\n", err)
		return exitUsage
	}
	for _, w := range warnings {
		fmt.Fprintf(stderr, "mailconf probe: %s\n", w)
	}
	password, code := readProbePassword(stdin, stderr, *passwordStdin, address)
	if code != exitOK {
		return code
	}

	opts := probe.Options{
		Resolver:    *resolver,
		RootCAs:     roots,
		Policy:      netguard.Policy{Unrestricted: true},
		AuthAllowed: !password.IsZero(),
		AuthReason:  "operator",
		Timeout:     *timeout,
		EHLOName:    cfg.Hostname,
		Logger:      slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Published:   autoconfig.NewCatalog(cfg),
	}
	if adjust != nil {
		adjust(&opts)
	}
	rep, err := probe.Run(ctx, probe.Request{Address: address, Password: password}, opts)
	if err != nil {
		fmt.Fprintf(stderr, "mailconf probe: %v\n", err)
		return exitUsage
	}
	if *asJSON {
		err = report.JSON(stdout, rep)
	} else {
		err = report.Text(stdout, rep, colourTerminal(stdout))
	}
	if err != nil {
		fmt.Fprintf(stderr, "mailconf probe: writing the report: %v\n", err)
		return exitFailure
	}
	switch rep.Summary.Status {
	case report.OverallOK, report.OverallWarnings:
		return exitOK
	}
	return exitFailure
}

// probeRoots builds the trust anchors: the system roots, every --ca file,
// and this service's own certificate (the configured one, or the
// self-signed one `mailconf serve` generated), so that a fresh install is
// probed end to end. A --ca file that cannot be used is an error; a
// configured certificate that cannot be read is only a warning, since the
// probe is how the operator finds out what is wrong.
func probeRoots(cfg *config.Config, caFiles []string) (*x509.CertPool, []string, error) {
	pool := certs.SystemPool()
	if err := certs.AppendFiles(pool, caFiles); err != nil {
		return nil, nil, fmt.Errorf("--ca: %w", err)
	}
	var warnings []string
	if err := certs.TrustOwn(pool, cfg); err != nil {
		warnings = append(warnings, fmt.Sprintf("the service's own certificate is not trusted: %v", err))
	}
	return pool, warnings, nil
}

// readProbePassword gets the optional password: the first line of stdin
// with --password-stdin, else a prompt without echo when stdin is a
// terminal, else none (a probe without login tests).
func readProbePassword(stdin io.Reader, stderr io.Writer, fromStdin bool, address string) (report.Secret, int) {
	if fromStdin {
		line, err := readPasswordLine(stdin)
		if err != nil {
			fmt.Fprintf(stderr, "mailconf probe: --password-stdin: %v\n", err)
			return report.Secret{}, exitUsage
		}
		return report.NewSecret(line), exitOK
	}
	f, ok := stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return report.Secret{}, exitOK
	}
	fmt.Fprintf(stderr, "Password for %s (Enter for none: no login test): ", address)
	p, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(stderr)
	if err != nil {
		fmt.Fprintf(stderr, "mailconf probe: reading the password: %v\n", err)
		return report.Secret{}, exitFailure
	}
	if len(p) == 0 {
		return report.Secret{}, exitOK
	}
	return report.NewSecret(string(p)), exitOK
}

// colourTerminal reports whether w is a terminal that should get colours
// (https://no-color.org turns them off).
func colourTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd())) && os.Getenv("NO_COLOR") == ""
}
