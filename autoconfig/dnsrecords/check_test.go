package dnsrecords

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"mailconf/autoconfig/dnsrecords/dnstest"
)

// addresses of the test servers' host names.
const hostAddrs = `
mail.example.com.    300 IN A    192.0.2.10
mail.example.com.    300 IN AAAA 2001:db8::10
mx.hoster.example.   300 IN A    192.0.2.20
imap.provider.example. 300 IN A  198.51.100.1
pop.provider.example.  300 IN A  198.51.100.2
smtp.provider.example. 300 IN A  198.51.100.3
dav.example.org.       300 IN A  198.51.100.4
`

// publishedZone is what an operator who pasted mailconf's output has.
func publishedZone(t *testing.T, recs []Record) string {
	t.Helper()
	var buf bytes.Buffer
	if err := Write(&buf, recs); err != nil {
		t.Fatal(err)
	}
	return buf.String() + hostAddrs
}

func check(t *testing.T, addr string, recs []Record) []Difference {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	diffs, err := Check(ctx, addr, recs)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	for _, d := range diffs {
		if d.Message == "" || strings.Contains(d.Message, "\n") {
			t.Errorf("message must be one non-empty line: %q", d.Message)
		}
		if d.Add != "" {
			if _, err := dns.NewRR(d.Add); err != nil {
				t.Errorf("fix line %q does not parse: %v", d.Add, err)
			}
		}
	}
	return diffs
}

// summary lists "problem name type" of the failing differences, sorted.
func summary(diffs []Difference, advisory bool) []string {
	var out []string
	for _, d := range diffs {
		if d.Advisory == advisory {
			out = append(out, fmt.Sprintf("%s %s %s", d.Problem, strings.ToLower(d.Name), d.Type))
		}
	}
	sort.Strings(out)
	return out
}

func sameList(t *testing.T, what string, got, want []string) {
	t.Helper()
	sort.Strings(want)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s:\n got: %q\nwant: %q", what, got, want)
	}
}

const dkimKey = "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAwQ0H5d8Abk0ZqNgl3m8V0v3yq6aJq0Lq5hN1xQyVwL2lLq8JgQ3i6c8QvCq0n9t0U1Vb1Q9Yh2jR0Vd4p3K3X2x7u5u8bL0o9v5s2f3q9p5q0QIDAQAB"

func TestCheckMatches(t *testing.T) {
	for _, tc := range []struct{ name, toml string }{{"builtin", builtinTOML}, {"override", overrideTOML}} {
		t.Run(tc.name, func(t *testing.T) {
			dkim := map[string]string{"example.com": dkimKey, "example.org": dkimKey}
			recs := records(t, tc.toml, nil, dkim)
			srv := dnstest.Start(t, dnstest.Config{Zone: publishedZone(t, recs)})
			diffs := check(t, srv.Addr, recs)
			if len(diffs) != 0 {
				t.Errorf("differences against a zone of exactly these records: %+v", diffs)
			}
			if srv.TCPQueries() != 0 {
				t.Errorf("%d TCP queries without truncation", srv.TCPQueries())
			}
		})
	}
}

func TestCheckTruncatedRetriesOverTCP(t *testing.T) {
	recs := records(t, overrideTOML, []string{"example.org"}, nil)
	srv := dnstest.Start(t, dnstest.Config{Zone: publishedZone(t, recs), TruncateUDP: true})
	if diffs := check(t, srv.Addr, recs); len(diffs) != 0 {
		t.Errorf("differences after TCP retry: %+v", diffs)
	}
	if srv.UDPQueries() == 0 || srv.TCPQueries() != srv.UDPQueries() {
		t.Errorf("UDP %d, TCP %d queries: every truncated UDP answer should be retried over TCP", srv.UDPQueries(), srv.TCPQueries())
	}
}

// wrongZone has a wrong MX, a missing SRV, an SRV with the wrong port, a
// wrong SPF, an extra SRV target, a missing autodiscover name; other
// records differ in ways that are fine.
const wrongZone = `
example.com.                    300 IN MX    10 other.example.net.
example.com.                    300 IN TXT   "v=spf1 a:other.example.net -all"
example.com.                    300 IN TXT   "google-site-verification=abc123"
_submissions._tcp.example.com.  300 IN SRV   0 1 465 MAIL.EXAMPLE.COM.
_submission._tcp.example.com.   300 IN SRV   5 5 2587 mail.example.com.
_imap._tcp.example.com.         300 IN SRV   10 1 143 mail.example.com.
_imap._tcp.example.com.         300 IN SRV   20 1 143 old.example.net.
_pop3s._tcp.example.com.        300 IN SRV   20 1 995 mail.example.com.
_autodiscover._tcp.example.com. 300 IN SRV   0 0 443 mail.example.com.
autoconfig.example.com.         300 IN A     192.0.2.10
autoconfig.example.com.         300 IN AAAA  2001:db8::10
_dmarc.example.com.             300 IN TXT   "v=DMARC1; p=reject; rua=mailto:d@example.com"
` + hostAddrs

func TestCheckReportsDifferences(t *testing.T) {
	recs := records(t, builtinTOML, []string{"example.com"}, nil)
	srv := dnstest.Start(t, dnstest.Config{Zone: wrongZone})
	diffs := check(t, srv.Addr, recs)
	sameList(t, "problems", summary(diffs, false), []string{
		"wrong example.com. MX",
		"missing _imaps._tcp.example.com. SRV",
		"wrong _submission._tcp.example.com. SRV",
		"conflict _imap._tcp.example.com. SRV",
		"wrong example.com. TXT",
		"missing autodiscover.example.com. CNAME",
	})
	sameList(t, "suggestions", summary(diffs, true), []string{"missing _pop3._tcp.example.com. SRV"})
	if !Failed(diffs) {
		t.Error("Failed = false")
	}
	for _, d := range diffs {
		switch {
		case d.Type == "MX":
			if len(d.Remove) != 1 || !strings.Contains(d.Remove[0], "other.example.net.") || !strings.Contains(d.Add, "mail.example.com.") {
				t.Errorf("MX fix: remove %q add %q", d.Remove, d.Add)
			}
		case strings.HasPrefix(d.Name, "_submission._tcp"):
			if !strings.Contains(d.Message, "2587") || !strings.Contains(d.Message, "587") || !strings.HasSuffix(d.Add, "587 mail.example.com.") {
				t.Errorf("port difference: %+v", d)
			}
		case strings.HasPrefix(d.Name, "_imap._tcp"):
			if d.Add != "" || len(d.Remove) != 1 || !strings.Contains(d.Remove[0], "old.example.net.") {
				t.Errorf("extra SRV should only be removed: %+v", d)
			}
		case d.Type == "TXT":
			if !strings.Contains(d.Add, `"v=spf1 mx -all"`) || len(d.Remove) != 1 || strings.Contains(d.Remove[0], "google") {
				t.Errorf("SPF fix: %+v", d)
			}
		}
	}
}

func TestCheckMXPreferences(t *testing.T) {
	recs := records(t, builtinTOML, []string{"example.com"}, nil)
	base := publishedZone(t, recs)
	for _, tc := range []struct {
		extra string
		want  []string
	}{
		{"example.com. 300 IN MX 20 backup.example.net.", nil},
		{"example.com. 300 IN MX 5 other.example.net.", []string{"conflict example.com. MX"}},
		{"example.com. 300 IN MX 10 other.example.net.", []string{"conflict example.com. MX"}},
	} {
		srv := dnstest.Start(t, dnstest.Config{Zone: base + tc.extra + "\n"})
		sameList(t, tc.extra, summary(check(t, srv.Addr, recs), false), tc.want)
	}
}

func TestCheckSPFAndDMARC(t *testing.T) {
	recs := records(t, builtinTOML, []string{"example.com"}, nil)
	base := publishedZone(t, recs)
	ok, fail, advice := "", "wrong", "advice"
	for _, tc := range []struct {
		name, txt, want string
	}{
		{"example.com.", `"v=spf1 mx -all"`, ok},
		{"example.com.", `"V=SPF1 +MX ~all"`, ok},
		{"example.com.", `"v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all"`, ok},
		{"example.com.", `"v=spf1 ip4:192.0.2.10 -all"`, fail}, // IPv6 address not covered
		{"example.com.", `"v=spf1 a:mail.example.com -all"`, ok},
		{"example.com.", `"v=spf1 include:_spf.provider.example -all"`, ok},
		{"example.com.", `"v=spf1 " "mx -all"`, ok},
		{"example.com.", `"v=spf1 -all"`, fail},
		{"example.com.", `"v=spf1 -mx -all"`, fail},
		{"example.com.", `"v=spf1 mx +all"`, fail},
		{"example.com.", `"v=spf1 mx"`, advice},
		{"_dmarc.example.com.", `"v=DMARC1; p=none"`, advice},
		{"_dmarc.example.com.", `"v=DMARC1; rua=mailto:x@example.com"`, fail},
		{"_dmarc.example.com.", `"v=DMARC1; p=bounce"`, fail},
	} {
		t.Run(tc.txt, func(t *testing.T) {
			var zone []string
			for _, line := range strings.Split(base, "\n") {
				if strings.HasPrefix(line, tc.name+" ") && strings.Contains(line, " TXT ") {
					continue
				}
				zone = append(zone, line)
			}
			zone = append(zone, tc.name+" 300 IN TXT "+tc.txt)
			srv := dnstest.Start(t, dnstest.Config{Zone: strings.Join(zone, "\n")})
			diffs := check(t, srv.Addr, recs)
			got := ok
			if len(diffs) == 1 && diffs[0].Advisory {
				got = advice
			} else if len(diffs) == 1 && diffs[0].Problem == Wrong {
				got = fail
			} else if len(diffs) > 1 {
				got = fmt.Sprintf("%d differences", len(diffs))
			}
			if got != tc.want {
				t.Errorf("got %q, want %q: %+v", got, tc.want, diffs)
			}
		})
	}
}

func TestCheckDuplicatePolicies(t *testing.T) {
	recs := records(t, builtinTOML, []string{"example.com"}, nil)
	zone := publishedZone(t, recs) + `
example.com. 300 IN TXT "v=spf1 a -all"
_dmarc.example.com. 300 IN TXT "v=DMARC1; p=reject"
`
	srv := dnstest.Start(t, dnstest.Config{Zone: zone})
	sameList(t, "duplicates", summary(check(t, srv.Addr, recs), false), []string{"wrong _dmarc.example.com. TXT", "wrong example.com. TXT"})
}

func TestCheckDAVAndDKIM(t *testing.T) {
	otherKey := strings.Replace(dkimKey, "MIIB", "MIIC", 1)
	recs := records(t, overrideTOML, []string{"example.org"}, map[string]string{"example.org": dkimKey})
	var zone []string
	for _, line := range strings.Split(publishedZone(t, recs), "\n") {
		switch {
		case strings.HasPrefix(line, "_carddavs._tcp.example.org.") && strings.Contains(line, "TXT"):
			line = `_carddavs._tcp.example.org. 300 IN TXT "path=/carddav/"`
		case strings.HasPrefix(line, "_caldavs._tcp.example.org.") && strings.Contains(line, "SRV"):
			continue
		case strings.HasPrefix(line, "mailconf._domainkey."):
			line = "mailconf._domainkey.example.org. 300 IN TXT " + fmt.Sprintf("%q", otherKey)
		case strings.HasPrefix(line, "autodiscover.example.org."):
			line = "autodiscover.example.org. 300 IN CNAME elsewhere.example.net."
		case strings.HasPrefix(line, "autoconfig.example.org."):
			line = "autoconfig.example.org. 300 IN A 198.51.100.7"
		}
		zone = append(zone, line)
	}
	srv := dnstest.Start(t, dnstest.Config{Zone: strings.Join(zone, "\n")})
	sameList(t, "problems", summary(check(t, srv.Addr, recs), false), []string{
		"wrong _carddavs._tcp.example.org. TXT",
		"missing _caldavs._tcp.example.org. SRV",
		"wrong mailconf._domainkey.example.org. TXT",
		"wrong autodiscover.example.org. CNAME",
		"wrong autoconfig.example.org. CNAME",
	})
}

func TestCheckNullSRVConflict(t *testing.T) {
	recs := records(t, builtinTOML, []string{"example.com"}, nil)
	zone := publishedZone(t, recs)
	zone = strings.Replace(zone, "_pop3._tcp.example.com.        3600 IN SRV 0 0 0 .", "_pop3._tcp.example.com. 3600 IN SRV 0 1 110 mail.example.com.", 1)
	srv := dnstest.Start(t, dnstest.Config{Zone: zone})
	sameList(t, "problems", summary(check(t, srv.Addr, recs), false), []string{"conflict _pop3._tcp.example.com. SRV"})
}

func TestCheckServFail(t *testing.T) {
	recs := records(t, builtinTOML, []string{"example.com"}, nil)
	srv := dnstest.Start(t, dnstest.Config{Zone: publishedZone(t, recs), ServFail: []string{"_dmarc.example.com"}})
	sameList(t, "problems", summary(check(t, srv.Addr, recs), false), []string{"lookup-failed _dmarc.example.com. TXT"})
}

func TestCheckResolverDown(t *testing.T) {
	recs := records(t, builtinTOML, []string{"example.com"}, nil)

	// Nothing listens: the kernel answers "port unreachable".
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := pc.LocalAddr().String()
	pc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	diffs, err := Check(ctx, closed, recs)
	if err == nil || diffs != nil {
		t.Fatalf("closed port: diffs %v, err %v; want an error", diffs, err)
	}
	if !strings.Contains(err.Error(), "example.com") || strings.Contains(err.Error(), "\n") {
		t.Errorf("error should name the query in one line: %v", err)
	}

	// A server that never answers: the context's deadline ends the check.
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	if _, err := Check(ctx2, silent.LocalAddr().String(), recs); err == nil {
		t.Fatal("silent resolver: no error")
	}

	if _, err := Check(context.Background(), "no-port", recs); err == nil || !strings.Contains(err.Error(), "HOST:PORT") {
		t.Errorf("bad resolver address: %v", err)
	}
}

func TestCheckTargets(t *testing.T) {
	recs := records(t, overrideTOML, []string{"example.org"}, nil)
	var zone []string
	for _, line := range strings.Split(publishedZone(t, recs), "\n") {
		switch {
		case strings.HasPrefix(line, "pop.provider.example."):
			continue
		case strings.HasPrefix(line, "imap.provider.example."):
			line = "imap.provider.example. 300 IN CNAME mx.hoster.example."
		}
		zone = append(zone, line)
	}
	srv := dnstest.Start(t, dnstest.Config{Zone: strings.Join(zone, "\n")})
	diffs := check(t, srv.Addr, recs)
	sameList(t, "problems", summary(diffs, false), []string{"missing pop.provider.example. A"})
	sameList(t, "suggestions", summary(diffs, true), []string{"wrong imap.provider.example. CNAME"})
}

func TestSystemResolverServers(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(conf, []byte("# test\nsearch example.com\nnameserver 192.0.2.53\nnameserver 2001:db8::53\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := resolverServers("", conf)
	if err != nil || strings.Join(got, " ") != "192.0.2.53:53 [2001:db8::53]:53" {
		t.Errorf("servers %q, err %v", got, err)
	}
	if got, err := resolverServers("127.0.0.1:5353", conf); err != nil || len(got) != 1 || got[0] != "127.0.0.1:5353" {
		t.Errorf("explicit resolver: %q, %v", got, err)
	}
	empty := filepath.Join(dir, "empty.conf")
	if err := os.WriteFile(empty, []byte("search example.com\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := resolverServers("", empty); err == nil || !strings.Contains(err.Error(), "--resolver") {
		t.Errorf("no nameserver: %v", err)
	}
	if _, err := resolverServers("", filepath.Join(dir, "missing")); err == nil {
		t.Error("missing resolv.conf: no error")
	}
}
