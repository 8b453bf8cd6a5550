package web

import (
	"bufio"
	"bytes"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"mailconf/autoconfig"
	"mailconf/config"
	"mailconf/internal/metrics"
	"mailconf/internal/testutil"
	"mailconf/probe"
	"mailconf/probe/check"
	"mailconf/probe/probetest"
	"mailconf/probe/report"
)

const (
	address    = "alice@example.test"
	password   = "correct horse battery staple"
	staffToken = "staff-token-0123456789abcdef"
)

// autoconfigDoc is a third party's autoconfig document (fixture input).
const autoconfigDoc = `<?xml version="1.0" encoding="UTF-8"?>
<clientConfig version="1.1"><emailProvider id="example.test"><domain>example.test</domain>
<incomingServer type="imap"><hostname>imap.example.test</hostname><port>993</port><socketType>SSL</socketType><username>%EMAILADDRESS%</username><authentication>password-cleartext</authentication></incomingServer>
<outgoingServer type="smtp"><hostname>smtp.example.test</hostname><port>465</port><socketType>SSL</socketType><username>%EMAILADDRESS%</username><authentication>password-cleartext</authentication></outgoingServer>
</emailProvider></clientConfig>
`

// serviceTOML serves example.test from the world's servers.
const serviceTOML = `
data_dir = "/tmp/unused"
hostname = "mail.example.test"
[listen]
http = "127.0.0.1:8080"
[[domain]]
name = "example.test"
  [[domain.server]]
  protocol = "imap"
  host = "imap.example.test"
  port = 993
  security = "tls"
  [[domain.server]]
  protocol = "smtp"
  host = "smtp.example.test"
  port = 465
  security = "tls"
`

// ownHosts are the world's hosts as the service's own servers: allowed on
// loopback.
var ownHosts = []string{"autoconfig.example.test", "imap.example.test", "smtp.example.test", "mx.example.test", "example.test"}

// clock is an injectable time for the rate limits.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type env struct {
	w          *probetest.World
	imap, smtp *probetest.Mail
	srv        *httptest.Server
	logs       *testutil.SyncBuffer
	metrics    *metrics.Metrics
	clock      *clock
}

// newEnv starts example.test's world (IMAP 993 and SMTP 465 answering the
// test password, autoconfig over https) and the probe web handler serving
// example.test. mod adjusts the handler options.
func newEnv(t *testing.T, mod func(*Options)) *env {
	t.Helper()
	w := probetest.NewWorld(t)
	w.Zone(t, "example.test. 300 IN MX 10 mx.example.test.\nmx.example.test. 300 IN A 127.0.0.1\n")
	e := &env{w: w, logs: &testutil.SyncBuffer{}, metrics: metrics.New(), clock: &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}}
	e.imap = &probetest.Mail{Proto: "imap", Implicit: true, Cert: probetest.Cert(t, w.CA, "imap.example.test"), User: address, Pass: password}
	e.smtp = &probetest.Mail{Proto: "smtp", Implicit: true, Cert: probetest.Cert(t, w.CA, "smtp.example.test"), User: address, Pass: password}
	w.Mail(t, "imap.example.test", 993, e.imap)
	w.Mail(t, "smtp.example.test", 465, e.smtp)
	w.Page(t, "https://autoconfig.example.test/mail/config-v1.1.xml", probetest.XML("text/xml; charset=utf-8", autoconfigDoc))

	cfg, err := config.Parse("test.toml", []byte(serviceTOML))
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{
		Catalog:     autoconfig.NewCatalog(cfg),
		OwnHosts:    ownHosts,
		RootCAs:     func() *x509.CertPool { return w.CA.Pool },
		Resolver:    w.DNS.Addr,
		StaffTokens: []string{"other-token", staffToken},
		EHLOName:    "mail.example.test",
		Metrics:     e.metrics,
		Logger:      slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:         e.clock.now,
		Timeout:     30 * time.Second,
		Configure: func(o *probe.Options) {
			o.PortMap = w.PortMap
			o.Timeouts = check.Timeouts{Greeting: 1500 * time.Millisecond, GreetingSlow: 300 * time.Millisecond, Command: 2 * time.Second, Endpoint: 10 * time.Second}
		},
	}
	if mod != nil {
		mod(&opts)
	}
	h, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ec := echo.New()
	ec.HideBanner = true
	h.Register(ec)
	e.srv = httptest.NewServer(ec)
	t.Cleanup(e.srv.Close)
	t.Cleanup(func() {
		if strings.Contains(e.logs.String(), password) {
			t.Errorf("the password appears in the log:\n%s", e.logs.String())
		}
	})
	return e
}

type answer struct {
	status int
	header http.Header
	body   string
}

func (e *env) post(t *testing.T, path, contentType, body string, header ...string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	a := answer{resp.StatusCode, resp.Header, string(b)}
	if strings.Contains(a.body, password) {
		t.Fatalf("the password appears in the answer:\n%s", a.body)
	}
	if a.status >= 500 && a.status != http.StatusServiceUnavailable {
		t.Fatalf("%s: status %d\n%s", path, a.status, a.body)
	}
	return a
}

func jsonBody(addr, pw string) string {
	b, _ := json.Marshal(map[string]string{"address": addr, "password": pw})
	return string(b)
}

func (e *env) probe(t *testing.T, addr, pw string, header ...string) answer {
	t.Helper()
	return e.post(t, PathAPI, "application/json", jsonBody(addr, pw), header...)
}

func decodeReport(t *testing.T, a answer) *report.Report {
	t.Helper()
	if a.status != http.StatusOK {
		t.Fatalf("status %d: %s", a.status, a.body)
	}
	var rep report.Report
	if err := json.Unmarshal([]byte(a.body), &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, a.body)
	}
	if rep.Schema != report.Schema {
		t.Fatalf("schema %q", rep.Schema)
	}
	return &rep
}

func errorOf(t *testing.T, a answer) string {
	t.Helper()
	var m struct {
		Status int    `json:"status"`
		Error  string `json:"error"`
	}
	if err := json.Unmarshal([]byte(a.body), &m); err != nil || m.Error == "" || m.Status != a.status {
		t.Fatalf("status %d: want a JSON error, got %q (%v)", a.status, a.body, err)
	}
	return m.Error
}

func stepCodes(rep *report.Report) map[report.Code]bool {
	out := map[report.Code]bool{}
	for _, s := range rep.Steps {
		if s.Error != nil {
			out[s.Error.Class] = true
		}
	}
	for _, d := range rep.Discovery {
		if d.Error != nil {
			out[d.Error.Class] = true
		}
	}
	return out
}

func TestAnonymousServedDomain(t *testing.T) {
	e := newEnv(t, nil)
	rep := decodeReport(t, e.probe(t, address, password))
	if rep.Summary.Status != report.OverallOK && rep.Summary.Status != report.OverallWarnings {
		var b bytes.Buffer
		_ = report.Text(&b, rep, false)
		t.Fatalf("status %s\n%s", rep.Summary.Status, b.String())
	}
	if rep.Policy.Reason != "served_domain" || !rep.Policy.AuthAllowed || rep.Policy.Unrestricted {
		t.Errorf("policy %+v", rep.Policy)
	}
	if e.imap.Logins() != 1 || e.smtp.Logins() != 1 {
		t.Errorf("logins IMAP %d SMTP %d, want 1 each", e.imap.Logins(), e.smtp.Logins())
	}
	rec := httptest.NewRecorder()
	e.metrics.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if want := fmt.Sprintf("mailconf_probe_results_total{status=%q} 1\n", rep.Summary.Status); !strings.Contains(rec.Body.String(), want) {
		t.Errorf("metrics lack %q", want)
	}
	// A form body works as well as JSON.
	form := url.Values{"address": {address}}.Encode()
	if rep := decodeReport(t, e.post(t, PathAPI, "application/x-www-form-urlencoded", form)); rep.Input.Mode != "discover" {
		t.Errorf("form probe mode %q", rep.Input.Mode)
	}
	if !strings.Contains(e.logs.String(), `"msg":"probe request"`) {
		t.Errorf("no audit log line:\n%s", e.logs.String())
	}
}

// TestTrustRootsPerRun: the trust anchors are asked for at every run, so
// the service's certificate reloaded on SIGHUP is trusted from the next
// run on (they were once fixed when the server started).
func TestTrustRootsPerRun(t *testing.T) {
	var trusted atomic.Bool
	e := newEnv(t, func(o *Options) {
		ca := o.RootCAs
		o.RootCAs = func() *x509.CertPool {
			if trusted.Load() {
				return ca()
			}
			return x509.NewCertPool()
		}
	})
	if rep := decodeReport(t, e.probe(t, address, "")); rep.Summary.Status == report.OverallOK || rep.Summary.Status == report.OverallWarnings {
		t.Fatalf("status %s with no trusted root", rep.Summary.Status)
	}
	trusted.Store(true)
	if rep := decodeReport(t, e.probe(t, address, "")); rep.Summary.Status != report.OverallOK && rep.Summary.Status != report.OverallWarnings {
		var b bytes.Buffer
		_ = report.Text(&b, rep, false)
		t.Fatalf("status %s once the root is trusted\n%s", rep.Summary.Status, b.String())
	}
}

func TestUnservedDomainNeedsStaff(t *testing.T) {
	e := newEnv(t, nil)
	a := e.probe(t, "bob@other.test", password)
	if a.status != http.StatusForbidden || !strings.Contains(errorOf(t, a), "other.test is not a domain served here") {
		t.Fatalf("anonymous probe of an unserved domain: %d %s", a.status, a.body)
	}
	a = e.probe(t, "bob@other.test", "", "Authorization", "Bearer "+staffToken)
	rep := decodeReport(t, a)
	if rep.Policy.Reason != "staff" || rep.Input.Domain != "other.test" {
		t.Errorf("staff probe policy %+v input %+v", rep.Policy, rep.Input)
	}
	for _, bad := range []string{"Bearer wrong-token", "Bearer " + staffToken + "x", "Basic " + staffToken, "Bearer "} {
		a = e.probe(t, "bob@other.test", "", "Authorization", bad)
		if a.status != http.StatusUnauthorized || a.header.Get("WWW-Authenticate") == "" {
			t.Errorf("Authorization %q: status %d", bad, a.status)
		}
		errorOf(t, a)
	}
	// The page's form field works like the header.
	form := url.Values{"address": {"bob@other.test"}, "token": {staffToken}}.Encode()
	decodeReport(t, e.post(t, PathAPI, "application/x-www-form-urlencoded", form))
}

func TestCallerRateLimit(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Limits = Limits{CallerRuns: 2, CallerWindow: time.Minute} })
	for i := 0; i < 2; i++ {
		decodeReport(t, e.probe(t, address, ""))
	}
	a := e.probe(t, address, "")
	if a.status != http.StatusTooManyRequests || a.header.Get("Retry-After") == "" {
		t.Fatalf("third probe within a minute: %d %s", a.status, a.body)
	}
	errorOf(t, a)
	// Staff are not limited per caller.
	decodeReport(t, e.probe(t, address, "", "Authorization", "Bearer "+staffToken))
	e.clock.add(31 * time.Second) // one token back
	decodeReport(t, e.probe(t, address, ""))
	if a := e.probe(t, address, ""); a.status != http.StatusTooManyRequests {
		t.Fatalf("after one refill, the second probe: %d", a.status)
	}
}

func TestMailboxRateLimit(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Limits = Limits{MailboxLogins: 1, MailboxWindow: 15 * time.Minute} })
	decodeReport(t, e.probe(t, address, password))
	for _, hdr := range [][]string{nil, {"Authorization", "Bearer " + staffToken}} {
		a := e.probe(t, "ALICE@example.test", "another guess", hdr...)
		if a.status != http.StatusTooManyRequests {
			t.Fatalf("second password test of the mailbox (%v): %d %s", hdr, a.status, a.body)
		}
		if strings.Contains(a.body, "another guess") {
			t.Fatal("the password appears in the refusal")
		}
	}
	if e.imap.Logins() != 1 {
		t.Errorf("IMAP saw %d logins, want 1", e.imap.Logins())
	}
	// Without a password, or for another mailbox, the probe still runs.
	decodeReport(t, e.probe(t, address, ""))
	decodeReport(t, e.probe(t, "carol@example.test", password))
	e.clock.add(15 * time.Minute)
	decodeReport(t, e.probe(t, address, password))
}

// TestPrivateAddressRefused: without the hosts on the own-host list, their
// loopback addresses are refused at connect time and no password leaves.
func TestPrivateAddressRefused(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.OwnHosts = nil })
	rep := decodeReport(t, e.probe(t, address, password))
	if !stepCodes(rep)[report.PolicyBlockedAddress] {
		t.Fatalf("no %s step; codes %v", report.PolicyBlockedAddress, stepCodes(rep))
	}
	if e.imap.Logins()+e.smtp.Logins() != 0 {
		t.Fatal("a login reached a loopback server that is not one of ours")
	}
	if rep.Summary.Status == report.OverallOK {
		t.Errorf("status ok although every address was refused")
	}
}

func TestRedirectToMetadataRefused(t *testing.T) {
	e := newEnv(t, nil)
	e.w.Zone(t, "metadata.example.test. 300 IN A 169.254.169.254\n")
	e.w.Page(t, "https://autoconfig.example.test/mail/config-v1.1.xml", func(rw http.ResponseWriter, r *http.Request) {
		http.Redirect(rw, r, "https://metadata.example.test/latest/meta-data/", http.StatusFound)
	})
	rep := decodeReport(t, e.probe(t, address, ""))
	found := false
	for _, d := range rep.Discovery {
		if d.Mechanism == "autoconfig.provider_https" {
			found = d.Error != nil && d.Error.Class == report.PolicyBlockedAddress && len(d.Redirects) == 1
		}
	}
	if !found {
		t.Fatalf("the redirect to 169.254.169.254 was not refused: %+v", rep.Discovery)
	}
}

func TestBadInput(t *testing.T) {
	e := newEnv(t, nil)
	big := `{"address":"` + address + `","password":"` + strings.Repeat("x", MaxBody) + `"}`
	for _, c := range []struct {
		name, path, ct, body, want string
	}{
		{"malformed JSON", PathAPI, "application/json", `{"address": "a@example.test",`, "JSON"},
		{"not an object", PathAPI, "application/json", `["a@example.test"]`, "must be"},
		{"wrong type", PathAPI, "application/json", `{"address": 42}`, "must be"},
		{"unknown field", PathAPI, "application/json", `{"address": "a@example.test", "pass": "x"}`, "unknown field"},
		{"trailing data", PathAPI, "application/json", `{"address": "a@example.test"} {}`, "nothing after"},
		{"empty body", PathAPI, "application/json", ``, "incomplete"},
		{"oversize body", PathAPI, "application/json", big, "larger than"},
		{"oversize form", PathAPI, "application/x-www-form-urlencoded", "address=a%40example.test&password=" + strings.Repeat("x", MaxBody), "larger than"},
		{"wrong content type", PathAPI, "text/plain", jsonBody(address, ""), "Content-Type"},
		{"no content type", PathAPI, "", jsonBody(address, ""), "Content-Type"},
		{"multipart", PathAPI, "multipart/form-data; boundary=x", "--x--", "Content-Type"},
		{"bad address", PathAPI, "application/json", jsonBody("not an address", ""), "address"},
		{"no address", PathAPI, "application/json", `{}`, "address"},
		{"IP literal", PathAPI, "application/json", jsonBody("a@[127.0.0.1]", ""), "address"},
		{"password in URL", PathAPI + "?password=secret", "application/json", jsonBody(address, ""), "URL"},
		{"bad UTF-8", PathAPI, "application/x-www-form-urlencoded", "address=a%FF%40example.test", "UTF-8"},
	} {
		a := e.post(t, c.path, c.ct, c.body)
		if a.status != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400: %s", c.name, a.status, a.body)
			continue
		}
		if msg := errorOf(t, a); !strings.Contains(msg, c.want) {
			t.Errorf("%s: error %q, want %q", c.name, msg, c.want)
		}
	}
	// The page form answers bad input with the page and the message.
	a := e.post(t, PathPage, "application/x-www-form-urlencoded", "address=nope")
	if a.status != http.StatusBadRequest || !strings.Contains(a.body, `id="error"`) || !strings.Contains(a.body, `id="probe-form"`) {
		t.Errorf("page with a bad address: %d\n%s", a.status, a.body)
	}
}

func TestConcurrencyLimit(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Limits = Limits{Concurrent: 1} })
	// A silent server holds the one slot until its greeting times out.
	e.w.Mail(t, "slow.example.test", 995, &probetest.Mail{Proto: "pop3", Implicit: true, Silent: true, Cert: probetest.Cert(t, e.w.CA, "slow.example.test")})
	e.w.Page(t, "https://autoconfig.example.test/mail/config-v1.1.xml", probetest.XML("text/xml", strings.Replace(autoconfigDoc,
		`<incomingServer type="imap"><hostname>imap.example.test</hostname><port>993</port>`, `<incomingServer type="pop3"><hostname>slow.example.test</hostname><port>995</port>`, 1)))
	// The first probe streams: once its first step arrives it holds the slot.
	req, err := http.NewRequest(http.MethodPost, e.srv.URL+PathAPI+"?stream=1", strings.NewReader(jsonBody(address, "")))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); err != nil || line != "event: step\n" {
		t.Fatalf("first stream line %q %v", line, err)
	}
	a := e.probe(t, address, "", "Authorization", "Bearer "+staffToken)
	if a.status != http.StatusServiceUnavailable || a.header.Get("Retry-After") == "" {
		t.Errorf("a second probe while one runs: %d", a.status)
	}
	errorOf(t, a)
	rest, err := io.ReadAll(br)
	if err != nil || !strings.Contains(string(rest), "event: done") {
		t.Fatalf("the first probe did not finish: %v", err)
	}
	decodeReport(t, e.probe(t, address, ""))
}

// events reads a server-sent event stream.
func events(t *testing.T, body string) (names []string, data []string) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(nil, 4<<20)
	var name string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			names = append(names, name)
			data = append(data, strings.TrimPrefix(line, "data: "))
		}
	}
	return names, data
}

func TestStream(t *testing.T) {
	e := newEnv(t, nil)
	a := e.post(t, PathAPI+"?stream=1", "application/json", jsonBody(address, password))
	if a.status != http.StatusOK || !strings.HasPrefix(a.header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("stream: %d %s", a.status, a.header.Get("Content-Type"))
	}
	names, data := events(t, a.body)
	if len(names) < 10 {
		t.Fatalf("%d events:\n%s", len(names), a.body)
	}
	running, finished := 0, 0
	for i, n := range names[:len(names)-2] {
		if n != "step" {
			t.Fatalf("event %d is %q, want step", i, n)
		}
		var s report.Step
		if err := json.Unmarshal([]byte(data[i]), &s); err != nil || s.ID == "" {
			t.Fatalf("step event %q: %v", data[i], err)
		}
		if s.Status == report.StatusRunning {
			running++
		} else {
			finished++
		}
	}
	if running == 0 || finished == 0 {
		t.Errorf("steps: %d running, %d finished updates", running, finished)
	}
	if names[len(names)-2] != "report" || names[len(names)-1] != "done" {
		t.Fatalf("last events %v", names[len(names)-2:])
	}
	var rep report.Report
	if err := json.Unmarshal([]byte(data[len(data)-2]), &rep); err != nil || rep.Schema != report.Schema {
		t.Fatalf("report event: %v", err)
	}
	var done doneEvent
	if err := json.Unmarshal([]byte(data[len(data)-1]), &done); err != nil {
		t.Fatal(err)
	}
	if done.Status != rep.Summary.Status || !strings.Contains(done.HTML, `id="matrix"`) || !strings.HasPrefix(done.Text, "Probe of a***@example.test") {
		t.Errorf("done event: status %s html %d bytes text %q", done.Status, len(done.HTML), done.Text[:min(len(done.Text), 60)])
	}
	// Refusals come as a JSON error before any stream starts.
	if a := e.post(t, PathAPI+"?stream=1", "application/json", jsonBody("bob@other.test", "")); a.status != http.StatusForbidden {
		t.Errorf("stream for an unserved domain: %d", a.status)
	}
}

func TestPageWithoutJavaScript(t *testing.T) {
	e := newEnv(t, nil)
	resp, err := http.Get(e.srv.URL + PathPage + "?address=" + url.QueryEscape(address))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	page := string(b)
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, `<form id="probe-form" method="post" action="/probe"`) || !strings.Contains(page, `value="alice@example.test"`) {
		t.Fatalf("GET /probe: %d\n%s", resp.StatusCode, page)
	}
	nonce := regexp.MustCompile(`<script nonce="([^"]+)">`).FindStringSubmatch(page)
	csp := resp.Header.Get("Content-Security-Policy")
	if nonce == nil || !strings.Contains(csp, "'nonce-"+nonce[1]+"'") || strings.Contains(csp, "unsafe-eval") {
		t.Errorf("script nonce %v, CSP %q", nonce, csp)
	}
	if strings.Contains(page, `id="report"`) {
		t.Error("a report on the bare form page")
	}

	form := url.Values{"address": {address}, "password": {password}}.Encode()
	a := e.post(t, PathPage, "application/x-www-form-urlencoded", form)
	if a.status != http.StatusOK {
		t.Fatalf("POST /probe: %d\n%s", a.status, a.body)
	}
	for _, want := range []string{`id="report"`, `id="verdict" data-status="ok`, `id="matrix"`, `id="steps"`, `id="ticket"`, `IMAP imap.example.test:993 implicit_tls`, `Probe of a***@example.test (auth)`} {
		if !strings.Contains(a.body, want) {
			t.Errorf("report page lacks %q", want)
		}
	}
	if e.imap.Logins() != 1 {
		t.Errorf("IMAP logins %d", e.imap.Logins())
	}
	a = e.post(t, PathPage, "application/x-www-form-urlencoded", url.Values{"address": {"bob@other.test"}}.Encode())
	if a.status != http.StatusForbidden || !strings.Contains(a.body, "other.test is not a domain served here") || !strings.Contains(a.body, `value="bob@other.test"`) {
		t.Errorf("page for an unserved domain: %d", a.status)
	}
}

func TestLoadTokens(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "tokens")
	if err := os.WriteFile(p, []byte("# staff\n\n  tok-one  \ntok-two\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := LoadTokens(p)
	if err != nil || fmt.Sprint(got) != "[tok-one tok-two]" {
		t.Fatalf("LoadTokens: %v %v", got, err)
	}
	if err := os.WriteFile(p, []byte("two words\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadTokens(p); err == nil || strings.Contains(err.Error(), "two words") {
		t.Errorf("a token with a space: %v (the error must not echo the token)", err)
	}
	if _, err := LoadTokens(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing file loaded")
	}
}

func TestLimiterMemoryBound(t *testing.T) {
	l := newLimiter(1, time.Minute, 3)
	now := time.Unix(0, 0)
	for i := 0; i < 3; i++ {
		if ok, _ := l.allow(fmt.Sprint(i), now); !ok {
			t.Fatalf("key %d refused", i)
		}
	}
	if ok, _ := l.allow("new", now); ok {
		t.Error("a fourth key accepted while every bucket is in use")
	}
	if ok, _ := l.allow("new", now.Add(time.Minute)); !ok {
		t.Error("refilled buckets were not forgotten")
	}
	if len(l.keys) > 3 {
		t.Errorf("%d keys kept, bound 3", len(l.keys))
	}
	if got := callerKey("[2001:db8:1:2:3:4:5:6]:443"); got != "2001:db8:1:2::/64" {
		t.Errorf("IPv6 caller key %q", got)
	}
	if got := callerKey("192.0.2.7:5000"); got != "192.0.2.7" {
		t.Errorf("IPv4 caller key %q", got)
	}
}
