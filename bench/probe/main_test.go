package main

import (
	"context"
	"testing"
	"time"

	"mailconf/probe"
	"mailconf/probe/probetest"
	"mailconf/probe/report"
)

// TestMeasure probes a hermetic world whose IMAP greeting is slow and
// checks the numbers the benchmark derives from the report.
func TestMeasure(t *testing.T) {
	w := probetest.NewWorld(t)
	w.Zone(t, "example.test. 300 IN MX 10 mx.example.test.\nmx.example.test. 300 IN A 127.0.0.1\n")
	slow := &probetest.Mail{Proto: "imap", Implicit: true, Cert: probetest.Cert(t, w.CA, "imap.example.test"), GreetDelay: 300 * time.Millisecond}
	w.Mail(t, "imap.example.test", 993, slow)
	w.Mail(t, "smtp.example.test", 465, &probetest.Mail{Proto: "smtp", Implicit: true, Cert: probetest.Cert(t, w.CA, "smtp.example.test")})
	w.Zone(t, "_imaps._tcp.example.test. 300 IN SRV 0 1 993 imap.example.test.\n_submissions._tcp.example.test. 300 IN SRV 0 1 465 smtp.example.test.\n")
	start := time.Now()
	rep, err := probe.Run(context.Background(), probe.Request{Address: "alice@example.test"}, probe.Options{
		Resolver: w.DNS.Addr, RootCAs: w.CA.Pool, Policy: w.Policy(), PortMap: w.PortMap, Timeout: 30 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	r := measure(rep, time.Since(start))
	if r.Endpoints != 2 {
		t.Fatalf("%d endpoint checks, want 2: %+v", r.Endpoints, r)
	}
	if r.SlowestMS < 300 || r.SlowestEndpoint == "" || r.StepSumMS+int64(len(rep.Steps)) < r.SlowestMS || r.WallMS < float64(r.SlowestMS) {
		t.Errorf("measure: %+v (the IMAP greeting alone takes 300 ms; step times are rounded to ms)", r)
	}
	if r.Ratio != r.WallMS/float64(r.SlowestMS) || r.Status == report.Overall("") {
		t.Errorf("ratio %v status %q", r.Ratio, r.Status)
	}
}
