package dkim

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	msgdkim "github.com/emersion/go-msgauth/dkim"

	"mailconf/config"
)

func testConfig(t *testing.T) *config.Config {
	t.Helper()
	dir := t.TempDir()
	cfg, err := config.Parse("test.toml", []byte(fmt.Sprintf(`
data_dir = %q
hostname = "mail.example.test"
[listen]
smtp = "127.0.0.1:2525"
submission = "127.0.0.1:2587"
imaps = "127.0.0.1:2993"
[[domain]]
name = "example.test"
[[domain]]
name = "other.test"
[dkim]
selector = "sel1"
`, dir)))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

const message = "Received: from x by y; Mon, 1 Jan 2024 00:00:00 +0000\r\n" +
	"From: Alice <alice@example.test>\r\n" +
	"To: bob@remote.test\r\n" +
	"Subject: hello\r\n" +
	"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n" +
	"Message-ID: <1@example.test>\r\n" +
	"\r\n" +
	"Body line one\r\n" +
	".leading dot\r\n"

func lookupFrom(t *testing.T, cfg *config.Config) func(string) ([]string, error) {
	recs, err := TXTRecords(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return func(name string) ([]string, error) {
		for d, v := range recs {
			if name == "sel1._domainkey."+d {
				return []string{v}, nil
			}
		}
		return nil, fmt.Errorf("no TXT for %s", name)
	}
}

func TestSignVerify(t *testing.T) {
	cfg := testConfig(t)
	keys, err := Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := keys.Sign(context.Background(), "EXAMPLE.test", []byte(message))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(signed, []byte(message)) || !bytes.HasPrefix(signed, []byte("DKIM-Signature:")) {
		t.Fatalf("signed message is not signature + original:\n%s", signed)
	}
	sig := string(signed[:len(signed)-len(message)])
	for _, want := range []string{"d=example.test", "s=sel1", "c=relaxed/relaxed", "a=rsa-sha256"} {
		if !strings.Contains(strings.Join(strings.Fields(sig), ""), strings.ReplaceAll(want, " ", "")) {
			t.Errorf("signature lacks %q: %s", want, sig)
		}
	}
	opts := &msgdkim.VerifyOptions{LookupTXT: lookupFrom(t, cfg)}
	vs, err := msgdkim.VerifyWithOptions(bytes.NewReader(signed), opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 1 || vs[0].Err != nil || vs[0].Domain != "example.test" {
		t.Fatalf("verification: %+v", vs[0])
	}

	// Tampering: a changed body and an added From both break it.
	for name, bad := range map[string][]byte{
		"body":       bytes.Replace(signed, []byte("Body line one"), []byte("Body line 0ne"), 1),
		"extra From": append([]byte("From: mallory@evil.test\r\n"), signed...),
		"subject":    bytes.Replace(signed, []byte("Subject: hello"), []byte("Subject: hullo"), 1),
	} {
		vs, err := msgdkim.VerifyWithOptions(bytes.NewReader(bad), opts)
		if err != nil {
			t.Fatal(err)
		}
		if len(vs) != 1 || vs[0].Err == nil {
			t.Errorf("%s: tampered message still verifies", name)
		}
	}
	// Relaxed canonicalization survives whitespace changes in transit.
	relaxed := bytes.Replace(signed, []byte("Subject: hello"), []byte("Subject:   hello"), 1)
	vs, err = msgdkim.VerifyWithOptions(bytes.NewReader(relaxed), opts)
	if err != nil || vs[0].Err != nil {
		t.Fatalf("relaxed header whitespace: %v %v", err, vs[0].Err)
	}

	if _, err := keys.Sign(context.Background(), "unknown.test", []byte(message)); err == nil {
		t.Error("signing for an unserved domain succeeded")
	}
}

func TestKeysPersistAndFileMode(t *testing.T) {
	cfg := testConfig(t)
	a, err := TXTRecords(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != 2 || !strings.HasPrefix(a["example.test"], "v=DKIM1; k=rsa; p=") {
		t.Fatalf("records: %v", a)
	}
	if a["example.test"] == a["other.test"] {
		t.Error("two domains share a key")
	}
	b, err := TXTRecords(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if a["example.test"] != b["example.test"] {
		t.Error("key changed between loads")
	}
	for _, d := range []string{"example.test", "other.test"} {
		fi, err := os.Stat(filepath.Join(Dir(cfg), d+".key"))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s key mode %v, want 0600", d, fi.Mode().Perm())
		}
	}
	left, _ := filepath.Glob(filepath.Join(Dir(cfg), ".*"))
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestBrokenKeyFile(t *testing.T) {
	cfg := testConfig(t)
	if err := os.MkdirAll(Dir(cfg), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(Dir(cfg), "example.test.key"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(cfg); err == nil || !strings.Contains(err.Error(), "example.test.key") {
		t.Fatalf("broken key file: err = %v", err)
	}
}
