package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailconf/config"
	"mailconf/mailserver/accounts"
	"mailconf/mailserver/store"
)

func userConfig(t *testing.T) *config.Config {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	cfg, err := config.Parse("test.toml", []byte(`
data_dir = "`+dir+`"
hostname = "mail.example.com"
[listen]
imaps = "127.0.0.1:2993"
submissions = "127.0.0.1:2465"
[[domain]]
name = "example.com"
`))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func user(t *testing.T, cfg *config.Config, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := runUser(context.Background(), cfg, args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

// login checks a password through the same authenticator the servers use.
func login(t *testing.T, cfg *config.Config, addr, password string) error {
	t.Helper()
	st, err := store.Open(context.Background(), cfg.DataDir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	a := accounts.NewAuthenticator(st, cfg, accounts.AuthOptions{Sleep: func(context.Context, time.Duration) error { return nil }})
	_, err = a.Authenticate(context.Background(), "imap", netip.MustParseAddr("127.0.0.1"), addr, password)
	return err
}

func TestUserLifecycle(t *testing.T) {
	cfg := userConfig(t)
	const pw = "first-Password-123"
	code, out, errs := user(t, cfg, pw+"\n", "add", "Alice@Example.com", "--password-stdin")
	if code != exitOK || !strings.Contains(out, "added alice@example.com") {
		t.Fatalf("add: %d %q %q", code, out, errs)
	}
	if err := login(t, cfg, "alice@example.com", pw); err != nil {
		t.Fatalf("login after add: %v", err)
	}
	code, _, errs = user(t, cfg, "other-password\n", "add", "--password-stdin", "alice@example.com")
	if code != exitFailure || !strings.Contains(errs, "already exists") || !strings.Contains(errs, "user passwd") {
		t.Fatalf("duplicate add: %d %q", code, errs)
	}
	// CRLF from a Windows pipe is one line ending, not part of the password.
	user(t, cfg, "bob-password-1\r\n", "add", "bob@example.com", "--password-stdin")
	if err := login(t, cfg, "bob@example.com", "bob-password-1"); err != nil {
		t.Fatalf("CRLF line: %v", err)
	}

	code, out, _ = user(t, cfg, "", "list", "--json")
	var list []userJSON
	if code != exitOK || json.Unmarshal([]byte(out), &list) != nil || len(list) != 2 ||
		list[0].Address != "alice@example.com" || list[1].Address != "bob@example.com" || list[0].Created.IsZero() {
		t.Fatalf("list --json: %d %s", code, out)
	}
	code, out, _ = user(t, cfg, "", "list")
	if code != exitOK || !strings.HasPrefix(out, "ADDRESS") || !strings.Contains(out, "bob@example.com") {
		t.Fatalf("list: %d %q", code, out)
	}

	const pw2 = "second-Password-456"
	if code, _, errs := user(t, cfg, pw2+"\n", "passwd", "alice@example.com", "--password-stdin"); code != exitOK {
		t.Fatalf("passwd: %d %q", code, errs)
	}
	if err := login(t, cfg, "alice@example.com", pw); err == nil {
		t.Fatal("old password still works")
	}
	if err := login(t, cfg, "alice@example.com", pw2); err != nil {
		t.Fatalf("new password: %v", err)
	}
	if code, _, errs := user(t, cfg, pw2+"\n", "passwd", "nobody@example.com", "--password-stdin"); code != exitFailure || !strings.Contains(errs, "no such account") {
		t.Fatalf("passwd unknown: %d %q", code, errs)
	}

	if code, out, _ := user(t, cfg, "", "del", "alice@example.com"); code != exitOK || !strings.Contains(out, "deleted") {
		t.Fatalf("del: %d %q", code, out)
	}
	if code, _, _ := user(t, cfg, "", "del", "alice@example.com"); code != exitFailure {
		t.Fatalf("del again: %d", code)
	}
	_, out, _ = user(t, cfg, "", "list", "--json")
	if json.Unmarshal([]byte(out), &list); len(list) != 1 || list[0].Address != "bob@example.com" {
		t.Fatalf("list after del: %s", out)
	}
}

func TestUserErrors(t *testing.T) {
	cfg := userConfig(t)
	const secret = "a-Secret-never-shown"
	cases := []struct {
		name  string
		stdin string
		args  []string
		code  int
		want  string
	}{
		{"no subcommand", "", nil, exitUsage, "usage"},
		{"unknown subcommand", "", []string{"rename"}, exitUsage, "unknown subcommand"},
		{"missing address", "", []string{"add", "--password-stdin"}, exitUsage, "want 1 argument"},
		{"extra argument", "", []string{"del", "a@example.com", "b@example.com"}, exitUsage, "want 1 argument"},
		{"unknown flag", "", []string{"list", "--yaml"}, exitUsage, "flag provided but not defined"},
		{"bad address", secret + "\n", []string{"add", "not-an-address", "--password-stdin"}, exitUsage, "invalid email address"},
		{"foreign domain", secret + "\n", []string{"add", "x@other.org", "--password-stdin"}, exitFailure, "[[domain]]"},
		{"not a terminal", "", []string{"add", "x@example.com"}, exitUsage, "--password-stdin"},
		{"empty stdin", "", []string{"add", "x@example.com", "--password-stdin"}, exitUsage, "no password line"},
		{"empty line", "\n", []string{"add", "x@example.com", "--password-stdin"}, exitUsage, "empty"},
		{"short password", "short\n", []string{"add", "x@example.com", "--password-stdin"}, exitFailure, "8 to 1024 bytes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errs := user(t, cfg, c.stdin, c.args...)
			if code != c.code || !strings.Contains(errs, c.want) {
				t.Fatalf("code %d stderr %q, want %d and %q", code, errs, c.code, c.want)
			}
			if strings.Contains(out+errs, secret) || c.stdin == "short\n" && strings.Contains(out+errs, "short") {
				t.Fatalf("password echoed: %q %q", out, errs)
			}
		})
	}
	// Nothing was created by the failures.
	if _, err := os.Stat(cfg.DataDir); err == nil {
		_, out, _ := user(t, cfg, "", "list", "--json")
		if strings.TrimSpace(out) != "[]" {
			t.Fatalf("accounts after failed commands: %s", out)
		}
	}
	// help goes to stdout with exit 0.
	if code, out, _ := user(t, cfg, "", "help"); code != exitOK || !strings.Contains(out, "user add") {
		t.Fatalf("help: %d %q", code, out)
	}
}
