package certs

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"mailconf/config"
	"mailconf/internal/testutil"
)

func testConfig(t *testing.T, dir, domain, tlsPart string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("t.toml", []byte(`data_dir = "`+dir+`"
hostname = "mail.example.test"
`+tlsPart+`
[listen]
imaps = "127.0.0.1:993"
submissions = "127.0.0.1:465"
[[domain]]
name = "`+domain+`"
`))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestSelfSignedOnceAndRenewedForNewNames(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir, "example.test", "")
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !m.SelfSigned() || m.CertFile() != File(cfg) || File(cfg) != filepath.Join(dir, "tls", "selfsigned.crt") {
		t.Fatalf("cert file %q, File %q", m.CertFile(), File(cfg))
	}
	leaf := m.Current().Leaf
	for _, n := range []string{"mail.example.test", "localhost", "example.test", "autoconfig.example.test", "autodiscover.example.test", "127.0.0.1"} {
		if err := leaf.VerifyHostname(n); err != nil {
			t.Errorf("self-signed certificate does not cover %s: %v", n, err)
		}
	}
	if st, _ := os.Stat(filepath.Join(dir, "tls", "selfsigned.key")); st == nil || st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode: %v", st)
	}
	// The client side trusts it through Pool.
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: m.Pool(nil), DNSName: "mail.example.test"}); err != nil {
		t.Errorf("Pool does not verify the certificate: %v", err)
	}

	again, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if again.Current().Leaf.SerialNumber.Cmp(leaf.SerialNumber) != 0 {
		t.Error("a second start minted a new certificate")
	}

	other, err := New(testConfig(t, dir, "other.test", ""))
	if err != nil {
		t.Fatal(err)
	}
	if other.Current().Leaf.SerialNumber.Cmp(leaf.SerialNumber) == 0 || other.Current().Leaf.VerifyHostname("autoconfig.other.test") != nil {
		t.Error("a new domain did not get a certificate covering it")
	}
}

func TestConfiguredCertificateAndReload(t *testing.T) {
	ca := testutil.NewCA(t)
	leaf := ca.Issue(t, []string{"mail.example.test"}, time.Time{}, time.Time{})
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	copyFile(t, leaf.CertFile, certFile)
	copyFile(t, leaf.KeyFile, keyFile)
	cfg := testConfig(t, dir, "example.test", "[tls]\ncert = \""+certFile+"\"\nkey = \""+keyFile+"\"\n")
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if m.SelfSigned() || File(cfg) != certFile || len(m.Current().Certificate) != 2 {
		t.Fatalf("configured certificate not used with its chain: %q %d", File(cfg), len(m.Current().Certificate))
	}
	first := m.Current().Leaf.SerialNumber

	// A broken file on reload keeps the old certificate.
	if err := os.WriteFile(certFile, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := m.Reload(); err == nil {
		t.Error("Reload accepted a broken file")
	}
	if m.Current().Leaf.SerialNumber.Cmp(first) != 0 {
		t.Error("a failed reload replaced the certificate")
	}
	renewed := ca.Issue(t, []string{"mail.example.test"}, time.Time{}, time.Time{})
	copyFile(t, renewed.CertFile, certFile)
	copyFile(t, renewed.KeyFile, keyFile)
	if err := m.Reload(); err != nil {
		t.Fatal(err)
	}
	if c, _ := m.GetCertificate(nil); c.Leaf.SerialNumber.Cmp(first) == 0 {
		t.Error("Reload did not pick up the renewed certificate")
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestClientTrust: a client trusts the service's own certificate once it
// exists; a self-signed one not generated yet is no error, a configured
// one that is missing or an unusable --ca file is.
func TestClientTrust(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir, "example.test", "")
	pool := SystemPool()
	if err := TrustOwn(pool, cfg); err != nil {
		t.Errorf("before serve ran: %v", err)
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	if err := TrustOwn(pool, cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Current().Leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "autoconfig.example.test"}); err != nil {
		t.Errorf("own self-signed certificate not trusted: %v", err)
	}

	missing := testConfig(t, dir, "example.test", "[tls]\ncert = \""+filepath.Join(dir, "gone.pem")+"\"\nkey = \""+filepath.Join(dir, "gone.key")+"\"\n")
	if err := TrustOwn(x509.NewCertPool(), missing); err == nil {
		t.Error("a missing configured certificate was no error")
	}

	ca := testutil.NewCA(t)
	if err := AppendFiles(pool, []string{ca.RootFile}); err != nil {
		t.Errorf("--ca root: %v", err)
	}
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{notPEM, filepath.Join(dir, "nonexistent.pem")} {
		if err := AppendFiles(pool, []string{f}); err == nil {
			t.Errorf("AppendFiles(%s) accepted it", f)
		}
	}
}
