package probe_test

import (
	"fmt"
	"slices"
	"testing"

	"mailconf/probe/discover"
	"mailconf/probe/report"
)

// TestGuessOnlyWhenNothingElse: Thunderbird-style guessing runs only when
// no mechanism gave a candidate, picks the first host name that resolves
// per protocol in Thunderbird's order, and offers both ports of each.
func TestGuessOnlyWhenNothingElse(t *testing.T) {
	t.Run("nothing published", func(t *testing.T) {
		w := newWorld(t)
		// No imap.: IMAP falls back to mail.; SMTP has its own name.
		w.Mail(t, "mail.example.test", 993, goodMail(t, w, "imap", "mail.example.test", true))
		w.Mail(t, "smtp.example.test", 465, goodMail(t, w, "smtp", "smtp.example.test", true))
		rep := run(t, w, address, "", nil)
		i := slices.IndexFunc(rep.Discovery, func(d report.Discovery) bool { return d.Mechanism == discover.Guess })
		if i < 0 {
			t.Fatalf("no guess attempt\n%s", dump(rep))
		}
		if g := rep.Discovery[i]; g.Status != report.StatusPass || g.Trust != report.UntrustedDNS {
			t.Errorf("guess attempt: status %s trust %s", g.Status, g.Trust)
		}
		// A mechanism whose host does not exist found nothing: normal for
		// most domains, so info, not a warning.
		for _, d := range rep.Discovery {
			if d.Mechanism == discover.ProviderHTTPS && (d.Status != report.StatusInfo || d.Error == nil || d.Error.Class != report.DNSNoAddress) {
				t.Errorf("autoconfig host without address: %+v", d)
			}
		}
		got := map[string]report.Endpoint{}
		for _, ep := range rep.Endpoints {
			got[fmt.Sprintf("%s %s:%d", ep.Protocol, ep.Host, ep.Port)] = ep
			if !slices.Equal(ep.Sources, []string{discover.Guess}) {
				t.Errorf("%s:%d sources %v, want only guess", ep.Host, ep.Port, ep.Sources)
			}
		}
		for _, want := range []string{"imap mail.example.test:993", "imap mail.example.test:143", "pop3 mail.example.test:995", "pop3 mail.example.test:110", "smtp smtp.example.test:465", "smtp smtp.example.test:587"} {
			if _, ok := got[want]; !ok {
				t.Errorf("no guessed endpoint %s; have %v", want, keys(got))
			}
		}
		for _, ok := range []string{"imap mail.example.test:993", "smtp smtp.example.test:465"} {
			if s := got[ok].Status; s != report.StatusPass {
				t.Errorf("%s: status %s, want pass\n%s", ok, s, dump(rep))
			}
		}
	})
	t.Run("autoconfig published", func(t *testing.T) {
		w := newWorld(t)
		w.Mail(t, "imap.example.test", 993, goodMail(t, w, "imap", "imap.example.test", true))
		w.Mail(t, "smtp.example.test", 465, goodMail(t, w, "smtp", "smtp.example.test", true))
		publish(t, w, imapTLS(), smtpTLS())
		rep := run(t, w, address, "", nil)
		for _, d := range rep.Discovery {
			if d.Mechanism == discover.Guess {
				t.Errorf("guessed although autoconfig gave candidates: %+v", d)
			}
		}
		if len(rep.Endpoints) != 2 {
			t.Errorf("%d endpoints, want the 2 published", len(rep.Endpoints))
		}
	})
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
