package autoconfig

import (
	"net/mail"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzCheckLocal holds checkLocal to net/mail's dot-atom rule, which it
// replaces on the hot path: for unquoted local parts both must agree.
func FuzzCheckLocal(f *testing.F) {
	for _, s := range []string{"alice", "a.b", ".a", "a.", "a..b", "o'neil&co+x", "ü", "a b", "a\"b", "a(b)", "a,b", "a;b", "a[b", "x\x00", "{}|~^`"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, local string) {
		if !utf8.ValidString(local) || strings.ContainsAny(local, "<>\"\\ \t\r\n@") || local == "" {
			return // ParseAddress refuses these before checkLocal runs
		}
		ours := checkLocal(local) == nil
		a, err := mail.ParseAddress(local + "@example.com")
		theirs := err == nil && a.Address == local+"@example.com" && a.Name == ""
		if ours != theirs {
			t.Fatalf("checkLocal(%q) ok=%v, net/mail ok=%v (%v)", local, ours, theirs, err)
		}
	})
}
