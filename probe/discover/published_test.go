package discover

import (
	"testing"

	"mailconf/autoconfig"
	"mailconf/probe/report"
)

func TestPublishedSourceBecomesCandidates(t *testing.T) {
	st := &autoconfig.Settings{Domain: "example.test", Username: autoconfig.UsernameLocalpart,
		Incoming: []autoconfig.Endpoint{{Protocol: autoconfig.IMAP, Host: "localhost", Port: 2993, Security: autoconfig.TLS}},
		Outgoing: []autoconfig.Endpoint{{Protocol: autoconfig.SMTP, Host: "localhost", Port: 2587, Security: autoconfig.StartTLS}}}
	addr := autoconfig.Address{Local: "demo", Domain: "example.test"}
	a := publishedAttempt(st, addr)
	if a.rec.Trust != report.Local || a.rec.Mechanism != Published || a.rec.Status != report.StatusPass {
		t.Fatalf("attempt = %+v", a.rec)
	}
	c := merge([]*attempt{a}, addr)
	if len(c) != 2 || c[0].Endpoint.Port != 2993 || c[1].Endpoint.Port != 2587 {
		t.Fatalf("candidates = %+v", c)
	}
	if c[0].Username != "demo" || c[0].UsernameForm != "localpart" || c[0].Sources[0] != Published {
		t.Errorf("candidate = %+v", c[0])
	}
	// No client finds settings through it: it is not a client mechanism.
	for _, v := range verdicts([]*attempt{a}, addr) {
		if v.Incoming != nil || v.Outgoing != nil {
			t.Errorf("%s would configure from the server's own config: %+v", v.Client, v)
		}
	}
}
