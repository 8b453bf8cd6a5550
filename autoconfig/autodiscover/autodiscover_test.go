package autodiscover

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"mailconf/autoconfig"
	"mailconf/autoconfig/autoconfigtest"
	"mailconf/internal/metrics"
	"mailconf/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite golden files")

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
display_name = "Org & Friends"
username     = "localpart"
caldav       = "https://dav.example.org/caldav/"
carddav      = "https://dav.example.org/carddav/"

  [[domain.server]]
  protocol = "smtp"
  host     = "smtp.example.org"
  port     = 587
  security = "starttls"

  [[domain.server]]
  protocol = "imap"
  host     = "imap.example.org"
  port     = 143
  security = "starttls"

[[domain]]
name = "bücher.example"
`

// fixedNow makes the Error/@Time attribute reproducible for golden files.
var fixedNow = time.Date(2026, 3, 4, 14, 3, 7, 123456700, time.UTC)

type fixture struct {
	m   *metrics.Metrics
	h   *Handler
	srv *httptest.Server
}

func newHandler(t testing.TB) (*Handler, *metrics.Metrics) {
	t.Helper()
	svc := autoconfigtest.Service(t, testConfig)
	h, err := New(svc)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.now = func() time.Time { return fixedNow }
	return h, svc.Metrics
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	h, m := newHandler(t)
	e := echo.New()
	h.Register(e)
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return &fixture{m: m, h: h, srv: srv}
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (f *fixture) do(t testing.TB, method, path, host, contentType string, body []byte) answer {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, f.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{resp.StatusCode, resp.Header, b}
}

func (f *fixture) post(t testing.TB, path string, body []byte) answer {
	t.Helper()
	return f.do(t, http.MethodPost, path, "", "text/xml; charset=utf-8", body)
}

func (f *fixture) count(t testing.TB, format string, status int) float64 {
	t.Helper()
	return testutil.MetricValue(t, f.m.AutoconfigRequests.WithLabelValues(format, strconv.Itoa(status)))
}

// outlookRequest builds a request body the way Outlook and Thunderbird send
// it (the address is escaped by the encoder, as a client's would be).
func outlookRequest(t testing.TB, addr string) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := xml.EscapeText(&b, []byte(addr)); err != nil {
		t.Fatal(err)
	}
	return []byte(`<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">
  <Request>
    <EMailAddress>` + b.String() + `</EMailAddress>
    <AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema>
  </Request>
</Autodiscover>`)
}

// --- what clients read from a POX answer ---------------------------------

type poxDoc struct {
	XMLName  xml.Name
	Response struct {
		XMLName xml.Name
		Error   *poxError `xml:"Error"`
		Account *struct {
			AccountType string        `xml:"AccountType"`
			Action      string        `xml:"Action"`
			Protocols   []poxProtocol `xml:"Protocol"`
			Error       *poxError     `xml:"Error"`
		} `xml:"Account"`
	} `xml:"Response"`
}

type poxError struct {
	Time      string `xml:"Time,attr"`
	ID        string `xml:"Id,attr"`
	ErrorCode int    `xml:"ErrorCode"`
	Message   string `xml:"Message"`
}

type poxProtocol struct {
	Type, Server, Port, DomainRequired, LoginName, SPA, SSL, Encryption, AuthRequired string
}

func decodePOX(t *testing.T, body []byte) *poxDoc {
	t.Helper()
	var d poxDoc
	if err := xml.Unmarshal(body, &d); err != nil {
		t.Fatalf("answer is not XML: %v\n%s", err, body)
	}
	if d.XMLName.Space != nsResponse || d.XMLName.Local != "Autodiscover" {
		t.Fatalf("root is %v, want Autodiscover in %s", d.XMLName, nsResponse)
	}
	return &d
}

// errorCode returns the Autodiscover error code of an answer, 0 for none.
func errorCode(t *testing.T, body []byte) int {
	t.Helper()
	d := decodePOX(t, body)
	switch {
	case d.Response.Error != nil:
		if d.Response.XMLName.Space != nsResponse {
			t.Errorf("provider error Response in namespace %q", d.Response.XMLName.Space)
		}
		return d.Response.Error.ErrorCode
	case d.Response.Account != nil && d.Response.Account.Error != nil:
		if d.Response.XMLName.Space != nsResponseOutlook {
			t.Errorf("account error Response in namespace %q", d.Response.XMLName.Space)
		}
		return d.Response.Account.Error.ErrorCode
	}
	return 0
}

type tbServer struct {
	Host, Socket, Username string
	Port                   int
}

// readLikeThunderbird applies ExchangeAutoDiscover.sys.mjs (formats.md
// §2.9): first IMAP/POP3 is incoming, first SMTP outgoing; SSL=off or
// Encryption=None is plain; otherwise the port decides between STARTTLS
// (143, 110, 25, 587) and implicit TLS.
func readLikeThunderbird(d *poxDoc) (in, out tbServer, err error) {
	if d.Response.Account == nil || len(d.Response.Account.Protocols) == 0 {
		return in, out, errors.New("no autodiscover: no Response/Account/Protocol")
	}
	var haveIn, haveOut bool
	for _, p := range d.Response.Account.Protocols {
		port, perr := strconv.Atoi(p.Port)
		if perr != nil {
			continue
		}
		s := tbServer{Host: p.Server, Port: port, Username: p.LoginName}
		switch {
		case p.SSL == "off" || p.Encryption == "None":
			s.Socket = "plain"
		case port == 143 || port == 110 || port == 25 || port == 587:
			s.Socket = "STARTTLS"
		default:
			s.Socket = "SSL"
		}
		switch p.Type {
		case "IMAP", "POP3":
			if !haveIn {
				in, haveIn = s, true
			}
		case "SMTP":
			if !haveOut {
				out, haveOut = s, true
			}
		}
	}
	if !haveIn || !haveOut {
		return in, out, errors.New("incoming or outgoing server missing")
	}
	return in, out, nil
}

// checkOutlookRules applies the POX content rules of clients.md §2.4.
func checkOutlookRules(t *testing.T, d *poxDoc, wantLogin string) {
	t.Helper()
	if d.Response.XMLName.Space != nsResponseOutlook {
		t.Errorf("Response namespace %q, want 2006a", d.Response.XMLName.Space)
	}
	a := d.Response.Account
	if a == nil || a.AccountType != "email" || a.Action != "settings" {
		t.Fatalf("Account = %+v, want AccountType email, Action settings", a)
	}
	seen := map[string]bool{}
	for _, p := range a.Protocols {
		if seen[p.Type] {
			t.Errorf("two Protocol entries of type %s", p.Type)
		}
		seen[p.Type] = true
		if p.DomainRequired != "off" || p.SPA != "off" || p.SSL != "on" || p.AuthRequired != "on" {
			t.Errorf("%s: DomainRequired=%q SPA=%q SSL=%q AuthRequired=%q, want off/off/on/on", p.Type, p.DomainRequired, p.SPA, p.SSL, p.AuthRequired)
		}
		if p.LoginName != wantLogin {
			t.Errorf("%s: LoginName %q, want %q", p.Type, p.LoginName, wantLogin)
		}
		switch p.Type {
		case "IMAP", "POP3", "SMTP":
			if p.Encryption != "SSL" && p.Encryption != "TLS" {
				t.Errorf("%s: Encryption %q, want SSL or TLS", p.Type, p.Encryption)
			}
		}
	}
}

// --- tests -----------------------------------------------------------------

func TestGoldenSettings(t *testing.T) {
	f := newFixture(t)
	cases := []struct {
		golden, addr, login string
		in, out             tbServer
		types               string
	}{
		{
			golden: "builtin.xml", addr: "alice@example.test", login: "alice@example.test",
			in:    tbServer{Host: "mail.example.test", Port: 2993, Socket: "SSL", Username: "alice@example.test"},
			out:   tbServer{Host: "mail.example.test", Port: 2465, Socket: "SSL", Username: "alice@example.test"},
			types: "IMAP POP3 SMTP",
		},
		{
			golden: "custom.xml", addr: "Carol.O'Neil&co@Example.ORG", login: "Carol.O'Neil&co",
			in:    tbServer{Host: "imap.example.org", Port: 143, Socket: "STARTTLS", Username: "Carol.O'Neil&co"},
			out:   tbServer{Host: "smtp.example.org", Port: 587, Socket: "STARTTLS", Username: "Carol.O'Neil&co"},
			types: "IMAP SMTP CalDAV CardDAV",
		},
		{
			golden: "idn.xml", addr: "erika@bücher.example", login: "erika@xn--bcher-kva.example",
			in:    tbServer{Host: "mail.example.test", Port: 2993, Socket: "SSL", Username: "erika@xn--bcher-kva.example"},
			out:   tbServer{Host: "mail.example.test", Port: 2465, Socket: "SSL", Username: "erika@xn--bcher-kva.example"},
			types: "IMAP POP3 SMTP",
		},
	}
	for _, c := range cases {
		t.Run(c.golden, func(t *testing.T) {
			a := f.post(t, "/autodiscover/autodiscover.xml", outlookRequest(t, c.addr))
			if a.status != http.StatusOK {
				t.Fatalf("status %d: %s", a.status, a.body)
			}
			if ct := a.header.Get("Content-Type"); ct != "text/xml; charset=utf-8" {
				t.Errorf("Content-Type %q", ct)
			}
			testutil.XMLLint(t, a.body)
			testutil.Golden(t, c.golden, a.body, *update)
			d := decodePOX(t, a.body)
			checkOutlookRules(t, d, c.login)
			var types []string
			for _, p := range d.Response.Account.Protocols {
				types = append(types, p.Type)
			}
			if got := strings.Join(types, " "); got != c.types {
				t.Errorf("Protocol types %q, want %q", got, c.types)
			}
			in, out, err := readLikeThunderbird(d)
			if err != nil {
				t.Fatalf("thunderbird: %v", err)
			}
			if in != c.in || out != c.out {
				t.Errorf("thunderbird reads in=%+v out=%+v, want %+v %+v", in, out, c.in, c.out)
			}
		})
	}
}

func TestGoldenErrors(t *testing.T) {
	f := newFixture(t)
	mobilesync := []byte(`<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/mobilesync/requestschema/2006">
  <Request>
    <EMailAddress>alice@example.test</EMailAddress>
    <AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/mobilesync/responseschema/2006</AcceptableResponseSchema>
  </Request>
</Autodiscover>`)
	cases := []struct {
		golden string
		body   []byte
		status int
		code   int
	}{
		{"error-600.xml", []byte("not xml"), 200, 600},
		{"error-601.xml", mobilesync, 200, 601},
		{"error-500.xml", outlookRequest(t, "alice@example.net"), 404, 500},
	}
	for _, c := range cases {
		t.Run(c.golden, func(t *testing.T) {
			a := f.post(t, "/autodiscover/autodiscover.xml", c.body)
			if a.status != c.status {
				t.Fatalf("status %d, want %d: %s", a.status, c.status, a.body)
			}
			if ct := a.header.Get("Content-Type"); ct != "text/xml; charset=utf-8" {
				t.Errorf("Content-Type %q", ct)
			}
			testutil.XMLLint(t, a.body)
			testutil.Golden(t, c.golden, a.body, *update)
			if got := errorCode(t, a.body); got != c.code {
				t.Errorf("ErrorCode %d, want %d", got, c.code)
			}
			d := decodePOX(t, a.body)
			e := d.Response.Error
			if e == nil && d.Response.Account != nil {
				e = d.Response.Account.Error
			}
			if e.Time != "14:03:07.1234567" || e.ID == "" || e.Message == "" {
				t.Errorf("Error attributes/message incomplete: %+v", e)
			}
		})
	}
}

func TestSameAnswerForAnyLocalPart(t *testing.T) {
	f := newFixture(t)
	a := f.post(t, "/autodiscover/autodiscover.xml", outlookRequest(t, "exists@example.test"))
	b := f.post(t, "/autodiscover/autodiscover.xml", outlookRequest(t, "nobody-7c1@example.test"))
	got := bytes.ReplaceAll(a.body, []byte("exists@example.test"), []byte("nobody-7c1@example.test"))
	if a.status != 200 || !bytes.Equal(got, b.body) {
		t.Errorf("answers differ beyond the login name:\n%s\n---\n%s", a.body, b.body)
	}
}

func TestPOXPathsAndMethods(t *testing.T) {
	f := newFixture(t)
	body := outlookRequest(t, "alice@example.test")
	for _, p := range []string{
		"/autodiscover/autodiscover.xml", "/Autodiscover/Autodiscover.xml",
		"/AutoDiscover/AutoDiscover.xml", "/AUTODISCOVER/AUTODISCOVER.XML", "/autoDiscover/autodiscover.XML",
	} {
		a := f.post(t, p, body)
		if a.status != 200 || errorCode(t, a.body) != 0 {
			t.Errorf("POST %s: status %d\n%s", p, a.status, a.body)
		}
		for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete, http.MethodOptions, "PROPFIND"} {
			a := f.do(t, m, p, "", "", nil)
			if a.status != http.StatusMethodNotAllowed || a.header.Get("Allow") != "POST" {
				t.Errorf("%s %s: status %d Allow %q, want 405 Allow POST", m, p, a.status, a.header.Get("Allow"))
			}
		}
	}
	for _, p := range []string{"/autodiscover/autodiscover.xml/x", "/autodiscover/autodiscover.xmlx", "/autodiscover/"} {
		if a := f.post(t, p, body); a.status != http.StatusNotFound {
			t.Errorf("POST %s: status %d, want 404", p, a.status)
		}
	}
	if got := f.count(t, autoconfig.FormatAutodiscover, 405); got != 5*6 {
		t.Errorf("counted %v 405 answers, want 30", got)
	}
	if got := f.count(t, autoconfig.FormatAutodiscover, 200); got != 5 {
		t.Errorf("counted %v 200 answers, want 5", got)
	}
}

func TestPOXHostileInput(t *testing.T) {
	f := newFixture(t)
	valid := outlookRequest(t, "alice@example.test")
	billion := []byte(`<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"><Request><EMailAddress>&lol3;@example.test</EMailAddress></Request></Autodiscover>`)
	xxe := []byte(`<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><Autodiscover><Request><EMailAddress>&x;</EMailAddress></Request></Autodiscover>`)
	wrap := func(inner string) []byte {
		return []byte(`<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">` + inner + `</Autodiscover>`)
	}
	oversize := append(bytes.Repeat([]byte(" "), maxBody+1-len(valid)), valid...)
	atLimit := append(bytes.Repeat([]byte(" "), maxBody-len(valid)), valid...)
	cases := []struct {
		name, ct string
		body     []byte
		status   int
		code     int
	}{
		{"valid", "text/xml; charset=utf-8", valid, 200, 0},
		{"application/xml", "application/xml", valid, 200, 0},
		{"content type casing", "TEXT/XML; Charset=UTF-8", valid, 200, 0},
		{"no content type", "", valid, 200, 0},
		{"exactly 64 KiB", "text/xml", atLimit, 200, 0},
		{"64 KiB + 1", "text/xml", oversize, 200, 600},
		{"1 MiB", "text/xml", bytes.Repeat([]byte("<a>"), 1<<18), 200, 600},
		{"billion laughs", "text/xml", billion, 200, 600},
		{"external entity", "text/xml", xxe, 200, 600},
		{"garbage", "text/xml", []byte("\x00\x01\xff garbage <<<"), 200, 600},
		{"empty body", "text/xml", []byte{}, 200, 600},
		{"json content type", "application/json", valid, 200, 600},
		{"form content type", "application/x-www-form-urlencoded", valid, 200, 600},
		{"bad content type", "text/xml; ;;", valid, 200, 600},
		{"truncated", "text/xml", valid[:len(valid)-5], 200, 600},
		{"trailing garbage", "text/xml", append(append([]byte{}, valid...), "<x/>"...), 200, 600},
		{"wrong root", "text/xml", []byte("<Discover><Request><EMailAddress>alice@example.test</EMailAddress></Request></Discover>"), 200, 600},
		{"missing EMailAddress", "text/xml", wrap("<Request><AcceptableResponseSchema>" + nsResponseOutlook + "</AcceptableResponseSchema></Request>"), 200, 600},
		{"empty EMailAddress", "text/xml", wrap("<Request><EMailAddress> </EMailAddress></Request>"), 200, 600},
		{"LegacyDN only", "text/xml", wrap("<Request><LegacyDN>/o=First Organization/cn=alice</LegacyDN></Request>"), 200, 600},
		{"two EMailAddress", "text/xml", wrap("<Request><EMailAddress>a@example.test</EMailAddress><EMailAddress>b@example.test</EMailAddress></Request>"), 200, 600},
		{"two Requests", "text/xml", wrap("<Request><EMailAddress>a@example.test</EMailAddress></Request><Request><EMailAddress>b@example.test</EMailAddress></Request>"), 200, 600},
		{"no Request", "text/xml", wrap(""), 200, 600},
		{"latin-1 declared", "text/xml", []byte(`<?xml version="1.0" encoding="ISO-8859-1"?>` + string(wrap("<Request><EMailAddress>a@example.test</EMailAddress></Request>"))), 200, 600},
		{"ascii declared", "text/xml", []byte(`<?xml version="1.0" encoding="US-ASCII"?>` + string(wrap("<Request><EMailAddress>a@example.test</EMailAddress></Request>"))), 200, 0},
		{"invalid utf-8", "text/xml", wrap("<Request><EMailAddress>a\xff@example.test</EMailAddress></Request>"), 200, 600},
		{"no schema, outlook namespace", "text/xml", wrap("<Request><EMailAddress>a@example.test</EMailAddress></Request>"), 200, 0},
		{"https namespace spelling", "text/xml", wrap("<Request><EMailAddress>a@example.test</EMailAddress><AcceptableResponseSchema>https://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema></Request>"), 200, 0},
		{"prefixed elements", "text/xml", []byte(`<a:Autodiscover xmlns:a="` + nsRequestOutlook + `"><a:Request><a:EMailAddress>a@example.test</a:EMailAddress></a:Request></a:Autodiscover>`), 200, 0},
		{"mobilesync schema", "text/xml", wrap("<Request><EMailAddress>a@example.test</EMailAddress><AcceptableResponseSchema>" + nsResponseMobileSync + "</AcceptableResponseSchema></Request>"), 200, 601},
		{"mobilesync namespace, no schema", "text/xml", []byte(`<Autodiscover xmlns="` + nsRequestMobileSync + `"><Request><EMailAddress>a@example.test</EMailAddress></Request></Autodiscover>`), 200, 601},
		{"unknown schema", "text/xml", wrap("<Request><EMailAddress>a@example.test</EMailAddress><AcceptableResponseSchema>urn:nope</AcceptableResponseSchema></Request>"), 200, 601},
		{"address with angle brackets", "text/xml", wrap("<Request><EMailAddress>&lt;script&gt;@example.test</EMailAddress></Request>"), 200, 600},
		{"address with quotes", "text/xml", wrap(`<Request><EMailAddress>"a b"@example.test</EMailAddress></Request>`), 200, 600},
		{"address without at", "text/xml", wrap("<Request><EMailAddress>alice</EMailAddress></Request>"), 200, 600},
		{"display-name address", "text/xml", wrap("<Request><EMailAddress>Alice &lt;alice@example.test&gt;</EMailAddress></Request>"), 200, 600},
		{"overlong address", "text/xml", wrap("<Request><EMailAddress>" + strings.Repeat("a", 300) + "@example.test</EMailAddress></Request>"), 200, 600},
		{"unknown domain", "text/xml", outlookRequest(t, "alice@example.net"), 404, 500},
		{"IP literal domain", "text/xml", outlookRequest(t, "alice@[127.0.0.1]"), 200, 600},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := f.do(t, http.MethodPost, "/Autodiscover/Autodiscover.xml", "", c.ct, c.body)
			if a.status >= 500 {
				t.Fatalf("server error %d: %s", a.status, a.body)
			}
			if a.status != c.status {
				t.Fatalf("status %d, want %d: %s", a.status, c.status, a.body)
			}
			testutil.XMLLint(t, a.body)
			if got := errorCode(t, a.body); got != c.code {
				t.Errorf("ErrorCode %d, want %d\n%s", got, c.code, a.body)
			}
		})
	}
}

// TestPOXEscaping: characters that are legal in a local part but special
// in XML reach the client intact, and nothing the caller sends can add
// markup.
func TestPOXEscaping(t *testing.T) {
	f := newFixture(t)
	for _, addr := range []string{"o'neil&co@example.test", "x'y'z{|}~@example.test"} {
		a := f.post(t, "/autodiscover/autodiscover.xml", outlookRequest(t, addr))
		if a.status != 200 {
			t.Fatalf("%s: status %d: %s", addr, a.status, a.body)
		}
		testutil.XMLLint(t, a.body)
		d := decodePOX(t, a.body)
		checkOutlookRules(t, d, addr)
		if bytes.Contains(a.body, []byte("&co")) && !bytes.Contains(a.body, []byte("&amp;co")) {
			t.Errorf("unescaped ampersand in %s", a.body)
		}
	}
}

func TestJSON(t *testing.T) {
	f := newFixture(t)
	okURL := "https://autodiscover.example.test/autodiscover/autodiscover.xml"
	cases := []struct {
		name, method, path, host string
		status                   int
		url, errCode             string
	}{
		{"query form", "GET", "/autodiscover/autodiscover.json?Email=alice@example.test&Protocol=AutodiscoverV1&RedirectCount=1", "", 200, okURL, ""},
		{"encoded address", "GET", "/autodiscover/autodiscover.json?Email=alice%40example.test&Protocol=AutodiscoverV1", "", 200, okURL, ""},
		{"lower-case params", "GET", "/autodiscover/autodiscover.json?email=alice@example.test&protocol=autodiscoverv1", "", 200, okURL, ""},
		{"path form", "GET", "/autodiscover/autodiscover.json/v1.0/alice@example.test?Protocol=AutodiscoverV1&RedirectCount=1", "", 200, okURL, ""},
		{"path form encoded", "GET", "/autodiscover/autodiscover.json/v1.0/alice%40example.test?Protocol=AutodiscoverV1", "", 200, okURL, ""},
		{"path form capitals", "GET", "/AutoDiscover/AutoDiscover.json/V1.0/alice@example.test?Protocol=AutodiscoverV1", "", 200, okURL, ""},
		{"path form capitals encoded", "GET", "/AUTODISCOVER/autodiscover.json/v1.0/alice%40example.test?Protocol=AutodiscoverV1", "", 200, okURL, ""},
		{"capitals", "GET", "/Autodiscover/Autodiscover.JSON?Email=alice@example.test&Protocol=AutodiscoverV1", "", 200, okURL, ""},
		{"HEAD", "HEAD", "/autodiscover/autodiscover.json?Email=alice@example.test&Protocol=AutodiscoverV1", "", 200, "", ""},
		{"IDN", "GET", "/autodiscover/autodiscover.json?Email=erika@b%C3%BCcher.example&Protocol=AutodiscoverV1", "", 200, "https://autodiscover.xn--bcher-kva.example/autodiscover/autodiscover.xml", ""},
		{"no email, host", "GET", "/autodiscover/autodiscover.json?Protocol=AutodiscoverV1", "autodiscover.example.org", 200, "https://autodiscover.example.org/autodiscover/autodiscover.xml", ""},
		{"ActiveSync", "GET", "/autodiscover/autodiscover.json?Email=alice@example.test&Protocol=ActiveSync", "", 400, "", "InvalidProtocol"},
		{"Ews", "GET", "/autodiscover/autodiscover.json/v1.0/alice@example.test?Protocol=Ews", "", 400, "", "InvalidProtocol"},
		{"no protocol", "GET", "/autodiscover/autodiscover.json?Email=alice@example.test", "", 400, "", "InvalidProtocol"},
		{"hostile protocol", "GET", "/autodiscover/autodiscover.json?Email=alice@example.test&Protocol=%3Cscript%3E%22%27%26", "", 400, "", "InvalidProtocol"},
		{"bad email", "GET", "/autodiscover/autodiscover.json?Email=%3Cb%3E@example.test&Protocol=AutodiscoverV1", "", 400, "", "InvalidUser"},
		{"unknown domain", "GET", "/autodiscover/autodiscover.json?Email=alice@example.net&Protocol=AutodiscoverV1", "", 404, "", "NotFound"},
		{"no email, unknown host", "GET", "/autodiscover/autodiscover.json?Protocol=AutodiscoverV1", "autodiscover.example.net", 404, "", "NotFound"},
		{"POST", "POST", "/autodiscover/autodiscover.json?Email=alice@example.test&Protocol=AutodiscoverV1", "", 405, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := f.do(t, c.method, c.path, c.host, "", nil)
			if a.status != c.status {
				t.Fatalf("status %d, want %d: %s", a.status, c.status, a.body)
			}
			if c.method == "HEAD" {
				if len(a.body) != 0 || !strings.HasPrefix(a.header.Get("Content-Type"), "application/json") {
					t.Errorf("HEAD: body %q Content-Type %q", a.body, a.header.Get("Content-Type"))
				}
				return
			}
			if c.status == 405 {
				return
			}
			if ct := a.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			var got map[string]string
			if err := json.Unmarshal(a.body, &got); err != nil {
				t.Fatalf("not JSON: %v: %s", err, a.body)
			}
			if c.url != "" {
				want := map[string]string{"Protocol": "AutodiscoverV1", "Url": c.url}
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("answer %v, want %v", got, want)
				}
			}
			if c.errCode != "" {
				if got["ErrorCode"] != c.errCode || got["ErrorMessage"] == "" {
					t.Errorf("error answer %v, want ErrorCode %s", got, c.errCode)
				}
				if strings.ContainsAny(got["ErrorMessage"], "<>\"&") {
					t.Errorf("error message reflects markup: %q", got["ErrorMessage"])
				}
			}
		})
	}
	a := f.do(t, "GET", "/autodiscover/autodiscover.json?Email=alice@example.test&Protocol=Imap", "", "", nil)
	if want := `{"ErrorCode":"InvalidProtocol","ErrorMessage":"The given protocol value 'Imap' is invalid. Supported values are 'AutodiscoverV1'"}`; string(a.body) != want {
		t.Errorf("Exchange-style error:\n got %s\nwant %s", a.body, want)
	}
	if got := f.count(t, autoconfig.FormatAutodiscoverJSON, 200); got != 11 {
		t.Errorf("counted %v JSON 200 answers, want 11", got)
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

func BenchmarkAutodiscover(b *testing.B) {
	h, _ := newHandler(b)
	e := echo.New()
	h.Register(e)
	body := outlookRequest(b, "alice@example.org")
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/Autodiscover/Autodiscover.xml", bytes.NewReader(body))
		req.Header.Set("Content-Type", "text/xml; charset=utf-8")
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d", rec.Code)
		}
	}
}

// TestPOXOversizedBodyClosesConnection: the server answers an oversized
// request and closes the connection rather than reading the rest of the
// body to keep the connection alive.
func TestPOXOversizedBodyClosesConnection(t *testing.T) {
	f := newFixture(t)
	for _, size := range []int{maxBody / 2, 4 * maxBody} {
		req, err := http.NewRequest(http.MethodPost, f.srv.URL+"/autodiscover/autodiscover.xml", bytes.NewReader(bytes.Repeat([]byte(" "), size)))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "text/xml")
		resp, err := f.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if oversized := size > maxBody; resp.Close != oversized {
			t.Errorf("%d-byte body: Connection: close = %v, want %v", size, resp.Close, oversized)
		}
	}
}
