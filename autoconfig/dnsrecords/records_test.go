package dnsrecords

import (
	"bytes"
	"flag"
	"strconv"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"mailconf/autoconfig"
	"mailconf/config"
	"mailconf/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite golden files")

// builtinTOML publishes the built-in server on the standard ports, without
// POP3 over STLS, so one service is "not offered".
const builtinTOML = `
data_dir = "/tmp/x"
hostname = "mail.example.com"
[listen]
http        = ":80"
https       = ":443"
smtp        = ":25"
submission  = ":587"
submissions = ":465"
imap        = ":143"
imaps       = ":993"
pop3s       = ":995"
[[domain]]
name = "example.com"
[[domain]]
name = "bücher.example"
`

// overrideTOML has one domain that fronts other servers and offers CalDAV
// and CardDAV, next to the built-in SMTP listener on an unprivileged port.
const overrideTOML = `
data_dir = "/tmp/x"
hostname = "mx.hoster.example"
[listen]
http       = "127.0.0.1:8080"
smtp       = "127.0.0.1:2525"
submission = "127.0.0.1:2587"
imaps      = "127.0.0.1:2993"
[[domain]]
name    = "example.org"
caldav  = "https://dav.example.org/caldav/"
carddav = "https://dav.example.org:8443/dav/card/"
  [[domain.server]]
  protocol = "imap"
  host     = "imap.provider.example"
  port     = 993
  security = "tls"
  [[domain.server]]
  protocol = "pop3"
  host     = "pop.provider.example"
  port     = 995
  security = "tls"
  [[domain.server]]
  protocol = "smtp"
  host     = "smtp.provider.example"
  port     = 587
  security = "starttls"
[[domain]]
name = "builtin.example"
`

func load(t *testing.T, toml string) (*config.Config, *autoconfig.Catalog) {
	t.Helper()
	cfg, err := config.Parse("test.toml", []byte(toml))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg, autoconfig.NewCatalog(cfg)
}

func records(t *testing.T, toml string, domains []string, dkim map[string]string) []Record {
	t.Helper()
	cfg, cat := load(t, toml)
	recs, err := Records(cfg, cat, domains, dkim)
	if err != nil {
		t.Fatalf("Records: %v", err)
	}
	return recs
}

// find returns the records of one owner name and type.
func find(recs []Record, name string, rrtype uint16) []Record {
	var out []Record
	for _, r := range recs {
		if strings.EqualFold(r.Name(), dns.Fqdn(name)) && r.RR.Header().Rrtype == rrtype {
			out = append(out, r)
		}
	}
	return out
}

func one[T dns.RR](t *testing.T, recs []Record, name string, rrtype uint16) T {
	t.Helper()
	got := find(recs, name, rrtype)
	if len(got) != 1 {
		t.Fatalf("%s %s: %d records, want 1: %v", name, dns.TypeToString[rrtype], len(got), got)
	}
	return got[0].RR.(T)
}

// parseBack checks that the printed fragment is a valid zone holding
// exactly recs.
func parseBack(t *testing.T, text string, recs []Record) {
	t.Helper()
	zp := dns.NewZoneParser(strings.NewReader(text), "", "printed")
	var parsed []dns.RR
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		parsed = append(parsed, rr)
	}
	if err := zp.Err(); err != nil {
		t.Fatalf("printed zone does not parse: %v\n%s", err, text)
	}
	if len(parsed) != len(recs) {
		t.Fatalf("parsed %d records, wrote %d", len(parsed), len(recs))
	}
	for i, r := range recs {
		if !dns.IsDuplicate(parsed[i], r.RR) || parsed[i].Header().Ttl != TTL {
			t.Errorf("record %d: parsed %q, wrote %q", i, parsed[i], r.RR)
		}
	}
}

func TestBuiltinDomain(t *testing.T) {
	recs := records(t, builtinTOML, []string{"example.com"}, nil)

	mx := one[*dns.MX](t, recs, "example.com", dns.TypeMX)
	if mx.Mx != "mail.example.com." {
		t.Errorf("MX target %q, want the hostname", mx.Mx)
	}
	srv := func(label string) *dns.SRV { return one[*dns.SRV](t, recs, label+".example.com", dns.TypeSRV) }
	for label, port := range map[string]uint16{"_submissions._tcp": 465, "_submission._tcp": 587, "_imaps._tcp": 993, "_imap._tcp": 143, "_pop3s._tcp": 995} {
		if s := srv(label); s.Port != port || s.Target != "mail.example.com." {
			t.Errorf("%s: %d %s, want %d mail.example.com.", label, s.Port, s.Target, port)
		}
	}
	if s := srv("_pop3._tcp"); s.Target != "." || s.Port != 0 || s.Priority != 0 || s.Weight != 0 {
		t.Errorf("_pop3 is not offered, want 0 0 0 ., got %v", s)
	}
	if !find(recs, "_pop3._tcp.example.com", dns.TypeSRV)[0].Advisory {
		t.Error("the null SRV record should be advisory")
	}
	// RFC 8314: implicit TLS preferred; RFC 6186: IMAP before POP3.
	if !(srv("_submissions._tcp").Priority < srv("_submission._tcp").Priority) {
		t.Error("_submissions should be preferred over _submission")
	}
	if !(srv("_imaps._tcp").Priority < srv("_imap._tcp").Priority && srv("_imap._tcp").Priority < srv("_pop3s._tcp").Priority) {
		t.Error("want priorities imaps < imap < pop3s")
	}
	ad := srv("_autodiscover._tcp")
	if ad.Port != 443 || ad.Target != "mail.example.com." {
		t.Errorf("_autodiscover: %v", ad)
	}
	for _, n := range []string{"autoconfig.example.com", "autodiscover.example.com"} {
		if c := one[*dns.CNAME](t, recs, n, dns.TypeCNAME); c.Target != "mail.example.com." {
			t.Errorf("%s CNAME %s", n, c.Target)
		}
	}
	if v := strings.Join(one[*dns.TXT](t, recs, "example.com", dns.TypeTXT).Txt, ""); v != "v=spf1 mx -all" {
		t.Errorf("SPF %q", v)
	}
	if v := strings.Join(one[*dns.TXT](t, recs, "_dmarc.example.com", dns.TypeTXT).Txt, ""); v != DMARCPolicy {
		t.Errorf("DMARC %q", v)
	}
	if got := find(recs, "mailconf._domainkey.example.com", dns.TypeTXT); len(got) != 0 {
		t.Errorf("DKIM record without a key: %v", got)
	}
	if got := find(recs, "_caldavs._tcp.example.com", dns.TypeSRV); len(got) != 0 {
		t.Errorf("CalDAV record without caldav: %v", got)
	}
	for _, r := range recs {
		if r.Domain != "example.com" {
			t.Errorf("record of %s when only example.com was asked for", r.Domain)
		}
	}
}

func TestOverrideDomain(t *testing.T) {
	recs := records(t, overrideTOML, []string{"EXAMPLE.ORG."}, nil)

	// The built-in SMTP listener still receives the domain's mail.
	mx := one[*dns.MX](t, recs, "example.org", dns.TypeMX)
	if mx.Mx != "mx.hoster.example." {
		t.Errorf("MX %q, want the built-in server", mx.Mx)
	}
	if r := find(recs, "example.org", dns.TypeMX)[0]; !strings.Contains(r.Comment, "2525") {
		t.Errorf("MX comment should mention the unprivileged port: %q", r.Comment)
	}
	want := map[string]string{
		"_imaps._tcp":      "imap.provider.example.:993",
		"_pop3s._tcp":      "pop.provider.example.:995",
		"_submission._tcp": "smtp.provider.example.:587",
		"_imap._tcp":       ".:0", "_pop3._tcp": ".:0", "_submissions._tcp": ".:0",
	}
	for label, target := range want {
		s := one[*dns.SRV](t, recs, label+".example.org", dns.TypeSRV)
		if got := s.Target + ":" + strconv.Itoa(int(s.Port)); got != target {
			t.Errorf("%s: %s, want %s", label, got, target)
		}
	}
	if one[*dns.SRV](t, recs, "_imaps._tcp.example.org", dns.TypeSRV).Priority >= one[*dns.SRV](t, recs, "_pop3s._tcp.example.org", dns.TypeSRV).Priority {
		t.Error("IMAP should be preferred over POP3")
	}
	cal := one[*dns.SRV](t, recs, "_caldavs._tcp.example.org", dns.TypeSRV)
	if cal.Port != 443 || cal.Target != "dav.example.org." {
		t.Errorf("_caldavs: %v", cal)
	}
	card := one[*dns.SRV](t, recs, "_carddavs._tcp.example.org", dns.TypeSRV)
	if card.Port != 8443 {
		t.Errorf("_carddavs port %d, want 8443 from the URL", card.Port)
	}
	if p := one[*dns.TXT](t, recs, "_carddavs._tcp.example.org", dns.TypeTXT).Txt; len(p) != 1 || p[0] != "path=/dav/card/" {
		t.Errorf("_carddavs TXT %q", p)
	}
	if s := one[*dns.SRV](t, recs, "_caldav._tcp.example.org", dns.TypeSRV); s.Target != "." {
		t.Errorf("plain-HTTP CalDAV should be not offered: %v", s)
	}
	// SPF: the MX (which sends bounces) and the provider's submission host.
	if v := strings.Join(one[*dns.TXT](t, recs, "example.org", dns.TypeTXT).Txt, ""); v != "v=spf1 mx a:smtp.provider.example -all" {
		t.Errorf("SPF %q", v)
	}
}

func TestNoSMTPListenerNoMX(t *testing.T) {
	toml := strings.Replace(builtinTOML, `smtp        = ":25"`, "", 1)
	recs := records(t, toml, nil, nil)
	if got := find(recs, "example.com", dns.TypeMX); len(got) != 0 {
		t.Errorf("MX published although mailconf receives no mail: %v", got)
	}
	if v := strings.Join(one[*dns.TXT](t, recs, "example.com", dns.TypeTXT).Txt, ""); v != "v=spf1 a:mail.example.com -all" {
		t.Errorf("SPF without MX: %q", v)
	}
}

func TestUnknownDomain(t *testing.T) {
	cfg, cat := load(t, builtinTOML)
	for _, d := range []string{"example.net", "", "not a domain"} {
		if _, err := Records(cfg, cat, []string{"example.com", d}, nil); err == nil || !strings.Contains(err.Error(), "not a served domain") {
			t.Errorf("%q: err = %v, want not a served domain", d, err)
		}
	}
	// IDN names are accepted in either form.
	recs, err := Records(cfg, cat, []string{"BÜCHER.example"}, nil)
	if err != nil || len(recs) == 0 || recs[0].Domain != "xn--bcher-kva.example" {
		t.Fatalf("IDN lookup: %v, %v", recs, err)
	}
}

func TestDKIM(t *testing.T) {
	key := "v=DKIM1; k=rsa; p=" + strings.Repeat("MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA", 9)
	recs := records(t, builtinTOML, nil, map[string]string{"Example.COM": key, "bücher.example": "  "})
	txt := one[*dns.TXT](t, recs, "mailconf._domainkey.example.com", dns.TypeTXT)
	if strings.Join(txt.Txt, "") != key {
		t.Errorf("DKIM value changed: %q", txt.Txt)
	}
	for _, s := range txt.Txt {
		if len(s) > 255 {
			t.Errorf("character-string of %d bytes", len(s))
		}
	}
	if len(txt.Txt) < 2 {
		t.Errorf("a %d-byte key should be split", len(key))
	}
	if got := find(recs, "mailconf._domainkey.xn--bcher-kva.example", dns.TypeTXT); len(got) != 0 {
		t.Errorf("blank key published: %v", got)
	}
	var buf bytes.Buffer
	if err := Write(&buf, recs); err != nil {
		t.Fatal(err)
	}
	parseBack(t, buf.String(), recs)
}

func TestGolden(t *testing.T) {
	for _, tc := range []struct {
		name, toml string
	}{
		{"builtin.zone", builtinTOML},
		{"override.zone", overrideTOML},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recs := records(t, tc.toml, nil, nil)
			var buf bytes.Buffer
			if err := Write(&buf, recs); err != nil {
				t.Fatal(err)
			}
			parseBack(t, buf.String(), recs)
			testutil.Golden(t, tc.name, buf.Bytes(), *update)
		})
	}
}
