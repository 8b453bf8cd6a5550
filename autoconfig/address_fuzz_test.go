package autoconfig_test

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"mailconf/autoconfig"
	"mailconf/config"
)

// FuzzParseAddress: ParseAddress never panics, every error wraps
// ErrAddress, and an accepted address is within RFC 5321 limits, carries
// no character that could break out of XML, JSON or a header, has a
// canonical A-label domain, and parses back to itself.
func FuzzParseAddress(f *testing.F) {
	for _, s := range []string{
		"alice@example.com", "user@bücher.example", "o'neil&co@example.com", "",
		"a@b@c.d", "<a@b.c>", `"a b"@c.d`, "a@[127.0.0.1]", "a\x00@b.c", "a@xn--bcher-kva.example",
		strings.Repeat("a", 64) + "@" + strings.Repeat("b", 63) + ".com", "a@ＥＸＡＭＰＬＥ.com", "a\xff@b.c",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		a, err := autoconfig.ParseAddress(in)
		if err != nil {
			if !errors.Is(err, autoconfig.ErrAddress) {
				t.Fatalf("error %v does not wrap ErrAddress", err)
			}
			return
		}
		s := a.String()
		if len(s) > 254 || len(a.Local) > 64 || a.Local == "" {
			t.Fatalf("accepted %q: outside RFC 5321 limits", s)
		}
		if !utf8.ValidString(s) {
			t.Fatalf("accepted invalid UTF-8 %q", s)
		}
		if strings.ContainsAny(s, "<>\"\\ \t\r\n\x00") {
			t.Fatalf("accepted %q with a markup, quoting or control character", s)
		}
		if strings.Count(s, "@") != 1 {
			t.Fatalf("accepted %q with %d @", s, strings.Count(s, "@"))
		}
		if d, err := config.HostName(a.Domain); err != nil || d != a.Domain {
			t.Fatalf("domain %q is not canonical A-label form (%q, %v)", a.Domain, d, err)
		}
		again, err := autoconfig.ParseAddress(s)
		if err != nil || again != a {
			t.Fatalf("%q does not parse back to itself: %+v, %v", s, again, err)
		}
	})
}
