package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailconf/config"
	"mailconf/internal/testutil"
	"mailconf/probe"
	"mailconf/probe/check"
	"mailconf/probe/probetest"
)

const (
	probeAddress  = "alice@example.test"
	probePassword = "correct horse battery staple"
)

// probeWorld is example.test on loopback: autoconfig over https naming
// IMAP 993 and SMTP 465, both answering the test password.
type probeWorld struct {
	w          *probetest.World
	imap, smtp *probetest.Mail
}

func newProbeWorld(t *testing.T, cert *tls.Certificate) *probeWorld {
	t.Helper()
	w := probetest.NewWorld(t)
	w.Zone(t, "example.test. 300 IN MX 10 mx.example.test.\nmx.example.test. 300 IN A 127.0.0.1\n")
	imapCert, smtpCert := cert, cert
	if cert == nil {
		imapCert = probetest.Cert(t, w.CA, "imap.example.test")
		smtpCert = probetest.Cert(t, w.CA, "smtp.example.test")
	} else {
		w.WebCert("autoconfig.example.test", cert)
	}
	pw := &probeWorld{
		w:    w,
		imap: &probetest.Mail{Proto: "imap", Implicit: true, Cert: imapCert, User: probeAddress, Pass: probePassword},
		smtp: &probetest.Mail{Proto: "smtp", Implicit: true, Cert: smtpCert, User: probeAddress, Pass: probePassword},
	}
	w.Mail(t, "imap.example.test", 993, pw.imap)
	w.Mail(t, "smtp.example.test", 465, pw.smtp)
	w.Page(t, "https://autoconfig.example.test/mail/config-v1.1.xml", probetest.XML("text/xml; charset=utf-8", probeAutoconfig))
	return pw
}

// probeAutoconfig is a third party's autoconfig document, written out
// literally on purpose: it is fixture input, not output of ours.
const probeAutoconfig = `<?xml version="1.0" encoding="UTF-8"?>
<clientConfig version="1.1"><emailProvider id="example.test"><domain>example.test</domain>
<incomingServer type="imap"><hostname>imap.example.test</hostname><port>993</port><socketType>SSL</socketType><username>%EMAILADDRESS%</username><authentication>password-cleartext</authentication></incomingServer>
<outgoingServer type="smtp"><hostname>smtp.example.test</hostname><port>465</port><socketType>SSL</socketType><username>%EMAILADDRESS%</username><authentication>password-cleartext</authentication></outgoingServer>
</emailProvider></clientConfig>
`

// adjust points the probe at the world's listeners with short timeouts.
func (pw *probeWorld) adjust(o *probe.Options) {
	o.PortMap = pw.w.PortMap
	o.Timeouts = check.Timeouts{Greeting: 1500 * time.Millisecond, GreetingSlow: 300 * time.Millisecond, Command: 2 * time.Second, Endpoint: 10 * time.Second}
}

// probeConfig is the operator's config. It serves another domain than the
// test world's example.test: for a served domain the probe also tests the
// settings this server publishes, which these tests do not run.
func probeConfig(t *testing.T) *config.Config {
	t.Helper()
	cfg, err := config.Parse("probe.toml", []byte(strings.Replace(config.DefaultTOML(), `name         = "example.test"`, `name         = "operator.test"`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := cfg.Domain("operator.test"); !ok {
		t.Fatal("probeConfig: the default config's domain line changed")
	}
	cfg.DataDir = t.TempDir()
	return cfg
}

type probeRun struct {
	code           int
	stdout, stderr string
}

func runProbeTest(t *testing.T, pw *probeWorld, cfg *config.Config, stdin string, args ...string) probeRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	var adjust func(*probe.Options)
	if pw != nil {
		adjust = pw.adjust
	}
	code := probeCommand(ctx, cfg, args, strings.NewReader(stdin), &out, &errOut, adjust)
	r := probeRun{code, out.String(), errOut.String()}
	if strings.Contains(r.stdout, probePassword) || strings.Contains(r.stderr, probePassword) {
		t.Fatalf("the password appears in the output:\n%s\n%s", r.stdout, r.stderr)
	}
	return r
}

// jsonReport decodes --json output loosely, as a script would.
func jsonReport(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("--json output is not JSON: %v\n%s", err, s)
	}
	return m
}

func summaryStatus(m map[string]any) string {
	s, _ := m["summary"].(map[string]any)
	st, _ := s["status"].(string)
	return st
}

func hasCode(m map[string]any, code string) bool {
	steps, _ := m["steps"].([]any)
	for _, s := range steps {
		e, _ := s.(map[string]any)["error"].(map[string]any)
		if e != nil && e["class"] == code {
			return true
		}
	}
	return false
}

func TestProbeAllGreenWithCA(t *testing.T) {
	pw := newProbeWorld(t, nil)
	cfg := probeConfig(t)
	r := runProbeTest(t, pw, cfg, probePassword+"\n", probeAddress, "--password-stdin", "--json", "--resolver", pw.w.DNS.Addr, "--ca", pw.w.CA.RootFile)
	if r.code != exitOK {
		t.Fatalf("exit %d, want 0\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	m := jsonReport(t, r.stdout)
	if m["schema"] != "probe-report/1" {
		t.Errorf("schema %v", m["schema"])
	}
	for _, k := range []string{"id", "created_at", "input", "policy", "summary", "dns", "discovery", "endpoints", "steps", "findings", "transcripts"} {
		if _, ok := m[k]; !ok {
			t.Errorf("report has no %q", k)
		}
	}
	if st := summaryStatus(m); st != "ok" && st != "ok_with_warnings" {
		t.Errorf("status %q", st)
	}
	in, _ := m["input"].(map[string]any)
	if in["password_supplied"] != true || in["mode"] != "auth" || in["address_masked"] != "a***@example.test" {
		t.Errorf("input %v", in)
	}
	pol, _ := m["policy"].(map[string]any)
	if pol["unrestricted"] != true || pol["auth_allowed"] != true {
		t.Errorf("policy %v: the CLI runs with the operator's trust", pol)
	}
	if pw.imap.Logins() != 1 || pw.smtp.Logins() != 1 {
		t.Errorf("logins IMAP %d SMTP %d, want one each", pw.imap.Logins(), pw.smtp.Logins())
	}
}

func TestProbeText(t *testing.T) {
	pw := newProbeWorld(t, nil)
	cfg := probeConfig(t)
	cfg.DNS.Resolver = pw.w.DNS.Addr // [dns] resolver when --resolver is absent
	r := runProbeTest(t, pw, cfg, "", probeAddress, "--ca", pw.w.CA.RootFile)
	if r.code != exitOK {
		t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if !strings.HasPrefix(r.stdout, "Probe of a***@example.test (discover)") || strings.Contains(r.stdout, "\x1b[") {
		t.Errorf("text report (no colour off a terminal):\n%s", r.stdout)
	}
	if pw.imap.Logins() != 0 {
		t.Errorf("a login without a password")
	}
}

// TestProbeUntrustedWithoutCA: without --ca the test CA is unknown, the
// probe reports it, sends no password and exits 1.
func TestProbeUntrustedWithoutCA(t *testing.T) {
	pw := newProbeWorld(t, nil)
	r := runProbeTest(t, pw, probeConfig(t), probePassword+"\n", "--json", probeAddress, "--password-stdin", "--resolver", pw.w.DNS.Addr)
	if r.code != exitFailure {
		t.Fatalf("exit %d, want 1\n%s", r.code, r.stderr)
	}
	m := jsonReport(t, r.stdout)
	if !hasCode(m, "cert.untrusted") {
		t.Errorf("no cert.untrusted step; status %s", summaryStatus(m))
	}
	if pw.imap.Logins()+pw.smtp.Logins() != 0 {
		t.Errorf("the password went to an unverified server")
	}
}

func TestProbeWrongPassword(t *testing.T) {
	pw := newProbeWorld(t, nil)
	r := runProbeTest(t, pw, probeConfig(t), "not the password\r\n", probeAddress, "--json", "--password-stdin", "--resolver", pw.w.DNS.Addr, "--ca", pw.w.CA.RootFile)
	if r.code != exitFailure {
		t.Fatalf("exit %d, want 1", r.code)
	}
	if m := jsonReport(t, r.stdout); !hasCode(m, "auth.failed") {
		t.Errorf("no auth.failed step")
	}
	if strings.Contains(r.stdout+r.stderr, "not the password") {
		t.Errorf("the wrong password appears in the output")
	}
}

// TestProbeTrustsOwnCertificate: a fresh install's self-signed certificate
// in data_dir/tls is trusted without --ca, login included.
func TestProbeTrustsOwnCertificate(t *testing.T) {
	own := probetest.SelfSigned(t, "imap.example.test", "smtp.example.test", "autoconfig.example.test")
	pw := newProbeWorld(t, &own)
	cfg := probeConfig(t)
	writeCertPEM(t, filepath.Join(cfg.DataDir, "tls", "selfsigned.crt"), own)
	r := runProbeTest(t, pw, cfg, probePassword+"\n", probeAddress, "--password-stdin", "--json", "--resolver", pw.w.DNS.Addr)
	if r.code != exitOK {
		t.Fatalf("exit %d, want 0 (status %s)\n%s", r.code, summaryStatus(jsonReport(t, r.stdout)), r.stderr)
	}
	if pw.imap.Logins() != 1 {
		t.Errorf("IMAP logins %d, want 1", pw.imap.Logins())
	}

	// The same certificate named by [tls] cert.
	cfg2 := probeConfig(t)
	cfg2.TLS.Cert = filepath.Join(t.TempDir(), "fullchain.pem")
	writeCertPEM(t, cfg2.TLS.Cert, own)
	if r := runProbeTest(t, pw, cfg2, "", probeAddress, "--resolver", pw.w.DNS.Addr); r.code != exitOK {
		t.Fatalf("with [tls] cert: exit %d\n%s", r.code, r.stdout)
	}
	// A configured certificate that is missing is a warning, not a stop.
	cfg3 := probeConfig(t)
	cfg3.TLS.Cert = filepath.Join(t.TempDir(), "missing.pem")
	r = runProbeTest(t, pw, cfg3, "", probeAddress, "--resolver", pw.w.DNS.Addr)
	if r.code != exitFailure || !strings.Contains(r.stderr, "own certificate is not trusted") {
		t.Errorf("missing [tls] cert: exit %d, stderr %q", r.code, r.stderr)
	}
}

func writeCertPEM(t *testing.T, path string, c tls.Certificate) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	for _, der := range c.Certificate {
		if err := pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: der}); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestProbeUsage(t *testing.T) {
	cfg := probeConfig(t)
	notPEM := filepath.Join(t.TempDir(), "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		stdin string
		args  []string
		want  string
	}{
		{"", nil, "exactly one ADDRESS"},
		{"", []string{"a@example.test", "b@example.test"}, "exactly one ADDRESS"},
		{"", []string{"not-an-address"}, "invalid email address"},
		{"", []string{"a@example.test", "--nope"}, "flag provided but not defined"},
		{"", []string{"a@example.test", "--timeout", "0s"}, "positive duration"},
		{"", []string{"a@example.test", "--timeout", "soon"}, "invalid value"},
		{"", []string{"a@example.test", "--ca", "/nonexistent/ca.pem"}, "--ca"},
		{"", []string{"a@example.test", "--ca", notPEM}, "no PEM certificate"},
		{"", []string{"a@example.test", "--password-stdin"}, "no password line"},
		{"\n", []string{"a@example.test", "--password-stdin"}, "password line is empty"},
		{"", []string{"a@example.test", "--resolver", "no port"}, "--resolver"},
		{"", []string{"a@example.test", "--resolver", ":53"}, "want HOST:PORT"},
		{"", []string{"a@example.test", "--resolver", "127.0.0.1:0"}, "want 1 to 65535"},
	} {
		r := runProbeTest(t, nil, cfg, c.stdin, c.args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%q: exit %d, stderr %q; want 2 and %q", c.args, r.code, r.stderr, c.want)
		}
		if r.stdout != "" {
			t.Errorf("%q: wrote a report for bad usage: %q", c.args, r.stdout)
		}
	}
}

// TestProbeRefused: nothing listens where the autoconfig document points,
// so the probe finds no working path and exits 1 with the code.
func TestProbeRefused(t *testing.T) {
	w := probetest.NewWorld(t)
	w.Zone(t, "example.test. 300 IN MX 10 mx.example.test.\nmx.example.test. 300 IN A 127.0.0.1\nimap.example.test. 300 IN A 127.0.0.1\nsmtp.example.test. 300 IN A 127.0.0.1\n")
	w.Page(t, "https://autoconfig.example.test/mail/config-v1.1.xml", probetest.XML("text/xml", probeAutoconfig))
	pw := &probeWorld{w: w}
	w.PortMap[993], w.PortMap[465] = closedLoopbackPort(t), closedLoopbackPort(t)
	r := runProbeTest(t, pw, probeConfig(t), "", probeAddress, "--json", "--resolver", w.DNS.Addr, "--ca", w.CA.RootFile)
	m := jsonReport(t, r.stdout)
	if r.code != exitFailure || summaryStatus(m) != "broken" || !hasCode(m, "net.refused") {
		t.Errorf("exit %d status %s, want 1, broken, net.refused", r.code, summaryStatus(m))
	}
}

func closedLoopbackPort(t *testing.T) int {
	t.Helper()
	var port int
	addr := strings.TrimPrefix(testutil.FreeAddr(t), "127.0.0.1:")
	if _, err := fmt.Sscan(addr, &port); err != nil {
		t.Fatal(err)
	}
	return port
}
