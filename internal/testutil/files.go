package testutil

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Golden compares got with testdata/name, or rewrites that file when update
// is set (each package's -update flag).
func Golden(t testing.TB, name string, got []byte, update bool) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if update {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("golden %s: %v (go test -update writes it)", p, err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", p, got, want)
	}
}

// XMLLint fails the test unless xmllint finds body well-formed (no network
// access for DTDs).
func XMLLint(t testing.TB, body []byte) {
	t.Helper()
	bin := Tool(t, "xmllint", "libxml2-utils")
	p := filepath.Join(t.TempDir(), "doc.xml")
	if err := os.WriteFile(p, body, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "--noout", "--nonet", p).CombinedOutput(); err != nil {
		t.Fatalf("xmllint: %v\n%s\n%s", err, out, body)
	}
}
