package dnsq

import (
	"context"
	"net/netip"
	"testing"
)

// TestLookupWithoutQueries: literals and RFC 6761 localhost names never
// reach the resolver (here one that would not answer).
func TestLookupWithoutQueries(t *testing.T) {
	c := &Client{Server: "127.0.0.1:1"}
	for host, want := range map[string]string{
		"192.0.2.7":       "192.0.2.7",
		"2001:db8::1":     "2001:db8::1",
		"localhost":       "127.0.0.1",
		"Mail.LOCALHOST.": "127.0.0.1",
	} {
		ips, results := c.Lookup(context.Background(), host)
		if results != nil || len(ips) != 1 || ips[0] != netip.MustParseAddr(want) {
			t.Errorf("Lookup(%q) = %v, %d queries; want %s and none", host, ips, len(results), want)
		}
	}
	if _, ok := Localhost("localhost.example.com"); ok {
		t.Error("a name merely starting with localhost was taken as loopback")
	}
}
