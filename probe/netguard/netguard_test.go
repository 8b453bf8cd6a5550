package netguard

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"
)

// TestRefusedBeforeConnect dials forbidden addresses. The guard must refuse
// them in Control, before connect(2): the error must be the guard's, and it
// must come back at once (a real dial to 10.0.0.1 or 169.254.169.254 would
// time out in the sandbox).
func TestRefusedBeforeConnect(t *testing.T) {
	d := &Dialer{Policy: Policy{}, Timeout: 2 * time.Second}
	for _, s := range []string{"127.0.0.1", "10.0.0.1", "169.254.169.254", "::1", "fe80::1", "192.168.1.1", "100.64.0.1", "::ffff:127.0.0.1", "64:ff9b::a00:1", "2002:a00:1::1", "0.0.0.0", "224.0.0.1"} {
		ip := netip.MustParseAddr(s)
		t0 := time.Now()
		_, err := d.DialIP(context.Background(), "victim.example", ip, 443)
		var be *BlockedError
		if !errors.As(err, &be) || be.Port {
			t.Errorf("%s: got %v, want an address refusal from the guard", s, err)
		}
		if time.Since(t0) > time.Second {
			t.Errorf("%s: refusal took %s: the connection was attempted", s, time.Since(t0))
		}
	}
}

// TestPolicyRefuses checks the decisions the Control hook applies at
// connect time.
func TestPolicyRefuses(t *testing.T) {
	p := Policy{}
	if err := p.Check("", netip.MustParseAddrPort("169.254.169.254:80")); err == nil {
		t.Fatal("metadata address allowed")
	}
	if err := p.Check("", netip.MustParseAddrPort("192.0.2.1:8080")); err == nil {
		t.Fatal("port 8080 allowed")
	} else if blocked, port := IsBlocked(err); !blocked || !port {
		t.Fatalf("got %v, want a port refusal", err)
	}
}

func TestAllowances(t *testing.T) {
	p := Policy{AllowHosts: []string{"Mail.Example.COM."}, AllowPrefixes: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}, AllowPorts: []int{2525}}
	ok := []struct {
		host string
		ap   string
	}{
		{"mail.example.com", "127.0.0.1:993"},
		{"other", "10.1.2.3:587"},
		{"other", "8.8.8.8:2525"},
		{"other", "8.8.8.8:443"},
		{"other", "[2606:4700::1]:993"},
	}
	for _, c := range ok {
		if err := p.Check(c.host, netip.MustParseAddrPort(c.ap)); err != nil {
			t.Errorf("%s %s: %v", c.host, c.ap, err)
		}
	}
	bad := []struct{ host, ap string }{{"other", "10.2.0.1:993"}, {"mail.example.com", "127.0.0.1:22"}, {"other", "127.0.0.1:993"}}
	for _, c := range bad {
		if err := p.Check(c.host, netip.MustParseAddrPort(c.ap)); err == nil {
			t.Errorf("%s %s allowed", c.host, c.ap)
		}
	}
	if err := (Policy{Unrestricted: true}).Check("", netip.MustParseAddrPort("127.0.0.1:22")); err != nil {
		t.Errorf("unrestricted: %v", err)
	}
}

// TestConnectTimeCheck: the socket-level hook refuses a forbidden address
// by itself, for the address actually being connected to.
func TestConnectTimeCheck(t *testing.T) {
	d := &Dialer{Policy: Policy{AllowHosts: []string{"own.example"}}}
	for _, tc := range []struct {
		host, addr string
		ok         bool
	}{
		{"mail.example.com", "169.254.169.254:993", false},
		{"mail.example.com", "127.0.0.1:993", false},
		{"mail.example.com", "[::1]:993", false},
		{"mail.example.com", "10.1.2.3:993", false},
		{"mail.example.com", "93.184.216.34:993", true}, // only checked, never dialled
		{"own.example", "127.0.0.1:993", true},
	} {
		err := d.control(tc.host, 993)("tcp", tc.addr, nil)
		if (err == nil) != tc.ok {
			t.Errorf("control(%s, %s) = %v, want ok=%v", tc.host, tc.addr, err, tc.ok)
		}
	}
}
