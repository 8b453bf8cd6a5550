package autoconfig

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"mailconf/config"
	"mailconf/internal/metrics"
	"mailconf/internal/testutil"
)

const testConfig = `data_dir = "/nonexistent"
hostname = "mail.example.com"
[listen]
http        = "127.0.0.1:8080"
submission  = "127.0.0.1:587"
submissions = "127.0.0.1:465"
imap        = "127.0.0.1:143"
imaps       = "127.0.0.1:993"
pop3s       = "127.0.0.1:995"

[[domain]]
name = "example.com"

[[domain]]
name     = "other.example"
username = "localpart"
caldav   = "https://dav.other.example/cal/"
  [[domain.server]]
  protocol = "smtp"
  host     = "smtp.provider.net"
  port     = 587
  security = "starttls"
  [[domain.server]]
  protocol = "pop3"
  host     = "pop.provider.net"
  port     = 110
  security = "starttls"
  [[domain.server]]
  protocol = "imap"
  host     = "imap.provider.net"
  port     = 143
  security = "starttls"
  [[domain.server]]
  protocol = "imap"
  host     = "imap.provider.net"
  port     = 993
  security = "tls"
`

func newTestService(t *testing.T) *Service {
	t.Helper()
	cfg, err := config.Parse("test.toml", []byte(testConfig))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := NewService(NewCatalog(cfg), metrics.New(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

func TestCatalogBuiltinAndOverrides(t *testing.T) {
	svc := newTestService(t)
	st, ok := svc.Catalog.Lookup("EXAMPLE.COM.")
	if !ok {
		t.Fatal("example.com not found")
	}
	want := []Endpoint{
		{IMAP, "mail.example.com", 993, TLS}, {IMAP, "mail.example.com", 143, StartTLS},
		{POP3, "mail.example.com", 995, TLS},
	}
	if len(st.Incoming) != len(want) {
		t.Fatalf("incoming = %+v", st.Incoming)
	}
	for i := range want {
		if st.Incoming[i] != want[i] {
			t.Errorf("incoming[%d] = %+v, want %+v", i, st.Incoming[i], want[i])
		}
	}
	if o := st.Outgoing; len(o) != 2 || o[0].Port != 465 || o[0].Security != TLS || o[1].Port != 587 {
		t.Errorf("outgoing = %+v, want 465 (tls) before 587", o)
	}
	if st.DisplayName != "example.com" || st.Username != UsernameAddress {
		t.Errorf("defaults: %+v", st)
	}

	ot, _ := svc.Catalog.Lookup("other.example")
	// Config order was smtp, pop3, imap/143, imap/993: the model orders by
	// protocol, implicit TLS first.
	if got := ot.Incoming; len(got) != 3 || got[0].Port != 993 || got[1].Port != 143 || got[2].Protocol != POP3 {
		t.Errorf("override incoming = %+v", got)
	}
	if p, ok := ot.Preferred(SMTP); !ok || p.Host != "smtp.provider.net" {
		t.Errorf("preferred smtp = %+v %v", p, ok)
	}
	if _, ok := st.Preferred(Protocol("jmap")); ok {
		t.Error("Preferred of an unknown protocol returned an endpoint")
	}
	addr := Address{Local: "bob", Domain: "other.example"}
	if ot.LoginName(addr) != "bob" || st.LoginName(Address{"bob", "example.com"}) != "bob@example.com" {
		t.Error("LoginName does not follow the username form")
	}
	if n := len(svc.Catalog.Domains()); n != 2 {
		t.Errorf("Domains() = %d", n)
	}
}

func TestResolve(t *testing.T) {
	svc := newTestService(t)
	cases := []struct {
		address, host string
		domain        string
		err           error
	}{
		{"a@example.com", "ignored.example", "example.com", nil},
		{"A@Example.COM", "", "example.com", nil},
		{"", "example.com", "example.com", nil},
		{"", "autoconfig.example.com:8080", "example.com", nil},
		{"", "AUTODISCOVER.other.example.", "other.example", nil},
		{"", "127.0.0.1:8080", "", ErrNoDomain},
		{"", "autoconfig.nope.example", "", ErrNoDomain},
		{"a@nope.example", "example.com", "", ErrUnknownDomain},
		{"not an address", "", "", ErrAddress},
		{"<script>@example.com", "", "", ErrAddress},
	}
	for _, tc := range cases {
		got, err := svc.Resolve(tc.address, tc.host)
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("Resolve(%q, %q) error = %v, want %v", tc.address, tc.host, err, tc.err)
			}
			continue
		}
		if err != nil || got.Settings.Domain != tc.domain {
			t.Errorf("Resolve(%q, %q) = %+v, %v; want %s", tc.address, tc.host, got, err, tc.domain)
			continue
		}
		if (tc.address == "") != (got.Addr == nil) {
			t.Errorf("Resolve(%q, %q): address presence wrong: %+v", tc.address, tc.host, got.Addr)
		}
	}
	if TargetStatus(ErrAddress) != 400 || TargetStatus(ErrUnknownDomain) != 404 || TargetStatus(ErrNoDomain) != 404 {
		t.Error("TargetStatus mapping wrong")
	}
}

func TestSettingsAPI(t *testing.T) {
	svc := newTestService(t)
	e := echo.New()
	svc.Register(e)
	srv := httptest.NewServer(e)
	defer srv.Close()

	get := func(query, host string) (int, string, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+"/api/v1/settings"+query, nil)
		if host != "" {
			req.Host = host
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatalf("%s: not JSON: %q", query, body)
		}
		return resp.StatusCode, resp.Header.Get("Content-Type"), m
	}

	code, ctype, m := get("?emailaddress="+url.QueryEscape("bob@other.example"), "")
	if code != 200 || !strings.HasPrefix(ctype, "application/json") {
		t.Fatalf("status %d %s", code, ctype)
	}
	if m["login_name"] != "bob" || m["address"] != "bob@other.example" || m["caldav"] != "https://dav.other.example/cal/" {
		t.Errorf("settings = %v", m)
	}
	in := m["incoming"].([]any)
	if first := in[0].(map[string]any); first["host"] != "imap.provider.net" || first["port"] != float64(993) || first["security"] != "tls" {
		t.Errorf("first incoming = %v", first)
	}

	// Without an address the Host header names the domain; no login name.
	code, _, m = get("", "autoconfig.example.com")
	if code != 200 || m["domain"] != "example.com" || m["login_name"] != nil {
		t.Errorf("by Host: %d %v", code, m)
	}
	// Any local part gets the same settings.
	_, _, a := get("?emailaddress=a@example.com", "")
	_, _, b := get("?emailaddress=zzz@example.com", "")
	delete(a, "address")
	delete(a, "login_name")
	delete(b, "address")
	delete(b, "login_name")
	if ja, jb := mustJSON(t, a), mustJSON(t, b); ja != jb {
		t.Errorf("answers differ by local part:\n%s\n%s", ja, jb)
	}

	for _, tc := range []struct {
		query string
		code  int
	}{
		{"?emailaddress=a@nope.example", 404},
		{"?emailaddress=" + url.QueryEscape(`"><script>alert(1)</script>@example.com`), 400},
		{"?emailaddress=" + strings.Repeat("x", 5000) + "@example.com", 400},
		{"", 404}, // Host 127.0.0.1 names no domain
	} {
		code, _, m := get(tc.query, "")
		if code != tc.code || m["error"] == nil {
			t.Errorf("%.60s = %d %v, want %d with an error", tc.query, code, m, tc.code)
		}
		if s := mustJSON(t, m); strings.Contains(s, "<script>") {
			t.Errorf("input echoed: %s", s)
		}
	}

	// /metrics counts the API's answers by status like every format's.
	for status, want := range map[int]float64{http.StatusOK: 4, http.StatusBadRequest: 2, http.StatusNotFound: 2} {
		c := svc.Metrics.AutoconfigRequests.WithLabelValues(FormatSettings, strconv.Itoa(status))
		if got := testutil.MetricValue(t, c); got != want {
			t.Errorf("counted %v settings answers with %d, want %v", got, status, want)
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
