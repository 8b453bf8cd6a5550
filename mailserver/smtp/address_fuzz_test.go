package smtp

import (
	"strings"
	"testing"
)

// FuzzParseAddress: envelope addresses come straight from the network. The
// parser must not panic, an accepted domain is canonical (lower-case, no
// trailing dot, re-parses to itself), and relay-routing syntax in the local
// part never passes checkLocalPart.
func FuzzParseAddress(f *testing.F) {
	for _, s := range []string{"a@example.com", "A@EXAMPLE.com", "a%b@example.com", "b!a@example.com", "@x:a@example.com",
		"a@example.com.", "a@[127.0.0.1]", "\"a b\"@example.com", "ü@bücher.example", "a@", "@", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := parseAddress(s)
		if err != nil {
			return
		}
		if a.domain != strings.ToLower(a.domain) || strings.HasSuffix(a.domain, ".") || a.domain == "" {
			t.Fatalf("domain %q of %q is not canonical", a.domain, s)
		}
		b, err := parseAddress(a.String())
		if err != nil || b != a {
			t.Fatalf("%q -> %v does not re-parse to itself: %v %v", s, a, b, err)
		}
		for _, utf8OK := range []bool{false, true} {
			if checkLocalPart(a.local, utf8OK) == nil && strings.ContainsAny(a.local, "%!@\" ") {
				t.Fatalf("local part %q with routing syntax accepted", a.local)
			}
		}
	})
}
