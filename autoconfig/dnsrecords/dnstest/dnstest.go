// Package dnstest runs an authoritative DNS server on 127.0.0.1 for tests:
// UDP and TCP on the same random port, zone data from zone-file text, and
// failure injection (truncated UDP answers, SERVFAIL, silence).
package dnstest

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"mailconf/internal/testutil"
)

// Config says what the server answers.
type Config struct {
	// Zone is zone-file text with fully qualified names.
	Zone string
	// TruncateUDP answers every UDP query with an empty, truncated reply,
	// so clients must retry over TCP.
	TruncateUDP bool
	// ServFail lists names (any case, with or without the final dot)
	// answered with SERVFAIL.
	ServFail []string
}

// Server is a running test server.
type Server struct {
	// Addr is "127.0.0.1:port", the same port for UDP and TCP.
	Addr string
	udp  atomic.Int64
	tcp  atomic.Int64
}

// UDPQueries is the number of queries received over UDP.
func (s *Server) UDPQueries() int64 { return s.udp.Load() }

// TCPQueries is the number of queries received over TCP.
func (s *Server) TCPQueries() int64 { return s.tcp.Load() }

// Start parses cfg.Zone and serves it until the test ends.
func Start(t testing.TB, cfg Config) *Server {
	t.Helper()
	zone := map[string][]dns.RR{}
	zp := dns.NewZoneParser(strings.NewReader(cfg.Zone), ".", "test-zone")
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		name := strings.ToLower(rr.Header().Name)
		zone[name] = append(zone[name], rr)
	}
	if err := zp.Err(); err != nil {
		t.Fatalf("dnstest: zone: %v", err)
	}
	servfail := map[string]bool{}
	for _, n := range cfg.ServFail {
		servfail[strings.ToLower(dns.Fqdn(n))] = true
	}

	pc, ln := testutil.ListenUDPTCP(t)
	s := &Server{Addr: pc.LocalAddr().String()}

	handler := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		overUDP := w.LocalAddr().Network() == "udp"
		if overUDP {
			s.udp.Add(1)
		} else {
			s.tcp.Add(1)
		}
		reply := new(dns.Msg)
		reply.SetReply(req)
		reply.Authoritative = true
		if len(req.Question) != 1 {
			reply.SetRcode(req, dns.RcodeFormatError)
			_ = w.WriteMsg(reply)
			return
		}
		q := req.Question[0]
		name := strings.ToLower(q.Name)
		switch {
		case servfail[name]:
			reply.SetRcode(req, dns.RcodeServerFailure)
		case overUDP && cfg.TruncateUDP:
			reply.Truncated = true
		default:
			answer(zone, reply, name, q.Qtype)
		}
		_ = w.WriteMsg(reply)
	})

	udpStarted, tcpStarted := make(chan struct{}), make(chan struct{})
	udpSrv := &dns.Server{PacketConn: pc, Handler: handler, NotifyStartedFunc: func() { close(udpStarted) }}
	tcpSrv := &dns.Server{Listener: ln, Handler: handler, NotifyStartedFunc: func() { close(tcpStarted) }}
	go func() { _ = udpSrv.ActivateAndServe() }()
	go func() { _ = tcpSrv.ActivateAndServe() }()
	for _, ch := range []chan struct{}{udpStarted, tcpStarted} {
		select {
		case <-ch:
		case <-time.After(5 * time.Second):
			t.Fatal("dnstest: server did not start")
		}
	}
	t.Cleanup(func() {
		_ = udpSrv.Shutdown()
		_ = tcpSrv.Shutdown()
	})
	return s
}

// answer fills reply for name/qtype, following CNAMEs inside the zone like
// a recursive resolver would.
func answer(zone map[string][]dns.RR, reply *dns.Msg, name string, qtype uint16) {
	for hops := 0; hops < 8; hops++ {
		rrs, exists := zone[name]
		if !exists {
			if hops == 0 {
				reply.Rcode = dns.RcodeNameError
			}
			break
		}
		var cname *dns.CNAME
		found := false
		for _, rr := range rrs {
			switch {
			case rr.Header().Rrtype == qtype:
				found = true
				reply.Answer = append(reply.Answer, rr)
			case rr.Header().Rrtype == dns.TypeCNAME:
				cname = rr.(*dns.CNAME)
			}
		}
		if found || cname == nil || qtype == dns.TypeCNAME {
			break
		}
		reply.Answer = append(reply.Answer, cname)
		name = strings.ToLower(cname.Target)
	}
	if len(reply.Answer) == 0 || reply.Answer[len(reply.Answer)-1].Header().Rrtype != qtype {
		reply.Ns = append(reply.Ns, &dns.SOA{
			Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 60},
			Ns:  "ns.test.", Mbox: "hostmaster.test.", Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: 60,
		})
	}
}
