package probetest

import (
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"

	"mailconf/internal/testutil"
)

// DNS is an authoritative server on 127.0.0.1 (UDP and TCP, same port)
// answering from zone text, with failure injection per name.
type DNS struct {
	Addr string // 127.0.0.1:port

	mu       sync.Mutex
	rrs      map[string][]dns.RR // by lower-case owner
	servfail map[string]bool
	bogus    map[string]bool // SERVFAIL unless checking disabled
	silent   map[string]bool // never answer
	truncate map[string]bool // UDP answers truncated
	ad       map[string]bool // set the AD bit
	asked    map[string]int  // questions received, by "name TYPE"
}

// NewDNS starts a server with the given zone text (owner names absolute).
func NewDNS(t testing.TB, zone string) *DNS {
	t.Helper()
	d := &DNS{rrs: map[string][]dns.RR{}, servfail: map[string]bool{}, bogus: map[string]bool{}, silent: map[string]bool{}, truncate: map[string]bool{}, ad: map[string]bool{}, asked: map[string]int{}}
	d.AddZone(t, zone)
	pc, ln := testutil.ListenUDPTCP(t)
	d.Addr = pc.LocalAddr().String()
	started := make(chan struct{}, 2)
	udp := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(d.serve("udp")), NotifyStartedFunc: func() { started <- struct{}{} }}
	tcp := &dns.Server{Listener: ln, Handler: dns.HandlerFunc(d.serve("tcp")), NotifyStartedFunc: func() { started <- struct{}{} }}
	go func() { _ = udp.ActivateAndServe() }()
	go func() { _ = tcp.ActivateAndServe() }()
	<-started
	<-started
	t.Cleanup(func() { _ = udp.Shutdown(); _ = tcp.Shutdown() })
	return d
}

// AddZone adds records from zone text.
func (d *DNS) AddZone(t testing.TB, zone string) {
	t.Helper()
	zp := dns.NewZoneParser(strings.NewReader(zone), ".", "test")
	d.mu.Lock()
	defer d.mu.Unlock()
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		n := strings.ToLower(rr.Header().Name)
		d.rrs[n] = append(d.rrs[n], rr)
	}
	if err := zp.Err(); err != nil {
		t.Fatal(err)
	}
}

// Fail makes name answer SERVFAIL; Bogus makes it a DNSSEC failure;
// Silent drops its queries; Truncate truncates its UDP answers; AD sets the
// AD bit on its answers.
func (d *DNS) Fail(name string)     { d.set(d.servfail, name) }
func (d *DNS) Bogus(name string)    { d.set(d.bogus, name) }
func (d *DNS) Silent(name string)   { d.set(d.silent, name) }
func (d *DNS) Truncate(name string) { d.set(d.truncate, name) }
func (d *DNS) AD(name string)       { d.set(d.ad, name) }

// Asked says how many times the server received a question (over UDP and
// TCP together), e.g. Asked("example.test", dns.TypeMX).
func (d *DNS) Asked(name string, qtype uint16) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.asked[strings.ToLower(dns.Fqdn(name))+" "+dns.TypeToString[qtype]]
}

func (d *DNS) set(m map[string]bool, name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	m[strings.ToLower(dns.Fqdn(name))] = true
}

func (d *DNS) exists(name string) bool {
	for owner := range d.rrs {
		if owner == name || strings.HasSuffix(owner, "."+name) {
			return true
		}
	}
	return false
}

func (d *DNS) serve(network string) func(w dns.ResponseWriter, req *dns.Msg) {
	return func(w dns.ResponseWriter, req *dns.Msg) {
		q := req.Question[0]
		name := strings.ToLower(q.Name)
		d.mu.Lock()
		defer d.mu.Unlock()
		d.asked[name+" "+dns.TypeToString[q.Qtype]]++
		m := new(dns.Msg)
		m.SetReply(req)
		m.Authoritative = true
		switch {
		case d.silent[name]:
			return
		case d.servfail[name], d.bogus[name] && !req.CheckingDisabled:
			m.SetRcode(req, dns.RcodeServerFailure)
			_ = w.WriteMsg(m)
			return
		}
		m.AuthenticatedData = d.ad[name]
		owner := name
		for i := 0; i < 8; i++ {
			var cname *dns.CNAME
			for _, rr := range d.rrs[owner] {
				if rr.Header().Rrtype == q.Qtype {
					m.Answer = append(m.Answer, rr)
				} else if c, ok := rr.(*dns.CNAME); ok && q.Qtype != dns.TypeCNAME {
					cname = c
				}
			}
			if len(m.Answer) > 0 || cname == nil {
				break
			}
			m.Answer = append(m.Answer, cname)
			owner = strings.ToLower(cname.Target)
		}
		if len(m.Answer) == 0 && !d.exists(name) {
			m.SetRcode(req, dns.RcodeNameError)
		}
		if len(m.Answer) == 0 {
			soa, _ := dns.NewRR("test. 60 IN SOA ns.test. host.test. 1 3600 600 86400 60")
			m.Ns = append(m.Ns, soa)
		}
		if network == "udp" && d.truncate[name] {
			m.Answer = nil
			m.Truncated = true
		}
		_ = w.WriteMsg(m)
	}
}
