package autoconfig_test

import (
	"errors"
	"strings"
	"testing"

	"mailconf/autoconfig"
)

// domainOfLen builds a valid host name of exactly n bytes (n >= 5) from
// labels of at most 63 bytes, ending in ".com".
func domainOfLen(n int) string {
	var labels []string
	for rest := n - len(".com"); rest > 0; {
		l := min(63, rest)
		if rest-l == 1 {
			// One byte left would be a dot without a label.
			l--
		}
		labels = append(labels, strings.Repeat("b", l))
		rest -= l + 1 // the label and the dot after it
	}
	return strings.Join(labels, ".") + ".com"
}

func TestParseAddress(t *testing.T) {
	local64 := strings.Repeat("a", 64)
	cases := []struct {
		name, in string
		want     string // "" means an error is expected
	}{
		{"plain", "alice@example.com", "alice@example.com"},
		{"IDN domain to A-label", "user@bücher.example", "user@xn--bcher-kva.example"},
		{"A-label kept", "user@xn--bcher-kva.example", "user@xn--bcher-kva.example"},
		{"IDN upper case", "user@BÜCHER.example", "user@xn--bcher-kva.example"},
		{"full-width domain mapped", "a@ＥＸＡＭＰＬＥ.com", "a@example.com"},
		{"domain lower-cased, local kept", "Alice.Smith@EXAMPLE.Com", "Alice.Smith@example.com"},
		{"surrounding space trimmed", "  alice@example.com\t", "alice@example.com"},
		{"trailing dot on domain", "alice@example.com.", "alice@example.com"},
		{"plus tag", "alice+tag@example.com", "alice+tag@example.com"},
		{"XML-special atext kept", "o'neil&co@example.com", "o'neil&co@example.com"},
		{"other atext", "a!#$%*/=?^_`{|}~-@example.com", "a!#$%*/=?^_`{|}~-@example.com"},
		{"UTF-8 local part", "josé@example.com", "josé@example.com"},
		{"local part 64 bytes", local64 + "@example.com", local64 + "@example.com"},
		{"label 63 bytes", "a@" + strings.Repeat("b", 63) + ".com", "a@" + strings.Repeat("b", 63) + ".com"},
		{"address 254 bytes", local64 + "@" + domainOfLen(254-65), local64 + "@" + domainOfLen(254-65)},

		{"empty", "", ""},
		{"only spaces", "   ", ""},
		{"no at", "alice", ""},
		{"no local part", "@example.com", ""},
		{"no domain", "alice@", ""},
		{"two ats", "a@b@example.com", ""},
		{"single-label domain", "alice@localhost", ""},
		{"local part 65 bytes", local64 + "a@example.com", ""},
		{"label 64 bytes", "a@" + strings.Repeat("b", 64) + ".com", ""},
		{"address 255 bytes", local64 + "@" + domainOfLen(255-65), ""},
		{"huge input", strings.Repeat("a", 10000) + "@example.com", ""},
		{"empty label", "a@example..com", ""},
		{"hyphen label", "a@-example.com", ""},
		{"underscore", "a@ex_ample.com", ""},
		{"bad punycode", "a@xn--zz.example", ""},
		{"IP literal", "a@[127.0.0.1]", ""},
		{"bare IPv4", "a@127.0.0.1", ""},
		{"numeric top label", "a@example.123", ""},
		{"leading dot", ".a@example.com", ""},
		{"trailing dot local", "a.@example.com", ""},
		{"double dot local", "a..b@example.com", ""},
		{"less-than", "a<b@example.com", ""},
		{"greater-than", "a>b@example.com", ""},
		{"angle address", "<alice@example.com>", ""},
		{"display name", "Alice <alice@example.com>", ""},
		{"double quote", `"alice"@example.com`, ""},
		{"quoted space", `"a b"@example.com`, ""},
		{"backslash", `a\b@example.com`, ""},
		{"inner space", "a b@example.com", ""},
		{"space in domain", "a@exa mple.com", ""},
		{"newline", "a\n@example.com", ""},
		{"CRLF injection", "a@example.com\r\nX: y", ""},
		{"NUL", "a\x00b@example.com", ""},
		{"DEL", "a\x7fb@example.com", ""},
		{"semicolon", "a;b@example.com", ""},
		{"comment", "a(b)@example.com", ""},
		{"comma list", "a@example.com,b@example.com", ""},
		{"invalid UTF-8", "a\xff@example.com", ""},
		{"markup in domain", "a@<script>.com", ""},
		{"ampersand in domain", "a@ex&ample.com", ""},
		{"apostrophe in domain", "a@ex'ample.com", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := autoconfig.ParseAddress(c.in)
			if c.want == "" {
				if err == nil {
					t.Fatalf("ParseAddress(%q) = %q, want an error", c.in, got)
				}
				if !errors.Is(err, autoconfig.ErrAddress) {
					t.Errorf("error %v does not wrap ErrAddress", err)
				}
				if got != (autoconfig.Address{}) {
					t.Errorf("error with a non-zero address %+v", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseAddress(%q): %v", c.in, err)
			}
			if got.String() != c.want {
				t.Errorf("ParseAddress(%q) = %q, want %q", c.in, got, c.want)
			}
			if at := strings.LastIndexByte(c.want, '@'); got.Local != c.want[:at] || got.Domain != c.want[at+1:] {
				t.Errorf("parts %q / %q", got.Local, got.Domain)
			}
		})
	}
}

func TestDomainOfLen(t *testing.T) {
	for _, n := range []int{189, 190, 200, 253} {
		d := domainOfLen(n)
		if len(d) != n {
			t.Errorf("domainOfLen(%d) has %d bytes", n, len(d))
		}
		for _, l := range strings.Split(d, ".") {
			if len(l) == 0 || len(l) > 63 {
				t.Errorf("domainOfLen(%d): bad label %q", n, l)
			}
		}
	}
}
