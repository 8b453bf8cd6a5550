package setup

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"image/png"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/skip2/go-qrcode"
	"golang.org/x/net/html"

	"mailconf/autoconfig"
	"mailconf/autoconfig/autoconfigtest"
	"mailconf/internal/metrics"
	"mailconf/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite golden files")

// testConfig has one domain on the built-in server and one that publishes
// a provider's servers, logs in with the local part and has DAV URLs.
const testConfig = `
data_dir = "/nonexistent/mailconf-test"
hostname = "mail.example.test"

[listen]
http        = "127.0.0.1:8080"
submission  = "127.0.0.1:587"
submissions = "127.0.0.1:465"
imap        = "127.0.0.1:143"
imaps       = "127.0.0.1:993"
pop3        = "127.0.0.1:110"
pop3s       = "127.0.0.1:995"

[[domain]]
name         = "example.test"
display_name = "Example Test Mail"

[[domain]]
name         = "other.test"
display_name = "Other & Sons <Mail>"
username     = "localpart"
caldav       = "https://dav.other.test/caldav/"
carddav      = "https://dav.other.test/carddav/"

  [[domain.server]]
  protocol = "imap"
  host     = "imap.provider.test"
  port     = 143
  security = "starttls"

  [[domain.server]]
  protocol = "imap"
  host     = "imap2.provider.test"
  port     = 993
  security = "tls"

  [[domain.server]]
  protocol = "smtp"
  host     = "smtp.provider.test"
  port     = 587
  security = "starttls"
`

type server struct {
	URL     string // http://127.0.0.1:port
	Host    string // 127.0.0.1:port
	Metrics *metrics.Metrics
	Echo    *echo.Echo
}

// startServer serves the setup handler (plus anything extra registers) on a
// real loopback listener.
func startServer(t *testing.T, extra func(e *echo.Echo, svc *autoconfig.Service)) *server {
	t.Helper()
	svc := autoconfigtest.Service(t, testConfig)
	m := svc.Metrics
	h, err := New(svc)
	if err != nil {
		t.Fatal(err)
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	h.Register(e)
	if extra != nil {
		extra(e, svc)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: e, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	})
	return &server{URL: "http://" + ln.Addr().String(), Host: ln.Addr().String(), Metrics: m, Echo: e}
}

type response struct {
	Status int
	Header http.Header
	Body   []byte
}

// do sends one request; host overrides the Host header when not "".
func (s *server) do(t *testing.T, method, path, host string, hdr map[string]string) response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, s.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{Status: res.StatusCode, Header: res.Header, Body: body}
}

func (s *server) get(t *testing.T, path string) response {
	t.Helper()
	return s.do(t, http.MethodGet, path, "", nil)
}

func setupPath(addr string) string {
	return "/setup?emailaddress=" + url.QueryEscape(addr)
}

// page is a parsed setup page.
type page struct {
	doc *html.Node
	raw string
}

func parsePage(t *testing.T, r response) page {
	t.Helper()
	if ct := r.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Fatalf("Content-Type = %q, want text/html; charset=utf-8", ct)
	}
	doc, err := html.Parse(bytes.NewReader(r.Body))
	if err != nil {
		t.Fatalf("parse HTML: %v", err)
	}
	return page{doc: doc, raw: string(r.Body)}
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func find(n *html.Node, match func(*html.Node) bool) []*html.Node {
	var out []*html.Node
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && match(n) {
			out = append(out, n)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return out
}

func (p page) byID(id string) *html.Node {
	ns := find(p.doc, func(n *html.Node) bool { return attr(n, "id") == id })
	if len(ns) == 0 {
		return nil
	}
	return ns[0]
}

func text(n *html.Node) string {
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return strings.Join(strings.Fields(b.String()), " ")
}

// rows returns a settings table as (row header, cell) pairs in order.
func (p page) rows(t *testing.T, id string) [][2]string {
	t.Helper()
	tbl := p.byID(id)
	if tbl == nil || tbl.Data != "table" {
		t.Fatalf("no table #%s in page", id)
	}
	var out [][2]string
	for _, tr := range find(tbl, func(n *html.Node) bool { return n.Data == "tr" }) {
		th := find(tr, func(n *html.Node) bool { return n.Data == "th" })
		td := find(tr, func(n *html.Node) bool { return n.Data == "td" })
		if len(th) != 1 || len(td) != 1 {
			t.Fatalf("table #%s: row without one th and one td", id)
		}
		out = append(out, [2]string{text(th[0]), text(td[0])})
	}
	return out
}

func wantRows(t *testing.T, p page, id string, want [][2]string) {
	t.Helper()
	got := p.rows(t, id)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("table #%s:\n got %q\nwant %q", id, got, want)
	}
}

func counter(t *testing.T, m *metrics.Metrics, status int) float64 {
	t.Helper()
	return testutil.MetricValue(t, m.AutoconfigRequests.WithLabelValues(autoconfig.FormatSetup, fmt.Sprint(status)))
}

func TestBuiltinServerSettings(t *testing.T) {
	s := startServer(t, nil)
	r := s.get(t, setupPath("alice@example.test"))
	if r.Status != http.StatusOK {
		t.Fatalf("status %d, want 200", r.Status)
	}
	p := parsePage(t, r)
	wantRows(t, p, "account", [][2]string{
		{"Email address", "alice@example.test"},
		{"Username", "alice@example.test (your full email address)"},
		{"Password", "your mailbox password"},
	})
	wantRows(t, p, "imap", [][2]string{
		{"Server", "mail.example.test"}, {"Port", "993"}, {"Security", "SSL/TLS"},
		{"Or", "port 143 with STARTTLS"},
	})
	wantRows(t, p, "pop3", [][2]string{
		{"Server", "mail.example.test"}, {"Port", "995"}, {"Security", "SSL/TLS"},
		{"Or", "port 110 with STARTTLS"},
	})
	wantRows(t, p, "smtp", [][2]string{
		{"Server", "mail.example.test"}, {"Port", "465"}, {"Security", "SSL/TLS"},
		{"Or", "port 587 with STARTTLS"},
		{"Requires authentication", "yes, same username and password"},
	})
	if p.byID("dav") != nil {
		t.Error("calendar table shown for a domain without CalDAV/CardDAV")
	}
	link := p.byID("profile-link")
	if link == nil {
		t.Fatal("no profile download link")
	}
	if got, want := attr(link, "href"), "/profile.mobileconfig?emailaddress=alice%40example.test"; got != want {
		t.Errorf("profile link %q, want %q", got, want)
	}
	imgs := find(p.doc, func(n *html.Node) bool { return n.Data == "img" })
	if len(imgs) != 1 || attr(imgs[0], "src") != "/setup/qr.png?emailaddress=alice%40example.test" || attr(imgs[0], "alt") == "" {
		t.Errorf("want one QR image with alt text for alice, got %d images", len(imgs))
	}
	for _, id := range []string{"thunderbird", "outlook", "iphone", "mac", "thunderbird-android", "fairemail", "gmail", "other"} {
		sec := p.byID(id)
		if sec == nil || sec.Data != "section" {
			t.Errorf("no instructions section #%s", id)
			continue
		}
		if len(find(sec, func(n *html.Node) bool { return n.Data == "ol" })) != 1 {
			t.Errorf("section #%s has no ordered list of steps", id)
		}
	}
	if got := text(p.byID("outlook")); !strings.Contains(got, "mail.example.test, port 993, encryption method SSL/TLS") ||
		!strings.Contains(got, "mail.example.test, port 465, encryption method SSL/TLS") {
		t.Errorf("Outlook steps do not name the preferred servers: %s", got)
	}
	if csp := r.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("Content-Security-Policy = %q", csp)
	}
	if n := counter(t, s.Metrics, 200); n != 1 {
		t.Errorf("setup 200 counted %v times, want 1", n)
	}
}

func TestOverrideServersAndDAV(t *testing.T) {
	s := startServer(t, nil)
	r := s.get(t, setupPath("Carol.Jones@OTHER.test"))
	if r.Status != http.StatusOK {
		t.Fatalf("status %d, want 200", r.Status)
	}
	p := parsePage(t, r)
	wantRows(t, p, "account", [][2]string{
		{"Email address", "Carol.Jones@other.test"},
		{"Username", "Carol.Jones (the part of your email address before the @)"},
		{"Password", "your mailbox password"},
	})
	// Implicit TLS first, although the config lists STARTTLS first; the
	// alternative is on another host and says so.
	wantRows(t, p, "imap", [][2]string{
		{"Server", "imap2.provider.test"}, {"Port", "993"}, {"Security", "SSL/TLS"},
		{"Or", "imap.provider.test, port 143 with STARTTLS"},
	})
	wantRows(t, p, "smtp", [][2]string{
		{"Server", "smtp.provider.test"}, {"Port", "587"}, {"Security", "STARTTLS"},
		{"Requires authentication", "yes, same username and password"},
	})
	if p.byID("pop3") != nil {
		t.Error("POP3 table shown for a domain without POP3")
	}
	wantRows(t, p, "dav", [][2]string{
		{"Calendar (CalDAV)", "https://dav.other.test/caldav/"},
		{"Contacts (CardDAV)", "https://dav.other.test/carddav/"},
		{"Username and password", "the same as for email"},
	})
	if got := text(find(p.byID("account"), func(n *html.Node) bool { return n.Data == "caption" })[0]); got != "Account at Other & Sons <Mail>" {
		t.Errorf("account caption %q does not name the provider", got)
	}
	if !strings.Contains(p.raw, "Other &amp; Sons &lt;Mail&gt;") {
		t.Error("display name not escaped")
	}
}

// No endpoint may tell whether a mailbox exists: two local parts give the
// same page apart from the address itself.
func TestSamePageForAnyLocalPart(t *testing.T) {
	s := startServer(t, nil)
	a := s.get(t, setupPath("qz7xv@example.test"))
	b := s.get(t, setupPath("wk3jp@example.test"))
	if a.Status != http.StatusOK || b.Status != http.StatusOK {
		t.Fatalf("status %d and %d, want 200", a.Status, b.Status)
	}
	if strings.ReplaceAll(string(b.Body), "wk3jp", "qz7xv") != string(a.Body) {
		t.Error("pages for two local parts differ beyond the address")
	}
}

func TestHostHeaderPlaceholders(t *testing.T) {
	s := startServer(t, nil)
	for _, host := range []string{"example.test", "autoconfig.example.test", "EXAMPLE.test:8080"} {
		r := s.do(t, http.MethodGet, "/", host, nil)
		if r.Status != http.StatusOK {
			t.Fatalf("Host %s: status %d, want 200", host, r.Status)
		}
		p := parsePage(t, r)
		if p.byID("placeholders") == nil {
			t.Errorf("Host %s: no placeholder note", host)
		}
		wantRows(t, p, "account", [][2]string{
			{"Email address", "your email address, for example name@example.test"},
			{"Username", "your full email address"},
			{"Password", "your mailbox password"},
		})
		wantRows(t, p, "imap", [][2]string{
			{"Server", "mail.example.test"}, {"Port", "993"}, {"Security", "SSL/TLS"},
			{"Or", "port 143 with STARTTLS"},
		})
		if p.byID("profile-link") != nil {
			t.Errorf("Host %s: profile link without an address", host)
		}
	}
}

func TestFormOnly(t *testing.T) {
	s := startServer(t, nil)
	for _, path := range []string{"/", "/setup", "/setup?emailaddress=", "/?other=1"} {
		r := s.get(t, path)
		if r.Status != http.StatusOK {
			t.Fatalf("%s: status %d, want 200", path, r.Status)
		}
		p := parsePage(t, r)
		checkForm(t, p, "")
		if p.byID("settings") != nil || p.byID("error") != nil {
			t.Errorf("%s: settings or error shown without an address and with Host %s", path, s.Host)
		}
	}
	if n := counter(t, s.Metrics, 200); n != 4 {
		t.Errorf("setup 200 counted %v times, want 4", n)
	}
}

// checkForm asserts the address form: a GET form to /setup with a labelled
// emailaddress field holding value.
func checkForm(t *testing.T, p page, value string) {
	t.Helper()
	forms := find(p.doc, func(n *html.Node) bool { return n.Data == "form" })
	if len(forms) != 1 {
		t.Fatalf("%d forms, want 1", len(forms))
	}
	f := forms[0]
	if attr(f, "method") != "get" || attr(f, "action") != "/setup" {
		t.Errorf("form method=%q action=%q", attr(f, "method"), attr(f, "action"))
	}
	in := p.byID("emailaddress")
	if in == nil || attr(in, "name") != "emailaddress" {
		t.Fatal("no emailaddress input")
	}
	if got := attr(in, "value"); got != value {
		t.Errorf("form value %q, want %q", got, value)
	}
	labels := find(p.doc, func(n *html.Node) bool { return n.Data == "label" && attr(n, "for") == "emailaddress" })
	if len(labels) != 1 {
		t.Error("the address field has no label")
	}
}

func TestUnknownDomain(t *testing.T) {
	s := startServer(t, nil)
	r := s.get(t, setupPath("bob@unknown.test"))
	if r.Status != http.StatusNotFound {
		t.Fatalf("status %d, want 404", r.Status)
	}
	p := parsePage(t, r)
	checkForm(t, p, "bob@unknown.test")
	e := p.byID("error")
	if e == nil || !strings.Contains(text(e), "unknown.test") {
		t.Fatalf("no error naming the domain")
	}
	if p.byID("settings") != nil {
		t.Error("settings shown for an unknown domain")
	}
	if n := counter(t, s.Metrics, 404); n != 1 {
		t.Errorf("setup 404 counted %v times, want 1", n)
	}
}

func TestBadAndHostileAddresses(t *testing.T) {
	s := startServer(t, nil)
	bad := []string{
		"not-an-address",
		"@example.test",
		"alice@",
		"alice@localhost",
		"   ",
		`<script>alert(1)</script>@example.test`,
		`"><img src=x onerror=alert(1)>@example.test`,
		`alice@example.test"><script>alert(1)</script>`,
		"alice@exa mple.test",
		"alice\r\nX-Injected: 1@example.test",
		"al\x00ice@example.test",
		"\xff\xfe@example.test",
		strings.Repeat("a", 5000) + "@example.test",
		strings.Repeat("a", 65) + "@example.test",
	}
	for _, in := range bad {
		r := s.get(t, setupPath(in))
		if r.Status != http.StatusBadRequest {
			t.Errorf("%q: status %d, want 400", in, r.Status)
			continue
		}
		p := parsePage(t, r)
		if e := p.byID("error"); e == nil || !strings.Contains(text(e), "not an email address") {
			t.Errorf("%q: no error message", in)
		}
		if p.byID("settings") != nil {
			t.Errorf("%q: settings shown", in)
		}
		if strings.Contains(p.raw, "<script>alert") || strings.Contains(p.raw, "<img src=x") {
			t.Errorf("%q: input echoed unescaped", in)
		}
		if len(in) < 200 && utf8Valid(in) && !strings.ContainsAny(in, "\x00\r") {
			// The form keeps what was typed; reading it back through an
			// HTML parser (which normalises CR and NUL) proves the
			// escaping round-trips.
			checkForm(t, p, in)
		}
	}
	if n := counter(t, s.Metrics, 400); n != float64(len(bad)) {
		t.Errorf("setup 400 counted %v times, want %d", n, len(bad))
	}
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }

// Characters that are valid in a local part but special in HTML are
// shown, escaped, on a 200 page.
func TestSpecialCharactersEscaped(t *testing.T) {
	s := startServer(t, nil)
	in := "o'neil&co+x{y}@example.test"
	r := s.get(t, setupPath(in))
	if r.Status != http.StatusOK {
		t.Fatalf("status %d, want 200", r.Status)
	}
	p := parsePage(t, r)
	if strings.Contains(p.raw, "o'neil&co") {
		t.Error("address echoed without HTML escaping")
	}
	if !strings.Contains(p.raw, "o&#39;neil&amp;co") {
		t.Error("escaped address missing from the page")
	}
	checkForm(t, p, in)
	wantRows(t, p, "account", [][2]string{
		{"Email address", in},
		{"Username", in + " (your full email address)"},
		{"Password", "your mailbox password"},
	})
	link := p.byID("profile-link")
	if link == nil {
		t.Fatal("no profile link")
	}
	u, err := url.Parse(attr(link, "href"))
	if err != nil || u.Path != "/profile.mobileconfig" || u.Query().Get("emailaddress") != in {
		t.Errorf("profile link %q does not carry the address", attr(link, "href"))
	}
}

func TestHead(t *testing.T) {
	s := startServer(t, nil)
	for _, tc := range []struct {
		path   string
		status int
	}{
		{"/", 200},
		{setupPath("alice@example.test"), 200},
		{setupPath("alice@unknown.test"), 404},
		{setupPath("<x>"), 400},
	} {
		r := s.do(t, http.MethodHead, tc.path, "", nil)
		if r.Status != tc.status {
			t.Errorf("HEAD %s: status %d, want %d", tc.path, r.Status, tc.status)
		}
		if ct := r.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
			t.Errorf("HEAD %s: Content-Type %q", tc.path, ct)
		}
		if len(r.Body) != 0 {
			t.Errorf("HEAD %s: %d body bytes", tc.path, len(r.Body))
		}
	}
}

func TestQRCode(t *testing.T) {
	s := startServer(t, nil)
	profile := func(scheme, host, addr string) string {
		return scheme + "://" + host + "/profile.mobileconfig?emailaddress=" + url.QueryEscape(addr)
	}
	cases := []struct {
		name, addr, host string
		hdr              map[string]string
		want             string
	}{
		{"listener host", "alice@example.test", "", nil, profile("http", s.Host, "alice@example.test")},
		{"named host", "alice@example.test", "autoconfig.example.test", nil, profile("http", "autoconfig.example.test", "alice@example.test")},
		{"proxied https", "bob@other.test", "mail.example.test", map[string]string{"X-Forwarded-Proto": "https"}, profile("https", "mail.example.test", "bob@other.test")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := s.do(t, http.MethodGet, "/setup/qr.png?emailaddress="+url.QueryEscape(tc.addr), tc.host, tc.hdr)
			if r.Status != http.StatusOK {
				t.Fatalf("status %d: %s", r.Status, r.Body)
			}
			if ct := r.Header.Get("Content-Type"); ct != "image/png" {
				t.Errorf("Content-Type %q, want image/png", ct)
			}
			if !bytes.HasPrefix(r.Body, []byte("\x89PNG\r\n\x1a\n")) {
				t.Fatal("no PNG signature")
			}
			cfg, err := png.DecodeConfig(bytes.NewReader(r.Body))
			if err != nil {
				t.Fatalf("PNG header: %v", err)
			}
			if cfg.Width != QRSize || cfg.Height != QRSize {
				t.Errorf("QR code is %dx%d, want %dx%d", cfg.Width, cfg.Height, QRSize, QRSize)
			}
			want, err := qrcode.Encode(tc.want, QRLevel, QRSize)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(r.Body, want) {
				t.Errorf("QR code does not encode %s", tc.want)
			}
			// The comparison can tell URLs apart.
			other, err := qrcode.Encode(tc.want+"x", QRLevel, QRSize)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(r.Body, other) {
				t.Error("QR codes of different URLs are identical")
			}
		})
	}
	for _, tc := range []struct {
		query  string
		status int
	}{
		{"", 400},
		{"?emailaddress=", 400},
		{"?emailaddress=" + url.QueryEscape("<script>@example.test"), 400},
		{"?emailaddress=" + url.QueryEscape("alice@unknown.test"), 404},
	} {
		r := s.get(t, "/setup/qr.png"+tc.query)
		if r.Status != tc.status {
			t.Errorf("QR %q: status %d, want %d", tc.query, r.Status, tc.status)
		}
		if bytes.HasPrefix(r.Body, []byte("\x89PNG")) {
			t.Errorf("QR %q: PNG for a refused request", tc.query)
		}
	}
	if r := s.do(t, http.MethodHead, "/setup/qr.png?emailaddress=alice%40example.test", "", nil); r.Status != 200 || len(r.Body) != 0 {
		t.Errorf("HEAD QR: status %d, %d body bytes", r.Status, len(r.Body))
	}
}

func TestGolden(t *testing.T) {
	s := startServer(t, nil)
	for _, tc := range []struct{ file, path, host string }{
		{"builtin.html", setupPath("alice@example.test"), ""},
		{"override-dav.html", setupPath("carol@other.test"), ""},
		{"host-placeholders.html", "/", "other.test"},
		{"unknown-domain.html", setupPath("bob@unknown.test"), ""},
	} {
		t.Run(tc.file, func(t *testing.T) {
			r := s.do(t, http.MethodGet, tc.path, tc.host, nil)
			if r.Status >= 500 {
				t.Fatalf("status %d", r.Status)
			}
			testutil.Golden(t, tc.file, r.Body, *update)
		})
	}
}

func TestNew(t *testing.T) {
	if _, err := New(nil); err == nil {
		t.Error("New(nil) succeeded")
	}
}
