// Command probe-bench measures how well the probe parallelises: it probes
// one address several times and prints, per run, the wall time next to the
// sum of all step times and the slowest single endpoint check. The target
// (issue 6) is wall < 1.5 x slowest endpoint check: discovery and every
// endpoint run side by side, so the slowest endpoint bounds the probe.
//
//	go run ./bench/probe --config mailconf.toml --address demo@example.test --password-file pw
//
// With --config, the resolver, the EHLO name and the service's own
// certificate come from the config, as for `mailconf probe`. The probe runs
// with the operator's trust (no address restrictions). A server on loopback
// whose web listeners are not on 80/443 is probed in full with
// --port-map 80=HTTP-PORT,443=HTTPS-PORT (autoconfig.D and autodiscover.D
// are fetched on the standard ports); cmd/mailconf's
// TestBenchProbeRealServer sets up such a server and runs this program.
package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"mailconf/config"
	"mailconf/internal/certs"
	"mailconf/probe"
	"mailconf/probe/netguard"
	"mailconf/probe/report"
)

// target is the ratio the probe must stay under.
const target = 1.5

type caFlags []string

func (c *caFlags) String() string     { return strings.Join(*c, ",") }
func (c *caFlags) Set(s string) error { *c = append(*c, s); return nil }

// result is one measured run.
type result struct {
	Status          report.Overall `json:"status"`
	WallMS          float64        `json:"wall_ms"`
	StepSumMS       int64          `json:"step_sum_ms"`
	SlowestEndpoint string         `json:"slowest_endpoint"`
	SlowestMS       int64          `json:"slowest_endpoint_ms"`
	Endpoints       int            `json:"endpoint_checks"`
	Ratio           float64        `json:"wall_over_slowest"`
}

// portMap is --port-map: logical port → the port actually dialled, for a
// server on loopback whose web listeners cannot have 80 and 443.
type portMap map[int]int

func (p portMap) String() string {
	var parts []string
	for from, to := range p {
		parts = append(parts, fmt.Sprintf("%d=%d", from, to))
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

func (p portMap) Set(s string) error {
	for _, pair := range strings.Split(s, ",") {
		from, to, ok := strings.Cut(pair, "=")
		f, err1 := strconv.Atoi(strings.TrimSpace(from))
		t, err2 := strconv.Atoi(strings.TrimSpace(to))
		if !ok || err1 != nil || err2 != nil || f <= 0 || f > 65535 || t <= 0 || t > 65535 {
			return fmt.Errorf("want PORT=PORT[,PORT=PORT...], got %q", pair)
		}
		p[f] = t
	}
	return nil
}

func main() {
	var cas caFlags
	ports := portMap{}
	flag.Var(ports, "port-map", "dial PORT=REALPORT instead (repeatable or comma-separated), e.g. 80=8080,443=8443 for a server whose web listeners are not on 80/443")
	cfgPath := flag.String("config", "", "mailconf config file (resolver, hostname, own certificate)")
	address := flag.String("address", "", "address to probe (required)")
	pwFile := flag.String("password-file", "", "file whose first line is the password (without it: no login tests)")
	resolver := flag.String("resolver", "", "DNS resolver HOST:PORT (default: the config's, else the system's)")
	flag.Var(&cas, "ca", "PEM file of extra trust anchors (repeatable)")
	runs := flag.Int("runs", 5, "number of probes")
	timeout := flag.Duration("timeout", 90*time.Second, "limit per probe")
	asJSON := flag.Bool("json", false, "print the runs as JSON")
	flag.Parse()
	if *address == "" || *runs < 1 || flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	code, err := run(*cfgPath, *address, *pwFile, *resolver, cas, ports, *runs, *timeout, *asJSON)
	if err != nil {
		fmt.Fprintln(os.Stderr, "probe-bench:", err)
	}
	os.Exit(code)
}

func run(cfgPath, address, pwFile, resolver string, cas []string, ports portMap, runs int, timeout time.Duration, asJSON bool) (int, error) {
	var cfg *config.Config
	if cfgPath != "" {
		c, err := config.Load(cfgPath)
		if err != nil {
			return 2, err
		}
		cfg = c
	}
	var password report.Secret
	if pwFile != "" {
		b, err := os.ReadFile(pwFile)
		if err != nil {
			return 2, fmt.Errorf("password file: %w", err)
		}
		line, _, _ := strings.Cut(string(b), "\n")
		password = report.NewSecret(strings.TrimSuffix(line, "\r"))
	}
	roots, err := roots(cfg, cas)
	if err != nil {
		return 2, err
	}
	opts := probe.Options{
		Resolver: resolver, RootCAs: roots, Policy: netguard.Policy{Unrestricted: true},
		AuthAllowed: !password.IsZero(), AuthReason: "operator", Timeout: timeout,
	}
	if len(ports) > 0 {
		opts.PortMap = ports
	}
	if cfg != nil {
		if opts.Resolver == "" {
			opts.Resolver = cfg.DNS.Resolver
		}
		opts.EHLOName = cfg.Hostname
	}
	var results []result
	for i := 0; i < runs; i++ {
		start := time.Now()
		rep, err := probe.Run(context.Background(), probe.Request{Address: address, Password: password}, opts)
		wall := time.Since(start)
		if err != nil {
			return 2, err
		}
		r := measure(rep, wall)
		results = append(results, r)
		if !asJSON {
			fmt.Printf("run %d: %-16s wall %7.1f ms  steps sum %6d ms  slowest endpoint %5d ms (%s, %d checks)  wall/slowest %.2f\n",
				i+1, r.Status, r.WallMS, r.StepSumMS, r.SlowestMS, r.SlowestEndpoint, r.Endpoints, r.Ratio)
		}
	}
	ratios := make([]float64, len(results))
	for i, r := range results {
		ratios[i] = r.Ratio
	}
	sort.Float64s(ratios)
	median := ratios[len(ratios)/2]
	met := median < target
	if asJSON {
		out := map[string]any{"runs": results, "median_wall_over_slowest": median, "target": target, "met": met}
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return 1, err
		}
	} else {
		verdict := "met"
		if !met {
			verdict = "MISSED"
		}
		fmt.Printf("median wall/slowest endpoint %.2f (target < %.1f): %s\n", median, target, verdict)
	}
	if !met {
		return 1, nil
	}
	return 0, nil
}

// measure derives the numbers from the step tree: leaf steps carry the
// real work; an endpoint check ("epNN.ipNN") lasts from its first step's
// start to its last step's end.
func measure(rep *report.Report, wall time.Duration) result {
	r := result{Status: rep.Summary.Status, WallMS: float64(wall.Microseconds()) / 1000}
	parents := map[string]bool{}
	for _, s := range rep.Steps {
		parents[s.Parent] = true
	}
	type span struct{ from, to time.Time }
	checks := map[string]*span{}
	titles := map[string]string{}
	for _, s := range rep.Steps {
		titles[s.ID] = s.Title
		if parents[s.ID] {
			continue
		}
		r.StepSumMS += s.DurationMS
		if !strings.HasPrefix(s.Parent, "ep") || strings.Count(s.Parent, ".") != 1 {
			continue
		}
		end := s.StartedAt.Add(time.Duration(s.DurationMS) * time.Millisecond)
		sp := checks[s.Parent]
		if sp == nil {
			checks[s.Parent] = &span{s.StartedAt, end}
			continue
		}
		if s.StartedAt.Before(sp.from) {
			sp.from = s.StartedAt
		}
		if end.After(sp.to) {
			sp.to = end
		}
	}
	r.Endpoints = len(checks)
	for id, sp := range checks {
		if ms := sp.to.Sub(sp.from).Milliseconds(); ms >= r.SlowestMS {
			r.SlowestMS, r.SlowestEndpoint = ms, titles[strings.SplitN(id, ".", 2)[0]]
		}
	}
	if r.SlowestMS > 0 {
		r.Ratio = r.WallMS / float64(r.SlowestMS)
	}
	return r
}

// roots are the system roots, the --ca files and, with a config, the
// service's own certificate (as `mailconf probe` trusts it).
func roots(cfg *config.Config, cas []string) (*x509.CertPool, error) {
	pool := certs.SystemPool()
	if err := certs.AppendFiles(pool, cas); err != nil {
		return nil, fmt.Errorf("--ca: %w", err)
	}
	if cfg != nil {
		if err := certs.TrustOwn(pool, cfg); err != nil {
			return nil, fmt.Errorf("own certificate: %w", err)
		}
	}
	return pool, nil
}
