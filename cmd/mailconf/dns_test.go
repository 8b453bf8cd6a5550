package main

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"mailconf/autoconfig/dnsrecords/dnstest"
	"mailconf/config"
)

const dnsTestTOML = `
data_dir = "/tmp/x"
hostname = "mail.example.com"
[listen]
https       = ":443"
smtp        = ":25"
submission  = ":587"
submissions = ":465"
imaps       = ":993"
[[domain]]
name = "example.com"
[[domain]]
name = "example.net"
`

func dnsConfig(t *testing.T, resolver string) *config.Config {
	t.Helper()
	toml := dnsTestTOML
	if resolver != "" {
		toml += "[dns]\nresolver = \"" + resolver + "\"\n"
	}
	cfg, err := config.Parse("test.toml", []byte(toml))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func runDNSTest(t *testing.T, cfg *config.Config, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	code = runDNS(ctx, cfg, args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// zoneOf parses printed records, failing the test on invalid zone text.
func zoneOf(t *testing.T, text string) []dns.RR {
	t.Helper()
	var rrs []dns.RR
	zp := dns.NewZoneParser(strings.NewReader(text), "", "stdout")
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		rrs = append(rrs, rr)
	}
	if err := zp.Err(); err != nil {
		t.Fatalf("output is not a zone: %v\n%s", err, text)
	}
	return rrs
}

func TestDNSPrints(t *testing.T) {
	code, out, errOut := runDNSTest(t, dnsConfig(t, ""), "example.net")
	if code != 0 || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	rrs := zoneOf(t, out)
	if len(rrs) == 0 {
		t.Fatal("no records printed")
	}
	var mx int
	for _, rr := range rrs {
		if !strings.HasSuffix(rr.Header().Name, "example.net.") {
			t.Errorf("record of another domain: %v", rr)
		}
		if m, ok := rr.(*dns.MX); ok && m.Mx == "mail.example.com." {
			mx++
		}
	}
	if mx != 1 {
		t.Errorf("%d MX records to mail.example.com, want 1", mx)
	}

	_, all, _ := runDNSTest(t, dnsConfig(t, ""))
	if n := len(zoneOf(t, all)); n != 2*len(rrs) {
		t.Errorf("all domains: %d records, want %d", n, 2*len(rrs))
	}
}

func TestDNSCheck(t *testing.T) {
	cfg := dnsConfig(t, "")
	_, published, _ := runDNSTest(t, cfg, "example.com")
	published += "mail.example.com. 300 IN A 192.0.2.10\n"
	good := dnstest.Start(t, dnstest.Config{Zone: published})

	// Flags after the domain, as the usage line writes them.
	code, out, errOut := runDNSTest(t, cfg, "example.com", "--check", "--resolver", good.Addr)
	if code != 0 || errOut != "" {
		t.Fatalf("matching zone: exit %d, stderr %q\n%s", code, errOut, out)
	}
	if !strings.Contains(out, "Check against "+good.Addr) || !strings.Contains(out, "published as suggested") {
		t.Errorf("no check summary:\n%s", out)
	}

	// [dns] resolver is the default; a wrong zone fails the check.
	broken := strings.Replace(published, "SRV 0 1 465 mail.example.com.", "SRV 0 1 4650 mail.example.com.", 1)
	broken = strings.Replace(broken, `"v=spf1 mx -all"`, `"v=spf1 -all"`, 1)
	if broken == published {
		t.Fatal("test zone edit did not apply")
	}
	bad := dnstest.Start(t, dnstest.Config{Zone: broken})
	code, out, errOut = runDNSTest(t, dnsConfig(t, bad.Addr), "--check", "example.com")
	if code != 1 || errOut != "" {
		t.Fatalf("wrong zone: exit %d, stderr %q", code, errOut)
	}
	for _, want := range []string{"port 4650, want port 465", "does not authorize mail.example.com", "add:", "remove:", "2 problem(s)"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if bad.UDPQueries() == 0 {
		t.Error("[dns] resolver was not used")
	}
}

func TestDNSUsageErrors(t *testing.T) {
	cfg := dnsConfig(t, "")
	for _, args := range [][]string{
		{"--bogus"},
		{"--resolver"},
		{"--resolver", "localhost"},
		{"--resolver", "127.0.0.1:99999"},
		{"example.org"},
		{"--check", "not a domain!"},
	} {
		code, _, errOut := runDNSTest(t, cfg, args...)
		if code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
		if strings.Count(errOut, "\n") != 1 || !strings.HasPrefix(errOut, "mailconf dns: ") {
			t.Errorf("%q: want one error line, got %q", args, errOut)
		}
	}
	if code, out, _ := runDNSTest(t, cfg, "-h"); code != 0 || !strings.Contains(out, "usage: mailconf dns") {
		t.Errorf("-h: exit %d, %q", code, out)
	}
}

func TestDNSResolverDown(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	code, _, errOut := runDNSTest(t, dnsConfig(t, ""), "--check", "--resolver", addr)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, addr) || strings.Contains(errOut, "goroutine") {
		t.Errorf("want one line naming the resolver, got %q", errOut)
	}
}
