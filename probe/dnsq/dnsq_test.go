package dnsq_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"mailconf/probe/dnsq"
	"mailconf/probe/probetest"
	"mailconf/probe/report"
)

const zone = `
example.test.            300 IN MX 20 mx2.example.test.
example.test.            300 IN MX 10 mx1.example.test.
mx1.example.test.        300 IN A 127.0.0.1
mx2.example.test.        300 IN AAAA ::1
nullmx.test.             300 IN MX 0 .
_imap._tcp.example.test. 300 IN SRV 0 0 0 .
_imaps._tcp.example.test. 120 IN SRV 10 1 993 imap.example.test.
_imaps._tcp.example.test. 300 IN SRV 0 1 993 alias.example.test.
alias.example.test.      300 IN CNAME imap.example.test.
imap.example.test.       300 IN A 127.0.0.2
big.example.test.        300 IN TXT "tcp only"
`

func client(t *testing.T) (*dnsq.Client, *probetest.DNS) {
	s := probetest.NewDNS(t, zone)
	c, err := dnsq.New(s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Timeout = 500 * time.Millisecond
	return c, s
}

func TestLookups(t *testing.T) {
	c, s := client(t)
	ctx := context.Background()
	mx := c.Query(ctx, "example.test", dns.TypeMX)
	if got := mx.MXs(); len(got) != 2 || got[0].Host != "mx1.example.test." || got[1].Pref != 20 {
		t.Errorf("MX order: %+v", got)
	}
	if mx.Code() != "" || mx.TTL() != 300 || mx.Via != "udp" {
		t.Errorf("MX: code %q ttl %d via %s", mx.Code(), mx.TTL(), mx.Via)
	}
	if r := c.Query(ctx, "nullmx.test", dns.TypeMX); !r.NullMX() {
		t.Error("null MX not recognised")
	}
	if r := c.Query(ctx, "_imap._tcp.example.test", dns.TypeSRV); !r.Disabled() {
		t.Error("SRV target . not recognised")
	}
	srv := c.Query(ctx, "_imaps._tcp.example.test", dns.TypeSRV)
	if got := srv.SRVs(); len(got) != 2 || got[0].Priority != 0 || srv.TTL() != 120 {
		t.Errorf("SRV order/TTL: %+v ttl %d", got, srv.TTL())
	}
	a := c.Query(ctx, "alias.example.test", dns.TypeA)
	if len(a.CNAMEs) != 1 || a.CNAMEs[0] != "imap.example.test." || len(a.Addrs()) != 1 || a.Addrs()[0].String() != "127.0.0.2" {
		t.Errorf("CNAME chain %v addrs %v", a.CNAMEs, a.Addrs())
	}
	if r := c.Query(ctx, "mx2.example.test", dns.TypeAAAA); len(r.Addrs()) != 1 || !r.Addrs()[0].Is6() {
		t.Errorf("AAAA: %v", r.Addrs())
	}
	if r := c.Query(ctx, "missing.test", dns.TypeA); r.Code() != report.DNSNXDomain {
		t.Errorf("NXDOMAIN: %s", r.Code())
	}
	if r := c.Query(ctx, "imap.example.test", dns.TypeMX); r.Code() != report.DNSNoData {
		t.Errorf("NODATA: %s", r.Code())
	}
	s.Fail("fail.example.test")
	if r := c.Query(ctx, "fail.example.test", dns.TypeA); r.Code() != report.DNSServFail {
		t.Errorf("SERVFAIL: %s", r.Code())
	}
	s.Bogus("imap.example.test")
	if r := c.Query(ctx, "imap.example.test", dns.TypeA); r.Code() != report.DNSBogus {
		t.Errorf("bogus: %s", r.Code())
	}
	s.Silent("slow.example.test")
	if r := c.Query(ctx, "slow.example.test", dns.TypeA); r.Code() != report.DNSTimeout || r.Record().Rcode != "TIMEOUT" {
		t.Errorf("timeout: %s", r.Code())
	}
}

func TestTruncationRetriesOverTCP(t *testing.T) {
	c, s := client(t)
	s.Truncate("big.example.test")
	r := c.Query(context.Background(), "big.example.test", dns.TypeTXT)
	if r.Via != "tcp" || !r.Truncated || len(r.Strings()) != 1 {
		t.Errorf("via %s truncated %v answers %v", r.Via, r.Truncated, r.Strings())
	}
}

func TestADBit(t *testing.T) {
	c, s := client(t)
	ctx := context.Background()
	if c.Query(ctx, "example.test", dns.TypeMX).AD {
		t.Error("AD set without the server setting it")
	}
	s.AD("example.test")
	// A fresh client: the first one keeps its answer for the run.
	c, err := dnsq.New(s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Query(ctx, "example.test", dns.TypeMX).AD {
		t.Error("AD bit lost")
	}
}

// TestEachQuestionAskedOnce: a probe asks for the same host from several
// stages at once; the resolver must see each question once per client.
func TestEachQuestionAskedOnce(t *testing.T) {
	c, s := client(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	results := make([]*dnsq.Result, 8)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = c.Query(ctx, "IMAP.example.test.", dns.TypeA)
		}()
	}
	wg.Wait()
	for _, r := range results {
		if len(r.Addrs()) != 1 || r.Addrs()[0].String() != "127.0.0.2" {
			t.Errorf("answer %v", r.Addrs())
		}
	}
	if ips, _ := c.Lookup(ctx, "imap.example.test"); len(ips) != 1 {
		t.Errorf("Lookup after Query: %v", ips)
	}
	if n := s.Asked("imap.example.test", dns.TypeA); n != 1 {
		t.Errorf("A asked %d times, want 1", n)
	}
	if n := s.Asked("imap.example.test", dns.TypeAAAA); n != 1 {
		t.Errorf("AAAA asked %d times, want 1", n)
	}
	// A caller whose context has ended does not spoil the answer for the
	// next one.
	done, cancel := context.WithCancel(ctx)
	cancel()
	if r := c.Query(done, "mx1.example.test", dns.TypeA); r.Err == nil {
		t.Error("a cancelled query answered")
	}
	if r := c.Query(ctx, "mx1.example.test", dns.TypeA); len(r.Addrs()) != 1 {
		t.Errorf("after a cancelled asker: %v %v", r.Addrs(), r.Err)
	}
}

func TestNewDefaults(t *testing.T) {
	c, err := dnsq.New("192.0.2.53")
	if err != nil || c.Server != "192.0.2.53:53" {
		t.Errorf("%v %q", err, c.Server)
	}
	c, err = dnsq.New("[2001:db8::53]:5353")
	if err != nil || c.Server != "[2001:db8::53]:5353" {
		t.Errorf("%v %q", err, c.Server)
	}
}
