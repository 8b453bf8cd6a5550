package connlimit

import (
	"errors"
	"net/netip"
	"testing"
)

func TestCounterKeysAndRelease(t *testing.T) {
	c := NewCounter(3, 1)
	mustAcquire := func(ip string) func() {
		t.Helper()
		release, err := c.Acquire(netip.MustParseAddr(ip))
		if err != nil {
			t.Fatalf("Acquire(%s): %v", ip, err)
		}
		return release
	}
	r1 := mustAcquire("2001:db8:1:2::1")
	// One IPv6 /64 is one client; an IPv4-mapped address is its IPv4.
	if _, err := c.Acquire(netip.MustParseAddr("2001:db8:1:2::ffff")); !errors.Is(err, ErrPerClient) {
		t.Errorf("second address of one /64: %v, want ErrPerClient", err)
	}
	mustAcquire("2001:db8:1:3::1")
	mustAcquire("192.0.2.1")
	if _, err := c.Acquire(netip.MustParseAddr("::ffff:192.0.2.1")); err == nil {
		t.Error("IPv4-mapped address counted apart from its IPv4")
	}
	if _, err := c.Acquire(netip.MustParseAddr("192.0.2.2")); !errors.Is(err, ErrTotal) {
		t.Errorf("fourth in all: %v, want ErrTotal", err)
	}
	// A second release of one slot must not free another.
	r1()
	r1()
	if n := c.Open(); n != 2 {
		t.Errorf("Open after a double release = %d, want 2", n)
	}
	mustAcquire("2001:db8:1:2::2")
	if _, err := c.Acquire(netip.MustParseAddr("192.0.2.3")); !errors.Is(err, ErrTotal) {
		t.Errorf("over the total after a double release: %v, want ErrTotal", err)
	}
}
