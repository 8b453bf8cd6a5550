package testutil

import (
	"net"
	"testing"
)

// FreeAddr returns a 127.0.0.1 address with a port that was free a moment
// ago, for configs that must name their listeners before they start.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
