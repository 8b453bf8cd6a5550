package thunderbird

import (
	"bytes"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"mailconf/autoconfig"
	"mailconf/autoconfig/autoconfigtest"
	"mailconf/internal/metrics"
	"mailconf/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite golden files")

// testConfig serves three domains: one on the built-in server, one with
// [[domain.server]] overrides, DAV and a hostile display name, and an IDN.
const testConfig = `
data_dir = "/nonexistent"
hostname = "mail.example.test"

[listen]
http        = "127.0.0.1:8080"
submission  = "127.0.0.1:2587"
submissions = "127.0.0.1:2465"
imap        = "127.0.0.1:2143"
imaps       = "127.0.0.1:2993"
pop3        = "127.0.0.1:2110"
pop3s       = "127.0.0.1:2995"

[[domain]]
name         = "example.test"
display_name = "Example Test Mail"

[[domain]]
name         = "example.org"
display_name = "Org & <Friends> \"Mail\" 'x'"
username     = "localpart"
caldav       = "https://dav.example.org/caldav/"
carddav      = "https://dav.example.org/carddav/"

  [[domain.server]]
  protocol = "smtp"
  host     = "smtp.example.org"
  port     = 587
  security = "starttls"

  [[domain.server]]
  protocol = "pop3"
  host     = "pop.example.org"
  port     = 995
  security = "tls"

  [[domain.server]]
  protocol = "imap"
  host     = "imap.example.org"
  port     = 143
  security = "starttls"

  [[domain.server]]
  protocol = "imap"
  host     = "imap.example.org"
  port     = 993
  security = "tls"

[[domain]]
name = "bücher.example"
`

type fixture struct {
	svc *autoconfig.Service
	m   *metrics.Metrics
	h   *Handler
	srv *httptest.Server
}

func newFixture(t testing.TB, toml string) *fixture {
	t.Helper()
	svc := autoconfigtest.Service(t, toml)
	h, err := New(svc)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e := echo.New()
	h.Register(e)
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return &fixture{svc: svc, m: svc.Metrics, h: h, srv: srv}
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (f *fixture) do(t testing.TB, method, target, host string) answer {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+target, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{resp.StatusCode, resp.Header, body}
}

func (f *fixture) count(t testing.TB, status string) float64 {
	t.Helper()
	return testutil.MetricValue(t, f.m.AutoconfigRequests.WithLabelValues(autoconfig.FormatThunderbird, status))
}

func q(addr string) string { return "?emailaddress=" + url.QueryEscape(addr) }

func TestGolden(t *testing.T) {
	f := newFixture(t, testConfig)
	cases := []struct {
		golden, target, host string
		address              string // what the client substitutes
		wantIn, wantOut      clientServer
		wantDisplay          string
	}{
		{
			golden: "builtin-address.xml", target: "/mail/config-v1.1.xml" + q("alice@example.test"),
			address:     "alice@example.test",
			wantIn:      clientServer{Type: "imap", Host: "mail.example.test", Port: 2993, Socket: "SSL", Username: "alice@example.test", Auth: "password-cleartext"},
			wantOut:     clientServer{Type: "smtp", Host: "mail.example.test", Port: 2465, Socket: "SSL", Username: "alice@example.test", Auth: "password-cleartext"},
			wantDisplay: "Example Test Mail",
		},
		{
			golden: "builtin-generic.xml", target: "/mail/config-v1.1.xml", host: "autoconfig.example.test",
			address:     "bob@example.test",
			wantIn:      clientServer{Type: "imap", Host: "mail.example.test", Port: 2993, Socket: "SSL", Username: "bob@example.test", Auth: "password-cleartext"},
			wantOut:     clientServer{Type: "smtp", Host: "mail.example.test", Port: 2465, Socket: "SSL", Username: "bob@example.test", Auth: "password-cleartext"},
			wantDisplay: "Example Test Mail",
		},
		{
			golden: "custom-address.xml", target: "/.well-known/autoconfig/mail/config-v1.1.xml" + q("Carol.O'Neil&co@Example.ORG"),
			address:     "Carol.O'Neil&co@example.org",
			wantIn:      clientServer{Type: "imap", Host: "imap.example.org", Port: 993, Socket: "SSL", Username: "Carol.O'Neil&co", Auth: "password-cleartext"},
			wantOut:     clientServer{Type: "smtp", Host: "smtp.example.org", Port: 587, Socket: "STARTTLS", Username: "Carol.O'Neil&co", Auth: "password-cleartext"},
			wantDisplay: `Org & <Friends> "Mail" 'x'`,
		},
		{
			golden: "custom-generic.xml", target: "/.well-known/autoconfig/mail/config-v1.1.xml", host: "example.org:443",
			address:     "dave@example.org",
			wantIn:      clientServer{Type: "imap", Host: "imap.example.org", Port: 993, Socket: "SSL", Username: "dave", Auth: "password-cleartext"},
			wantOut:     clientServer{Type: "smtp", Host: "smtp.example.org", Port: 587, Socket: "STARTTLS", Username: "dave", Auth: "password-cleartext"},
			wantDisplay: `Org & <Friends> "Mail" 'x'`,
		},
		{
			golden: "idn-address.xml", target: "/mail/config-v1.1.xml" + q("erika@bücher.example"),
			address:     "erika@xn--bcher-kva.example",
			wantIn:      clientServer{Type: "imap", Host: "mail.example.test", Port: 2993, Socket: "SSL", Username: "erika@xn--bcher-kva.example", Auth: "password-cleartext"},
			wantOut:     clientServer{Type: "smtp", Host: "mail.example.test", Port: 2465, Socket: "SSL", Username: "erika@xn--bcher-kva.example", Auth: "password-cleartext"},
			wantDisplay: "xn--bcher-kva.example",
		},
	}
	for _, c := range cases {
		t.Run(c.golden, func(t *testing.T) {
			a := f.do(t, http.MethodGet, c.target, c.host)
			if a.status != http.StatusOK {
				t.Fatalf("status %d: %s", a.status, a.body)
			}
			if ct := a.header.Get("Content-Type"); ct != "text/xml; charset=utf-8" {
				t.Errorf("Content-Type %q", ct)
			}
			testutil.XMLLint(t, a.body)
			testutil.Golden(t, c.golden, a.body, *update)
			for name, parse := range map[string]func([]byte, string) (*clientResult, error){"desktop": parseDesktop, "android": parseAndroid} {
				res, err := parse(a.body, c.address)
				if err != nil {
					t.Fatalf("%s parser rejects the answer: %v\n%s", name, err, a.body)
				}
				if res.Incoming != c.wantIn {
					t.Errorf("%s incoming = %+v, want %+v", name, res.Incoming, c.wantIn)
				}
				if res.Outgoing != c.wantOut {
					t.Errorf("%s outgoing = %+v, want %+v", name, res.Outgoing, c.wantOut)
				}
				if res.DisplayName != c.wantDisplay {
					t.Errorf("%s display name = %q, want %q", name, res.DisplayName, c.wantDisplay)
				}
			}
		})
	}
}

// TestDocumentContent checks what the golden files cannot make obvious:
// IMAP before POP3, DAV sections only where configured, placeholders only
// without an address.
func TestDocumentContent(t *testing.T) {
	f := newFixture(t, testConfig)
	custom := f.do(t, http.MethodGet, "/mail/config-v1.1.xml", "autoconfig.example.org")
	s := string(custom.body)
	imap, pop := strings.Index(s, `<incomingServer type="imap">`), strings.Index(s, `<incomingServer type="pop3">`)
	if imap < 0 || pop < 0 || imap > pop {
		t.Errorf("want IMAP before POP3:\n%s", s)
	}
	for _, want := range []string{
		`<addressBook type="carddav">`, `<url>https://dav.example.org/carddav/</url>`,
		`<calendar type="caldav">`, `<url>https://dav.example.org/caldav/</url>`,
		`<username>%EMAILLOCALPART%</username>`, `<authentication>http-basic</authentication>`,
	} {
		if !strings.Contains(s, want) {
			t.Errorf("custom domain answer lacks %s", want)
		}
	}
	if strings.Count(s, "%EMAILLOCALPART%") != 6 {
		t.Errorf("want the placeholder in all 6 username slots:\n%s", s)
	}
	builtin := f.do(t, http.MethodGet, "/mail/config-v1.1.xml"+q("x@example.test"), "")
	b := string(builtin.body)
	for _, absent := range []string{"addressBook", "calendar", "%EMAIL", "plain<", "<password"} {
		if strings.Contains(b, absent) {
			t.Errorf("built-in domain answer contains %q", absent)
		}
	}
	if strings.Count(b, "<username>x@example.test</username>") != 6 {
		t.Errorf("want the address in all 6 username slots:\n%s", b)
	}
	if builtin.header.Get("Cache-Control") != "no-store" {
		t.Errorf("answer with an address: Cache-Control %q", builtin.header.Get("Cache-Control"))
	}
}

// TestSameAnswerForAnyLocalPart: the answer must not reveal whether a
// mailbox exists, so two addresses differ only in the login name.
func TestSameAnswerForAnyLocalPart(t *testing.T) {
	f := newFixture(t, testConfig)
	a := f.do(t, http.MethodGet, "/mail/config-v1.1.xml"+q("exists@example.test"), "")
	b := f.do(t, http.MethodGet, "/mail/config-v1.1.xml"+q("no-such-user-9f2@example.test"), "")
	if a.status != 200 || b.status != 200 {
		t.Fatalf("status %d / %d", a.status, b.status)
	}
	got := bytes.ReplaceAll(a.body, []byte("exists@example.test"), []byte("no-such-user-9f2@example.test"))
	if !bytes.Equal(got, b.body) {
		t.Errorf("answers differ beyond the login name:\n%s\n---\n%s", a.body, b.body)
	}
}

func TestHTTP(t *testing.T) {
	f := newFixture(t, testConfig)
	type tc struct {
		name, method, target, host string
		status                     int
		wantXML                    bool
	}
	var cases []tc
	for _, p := range paths {
		cases = append(cases,
			tc{"GET address " + p, http.MethodGet, p + q("alice@example.test"), "", 200, true},
			tc{"GET host " + p, http.MethodGet, p, "autoconfig.example.test", 200, true},
			tc{"HEAD " + p, http.MethodHead, p + q("alice@example.test"), "", 200, false},
			tc{"POST " + p, http.MethodPost, p + q("alice@example.test"), "", 405, false},
			tc{"unknown domain " + p, http.MethodGet, p + q("alice@example.net"), "", 404, false},
		)
	}
	cases = append(cases,
		tc{"no address, unknown host", http.MethodGet, "/mail/config-v1.1.xml", "autoconfig.example.net", 404, false},
		tc{"no address, IP host", http.MethodGet, "/mail/config-v1.1.xml", "127.0.0.1", 404, false},
		tc{"empty address uses host", http.MethodGet, "/mail/config-v1.1.xml?emailaddress=", "autodiscover.example.test", 200, true},
		tc{"no at", http.MethodGet, "/mail/config-v1.1.xml" + q("alice"), "", 400, false},
		tc{"angle brackets", http.MethodGet, "/mail/config-v1.1.xml" + q("<script>@example.test"), "", 400, false},
		tc{"quotes", http.MethodGet, "/mail/config-v1.1.xml" + q(`"a b"@example.test`), "", 400, false},
		tc{"display name form", http.MethodGet, "/mail/config-v1.1.xml" + q("Alice <alice@example.test>"), "", 400, false},
		tc{"overlong", http.MethodGet, "/mail/config-v1.1.xml" + q(strings.Repeat("a", 5000)+"@example.test"), "", 400, false},
		tc{"not utf-8", http.MethodGet, "/mail/config-v1.1.xml?emailaddress=%FF%FE@example.test", "", 400, false},
		tc{"control char", http.MethodGet, "/mail/config-v1.1.xml?emailaddress=a%00b@example.test", "", 400, false},
		tc{"bad domain", http.MethodGet, "/mail/config-v1.1.xml" + q("a@exa_mple.test"), "", 400, false},
		tc{"Evolution placeholder", http.MethodGet, "/mail/config-v1.1.xml?emailaddress=EVOLUTIONUSER%40example.test&emailmd5=abc", "", 200, true},
	)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := f.do(t, c.method, c.target, c.host)
			if a.status != c.status {
				t.Fatalf("status %d, want %d: %s", a.status, c.status, a.body)
			}
			if a.status >= 500 {
				t.Fatalf("server error %d", a.status)
			}
			if c.status == http.StatusMethodNotAllowed && a.header.Get("Allow") != "GET, HEAD" {
				t.Errorf("405 without Allow: GET, HEAD")
			}
			if c.method == http.MethodHead {
				if len(a.body) != 0 {
					t.Errorf("HEAD returned a body")
				}
				if ct := a.header.Get("Content-Type"); ct != "text/xml; charset=utf-8" {
					t.Errorf("HEAD Content-Type %q", ct)
				}
			}
			if c.wantXML {
				testutil.XMLLint(t, a.body)
				if _, err := parseAndroid(a.body, "someone@example.test"); err != nil {
					t.Errorf("android parser: %v", err)
				}
			}
			if c.status == 400 || c.status == 404 {
				if len(a.body) > 100 || bytes.ContainsAny(a.body, "<>@") {
					t.Errorf("error body should be short and reflect nothing: %q", a.body)
				}
			}
		})
	}
	// Every answer is counted.
	if got := f.count(t, "405"); got != float64(len(paths)) {
		t.Errorf("counted %v answers with 405, want %d", got, len(paths))
	}
	if got := f.count(t, "200"); got != float64(3*len(paths)+2) {
		t.Errorf("counted %v answers with 200, want %d", got, 3*len(paths)+2)
	}
	if got := f.count(t, "404"); got != float64(len(paths)+2) {
		t.Errorf("counted %v answers with 404, want %d", got, len(paths)+2)
	}
	if got := f.count(t, "400"); got != 8 {
		t.Errorf("counted %v answers with 400, want 8", got)
	}
}

// TestClientRulesReject proves the parse-back rules can fail: each mutation
// is something a real client rejects.
func TestClientRulesReject(t *testing.T) {
	f := newFixture(t, testConfig)
	good := f.do(t, http.MethodGet, "/mail/config-v1.1.xml"+q("alice@example.test"), "").body
	mut := func(old, new string) []byte { return bytes.ReplaceAll(good, []byte(old), []byte(new)) }
	cases := []struct {
		name             string
		doc              []byte
		desktop, android bool // accepted by
	}{
		{"good", good, true, true},
		{"plain socketType", mut("<socketType>STARTTLS</socketType>", "<socketType>plain</socketType>"), true, false},
		{"padded socketType", mut("<socketType>SSL</socketType>", "<socketType> SSL </socketType>"), true, false},
		{"provider id not a host", mut(`id="example.test"`, `id="Example Mail"`), false, false},
		{"deprecated auth alias", mut("password-cleartext", "plain"), true, false},
		{"no outgoing", mut("outgoingServer", "outgoingServerX"), false, false},
		{"namespace prefix", mut("<clientConfig ", `<clientConfig xmlns="urn:x" `), false, false},
		{"password published", mut("<username>", "<password>secret</password><username>"), false, false},
		{"not well-formed", append(append([]byte{}, good...), []byte("<x>")...), false, false},
	}
	for _, c := range cases {
		if _, err := parseDesktop(c.doc, "alice@example.test"); (err == nil) != c.desktop {
			t.Errorf("%s: desktop accepted=%v, want %v (%v)", c.name, err == nil, c.desktop, err)
		}
		if _, err := parseAndroid(c.doc, "alice@example.test"); (err == nil) != c.android {
			t.Errorf("%s: android accepted=%v, want %v (%v)", c.name, err == nil, c.android, err)
		}
	}
}

func TestNewNeedsService(t *testing.T) {
	if _, err := New(nil); err == nil {
		t.Error("New(nil) succeeded")
	}
	if _, err := New(&autoconfig.Service{}); err == nil {
		t.Error("New without a Catalog succeeded")
	}
}

func BenchmarkThunderbird(b *testing.B) {
	h, err := New(autoconfigtest.Service(b, testConfig))
	if err != nil {
		b.Fatal(err)
	}
	e := echo.New()
	h.Register(e)
	req := httptest.NewRequest(http.MethodGet, "/mail/config-v1.1.xml"+q("alice@example.org"), nil)
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d", rec.Code)
		}
	}
}
