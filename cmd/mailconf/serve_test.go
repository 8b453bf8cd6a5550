package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"mailconf/internal/testutil"
)

// binary is the mailconf command built once for the process tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mailconf-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "mailconf")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build mailconf: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// daemon is a running `mailconf serve`.
type daemon struct {
	cmd    *exec.Cmd
	stdout *testutil.SyncBuffer
	stderr *testutil.SyncBuffer
	exited chan struct{} // closed when the process has ended
	err    error         // its exit status, once exited is closed
}

// wait blocks until the process has ended and returns its exit status.
func (d *daemon) wait() error {
	<-d.exited
	return d.err
}

func startDaemon(t *testing.T, dir string, args ...string) *daemon {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"serve"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "MAILCONF_CONFIG=")
	d := &daemon{cmd: cmd, stdout: &testutil.SyncBuffer{}, stderr: &testutil.SyncBuffer{}, exited: make(chan struct{})}
	pr, pw := io.Pipe()
	cmd.Stdout = io.MultiWriter(pw)
	cmd.Stderr = d.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		d.err = cmd.Wait()
		close(d.exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-d.exited
	})
	// The welcome text ends with the probe URL line once everything listens.
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		closed := false
		for sc.Scan() {
			d.stdout.Write([]byte(sc.Text() + "\n"))
			if !closed && strings.Contains(sc.Text(), "probe ") {
				close(ready)
				closed = true
			}
		}
	}()
	select {
	case <-ready:
	case <-d.exited:
		t.Fatalf("mailconf serve exited at start (%v):\nstdout:\n%s\nstderr:\n%s", d.err, d.stdout, d.stderr)
	case <-time.After(20 * time.Second):
		t.Fatalf("mailconf serve did not start:\nstdout:\n%s\nstderr:\n%s", d.stdout, d.stderr)
	}
	return d
}

func (d *daemon) stop(t *testing.T) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.exited:
		if err := d.err; err != nil {
			t.Fatalf("serve exited with %v after SIGTERM; stderr:\n%s", err, d.stderr)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not stop within 15 s of SIGTERM")
	}
	if !regexp.MustCompile(`msg"?[=:]"?stopped`).MatchString(d.stderr.String()) {
		t.Errorf("no clean stop logged:\n%s", d.stderr)
	}
}

func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestServeWithConfigReloadAndStop(t *testing.T) {
	dir := t.TempDir()
	ca := testutil.NewCA(t)
	certFile, keyFile := installCert(t, ca, dir, "mail.example.com", "127.0.0.1")
	httpAddr, httpsAddr := testutil.FreeAddr(t), testutil.FreeAddr(t)
	imapsAddr, submissionsAddr := testutil.FreeAddr(t), testutil.FreeAddr(t)
	cfgFile := filepath.Join(dir, "mailconf.toml")
	writeFile(t, cfgFile, fmt.Sprintf(`data_dir = %q
hostname = "mail.example.com"
[tls]
cert = %q
key = %q
[listen]
http = %q
https = %q
imaps = %q
submissions = %q
[[domain]]
name = "example.com"
`, filepath.Join(dir, "data"), certFile, keyFile, httpAddr, httpsAddr, imapsAddr, submissionsAddr))

	d := startDaemon(t, dir, "--config", cfgFile, "--log-format", "json")
	client := &http.Client{Timeout: 5 * time.Second}
	if code, body := get(t, client, "http://"+httpAddr+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("healthz = %d %q", code, body)
	}
	get(t, client, "http://"+httpAddr+"/api/v1/settings?emailaddress=a@example.com")
	if code, body := get(t, client, "http://"+httpAddr+"/metrics"); code != 200 ||
		!strings.Contains(body, `mailconf_autoconfig_requests_total{format="settings",status="200"} 1`) {
		t.Errorf("metrics = %d, missing the settings request counter:\n%.2000s", code, body)
	}
	if code, _ := get(t, client, "http://"+httpAddr+"/no/such/path"); code != 404 {
		t.Errorf("unknown path = %d, want 404", code)
	}

	tlsClient := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ca.Pool, ServerName: "mail.example.com"}}}
	if code, _ := get(t, tlsClient, "https://"+httpsAddr+"/healthz"); code != 200 {
		t.Errorf("https healthz = %d", code)
	}
	checkRoutes(t, httpAddr, httpsAddr, tlsClient)
	first := servedSerial(t, httpsAddr, ca)

	// SIGHUP picks up a renewed certificate without a restart.
	installCert(t, ca, dir, "mail.example.com")
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for servedSerial(t, httpsAddr, ca) == first || !strings.Contains(d.stderr.String(), `"msg":"certificate reloaded"`) {
		if time.Now().After(deadline) {
			t.Fatalf("certificate not reloaded after SIGHUP; stderr:\n%s", d.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	d.stop(t)
}

// checkRoutes asserts that serve wires every format: each answers on its
// path with its content type, the profile is signed with the configured
// certificate, and plain-HTTP Autodiscover is redirected to https.
func checkRoutes(t *testing.T, httpAddr, httpsAddr string, tlsClient *http.Client) {
	t.Helper()
	base := "https://" + httpsAddr
	for _, tc := range []struct{ path, ctype string }{
		{"/mail/config-v1.1.xml?emailaddress=a@example.com", "text/xml; charset=utf-8"},
		{"/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=a@example.com", "text/xml; charset=utf-8"},
		{"/setup?emailaddress=a@example.com", "text/html; charset=utf-8"},
		{"/", "text/html; charset=utf-8"},
		{"/api/v1/settings?emailaddress=a@example.com", "application/json"},
		{"/autodiscover/autodiscover.json?Email=a@example.com&Protocol=AutodiscoverV1", "application/json"},
		{"/profile.mobileconfig?emailaddress=a@example.com", "application/x-apple-aspen-config"},
		{"/probe", "text/html; charset=utf-8"},
	} {
		resp, err := tlsClient.Get(base + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(strings.ToLower(resp.Header.Get("Content-Type")), tc.ctype) {
			t.Errorf("GET %s = %d %q, want 200 %q", tc.path, resp.StatusCode, resp.Header.Get("Content-Type"), tc.ctype)
		}
		if strings.HasPrefix(tc.path, "/profile") && (len(body) == 0 || body[0] != 0x30) {
			t.Errorf("profile is not DER CMS although [tls] cert is set: %.40q", body)
		}
	}
	req := `<?xml version="1.0" encoding="utf-8"?><Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"><Request><EMailAddress>a@example.com</EMailAddress><AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema></Request></Autodiscover>`
	resp, err := tlsClient.Post(base+"/AutoDiscover/AutoDiscover.xml", "text/xml", strings.NewReader(req))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "<Server>mail.example.com</Server>") {
		t.Errorf("POST autodiscover over https = %d\n%s", resp.StatusCode, body)
	}
	noRedirect := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	r, err := http.NewRequest("POST", "http://"+httpAddr+"/autodiscover/autodiscover.xml", strings.NewReader(req))
	if err != nil {
		t.Fatal(err)
	}
	r.Host = "autodiscover.example.com"
	resp, err = noRedirect.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	_, port, _ := strings.Cut(httpsAddr, ":")
	if want := "https://autodiscover.example.com:" + port + "/autodiscover/autodiscover.xml"; resp.StatusCode != 302 || resp.Header.Get("Location") != want {
		t.Errorf("plain-HTTP autodiscover = %d Location %q, want 302 to %s", resp.StatusCode, resp.Header.Get("Location"), want)
	}
}

func servedSerial(t *testing.T, addr string, ca *testutil.CA) string {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.Pool, ServerName: "mail.example.com"})
	if err != nil {
		t.Fatalf("tls dial: %v", err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

func TestServeEmbeddedDefault(t *testing.T) {
	dir := t.TempDir()
	d := startDaemon(t, dir)
	out := d.stdout.String()
	for _, want := range []string{"http://127.0.0.1:8080/setup?emailaddress=demo@example.test", "self-signed"} {
		if !strings.Contains(out, want) {
			t.Errorf("welcome text lacks %q:\n%s", want, out)
		}
	}
	crt := filepath.Join(dir, "mailconf-data", "tls", "selfsigned.crt")
	st1, err := os.Stat(crt)
	if err != nil {
		t.Fatalf("self-signed certificate not generated into the data directory: %v", err)
	}
	code, body := get(t, &http.Client{Timeout: 5 * time.Second}, "http://127.0.0.1:8080/api/v1/settings?emailaddress=demo@example.test")
	if code != 200 || !strings.Contains(body, `"host":"localhost","port":2993,"security":"tls"`) {
		t.Errorf("settings = %d %s", code, body)
	}
	d.stop(t)

	// A second start reuses the certificate instead of minting a new one.
	d = startDaemon(t, dir)
	st2, err := os.Stat(crt)
	if err != nil || !st2.ModTime().Equal(st1.ModTime()) {
		t.Errorf("certificate regenerated on restart")
	}
	d.stop(t)
}

func TestCommandLine(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir) // the embedded default writes ./mailconf-data
	bad := filepath.Join(dir, "bad.toml")
	writeFile(t, bad, "data_dir = \"/d\"\nhostname = \"m.example.com\"\n[listen]\nlisen = \":80\"\n")
	cases := []struct {
		args       []string
		code       int
		out, errIn string
	}{
		{[]string{"version"}, 0, "mailconf ", ""},
		{nil, 2, "", "usage:"},
		{[]string{"frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{[]string{"check-config"}, 0, "(embedded default): ok", ""},
		{[]string{"check-config", "--config", bad}, 2, "", "bad.toml:4: unknown key \"lisen\" in [listen]"},
		{[]string{"check-config", "--config=" + bad}, 2, "", "unknown key"},
		{[]string{"check-config", "--config", filepath.Join(dir, "missing.toml")}, 2, "", "no such file"},
		{[]string{"check-config", "--config"}, 2, "", "--config needs a file name"},
		{[]string{"serve", "--log-format", "xml"}, 2, "", "want text or json"},
		{[]string{"dns"}, 0, "_imaps._tcp.example.test.", ""},
		{[]string{"dns"}, 0, `mailconf._domainkey.example.test. 3600 IN TXT "v=DKIM1; k=rsa; p=`, ""},
		{[]string{"dns", "nope.example"}, 2, "", "nope.example"},
		{[]string{"probe"}, 2, "", ""},
		{[]string{"queue", "list"}, 0, "", ""},
	}
	for _, tc := range cases {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), tc.args, strings.NewReader(""), &stdout, &stderr)
		if code != tc.code || !strings.Contains(stdout.String(), tc.out) || !strings.Contains(stderr.String(), tc.errIn) {
			t.Errorf("mailconf %v = %d\nstdout: %s\nstderr: %s\nwant %d, stdout with %q, stderr with %q",
				tc.args, code, stdout.String(), stderr.String(), tc.code, tc.out, tc.errIn)
		}
		if strings.Contains(stderr.String(), "goroutine ") {
			t.Errorf("stack trace printed for %v", tc.args)
		}
	}
	t.Setenv("MAILCONF_CONFIG", bad)
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"check-config"}, nil, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "bad.toml") {
		t.Errorf("$MAILCONF_CONFIG not used: %d %s", code, stderr.String())
	}
}

// installCert issues a certificate from ca for names as dir/cert.pem and
// dir/key.pem, the files [tls] names; installing again over them is a
// renewal.
func installCert(t *testing.T, ca *testutil.CA, dir string, names ...string) (certFile, keyFile string) {
	t.Helper()
	leaf := ca.Issue(t, names, time.Time{}, time.Time{})
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for from, to := range map[string]string{leaf.CertFile: certFile, leaf.KeyFile: keyFile} {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, to, string(b))
	}
	return certFile, keyFile
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
