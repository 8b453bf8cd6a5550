package probe

import (
	"strings"
	"testing"

	"mailconf/autoconfig"
	"mailconf/probe/report"
)

// TestFindingsCarryPasteReadyFixes: a certificate name failure yields the
// subjectAltName line to request, and working endpoints without SRV
// records yield the zone lines to publish.
func TestFindingsCarryPasteReadyFixes(t *testing.T) {
	addr := autoconfig.Address{Local: "a", Domain: "example.com"}
	rep := &report.Report{
		Steps: []report.Step{
			{ID: "e1.tls", Status: report.StatusFail, Target: &report.Target{Host: "imap.example.com", Port: 993},
				Error: &report.StepError{Class: report.CertNameMismatchHost, Message: "certificate is for other.example"}},
			{ID: "e2.tls", Status: report.StatusFail, Target: &report.Target{Host: "smtp.example.com", Port: 465},
				Error: &report.StepError{Class: report.CertNameMismatchHost, Message: "certificate is for other.example"}},
		},
		Endpoints: []report.Endpoint{
			{Protocol: "imap", Host: "imap.example.com", Port: 993, Security: "implicit_tls", Status: report.StatusPass},
			{Protocol: "smtp", Host: "smtp.example.com", Port: 587, Security: "starttls", Status: report.StatusPass},
			{Protocol: "pop3", Host: "pop.example.com", Port: 995, Security: "implicit_tls", Status: report.StatusFail},
		},
	}
	var cert, srv *report.Fix
	for _, f := range findings(rep, addr) {
		switch {
		case f.Code == report.CertNameMismatchHost:
			cert = f.Fix
		case f.Fix != nil && f.Fix.Kind == "dns":
			srv = f.Fix
		}
	}
	if cert == nil || cert.Snippet != "subjectAltName = DNS:imap.example.com, DNS:smtp.example.com" {
		t.Errorf("certificate fix = %+v", cert)
	}
	if srv == nil {
		t.Fatal("no SRV fix")
	}
	want := []string{
		"_imaps._tcp.example.com. 3600 IN SRV 0 1 993 imap.example.com.",
		"_submission._tcp.example.com. 3600 IN SRV 0 1 587 smtp.example.com.",
	}
	if srv.Snippet != strings.Join(want, "\n") {
		t.Errorf("SRV fix =\n%s\nwant\n%s", srv.Snippet, strings.Join(want, "\n"))
	}
}
