package autoconfig

import (
	"net/url"
	"strings"
	"testing"
)

func TestQueryValue(t *testing.T) {
	for _, tc := range []struct{ query, want string }{
		{"emailaddress=u@example.test", "u@example.test"},
		{"emailaddress=u%40example.test", "u@example.test"},
		{"a=1&emailaddress=first&emailaddress=second", "first"},
		{"email%61ddress=by-escaped-key", "by-escaped-key"},
		{"emailaddress=a+b", "a b"},
		{"emailaddress=%zz&emailaddress=after-bad-escape", "after-bad-escape"},
		{"emailaddress=x;y&emailaddress=ok", "ok"},
		{"emailaddress", ""},
		{"emailaddress=", ""},
		{"&&emailaddress=v&", "v"},
		{"EmailAddress=case-matters", ""},
		{"", ""},
		{strings.Repeat("a=1&", maxQueryParams) + "emailaddress=over-the-cap", ""},
	} {
		if got := QueryValue(tc.query, "emailaddress"); got != tc.want {
			t.Errorf("QueryValue(%.60q) = %q, want %q", tc.query, got, tc.want)
		}
		if want := url.Values(mustParseQuery(tc.query)).Get("emailaddress"); want != tc.want {
			t.Errorf("table disagrees with url.ParseQuery on %.60q: %q", tc.query, want)
		}
	}
}

func TestQueryValueNoAllocation(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { QueryValue("x=1&emailaddress=u@example.test", "emailaddress") }); n != 0 {
		t.Errorf("plain lookup allocated %v times", n)
	}
}

// mustParseQuery is url.ParseQuery keeping what it parsed despite errors,
// as echo's QueryParam does.
func mustParseQuery(q string) url.Values {
	v, _ := url.ParseQuery(q)
	return v
}

// FuzzQueryValue holds QueryValue to url.ParseQuery, which echo's
// QueryParam uses, on every query.
func FuzzQueryValue(f *testing.F) {
	for _, s := range []string{"emailaddress=u@example.test", "emailaddress=%41&emailaddress=b", "a;b=c&emailaddress=%", "email%61ddress=+%2B"} {
		f.Add(s, "emailaddress")
	}
	f.Fuzz(func(t *testing.T, query, key string) {
		if got, want := QueryValue(query, key), mustParseQuery(query).Get(key); got != want {
			t.Errorf("QueryValue(%q, %q) = %q, url.ParseQuery says %q", query, key, got, want)
		}
	})
}
