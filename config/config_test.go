package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const full = `data_dir = "/var/lib/mailconf"
hostname = "Mail.Example.com."

[tls]
cert = "/etc/mailconf/fullchain.pem"
key  = "/etc/mailconf/privkey.pem"

[listen]
http        = ":80"
https       = ":443"
smtp        = ":25"
submission  = ":587"
submissions = ":465"
imap        = ":143"
imaps       = ":993"
pop3        = ":110"
pop3s       = ":995"

[[domain]]
name         = "example.com"
display_name = "Example Mail"
username     = "address"
caldav       = "https://dav.example.com/caldav/"
carddav      = "https://dav.example.com/carddav/"

  [[domain.server]]
  protocol = "imap"
  host     = "imap.example.com"
  port     = 993
  security = "tls"

  [[domain.server]]
  protocol = "smtp"
  host     = "smtp.example.com"
  port     = 465
  security = "tls"

[[domain]]
name     = "bücher.example"
username = "localpart"

[dns]
resolver = "127.0.0.1:53"

[relay]
smarthost = "smtp.provider.net:587"
username  = "relay-user"
password_file = "/etc/mailconf/relay-password"

[probe]
staff_tokens_file = "/etc/mailconf/staff-tokens"

[limits]
message_size = 10485760

[dkim]
selector = "s2026"
`

func TestParseFull(t *testing.T) {
	c, err := Parse("full.toml", []byte(full))
	if err != nil {
		t.Fatal(err)
	}
	if c.Hostname != "mail.example.com" {
		t.Errorf("hostname = %q, want lower-case without trailing dot", c.Hostname)
	}
	if len(c.Domains) != 2 || c.Domains[1].Name != "xn--bcher-kva.example" {
		t.Fatalf("domains = %+v, want the IDN converted to its A-label", c.Domains)
	}
	if c.Domains[1].DisplayName != "xn--bcher-kva.example" || c.Domains[1].Username != UsernameLocalpart {
		t.Errorf("domain defaults = %+v", c.Domains[1])
	}
	if s := c.Domains[0].Servers; len(s) != 2 || s[0].Port != 993 || s[0].Security != "tls" {
		t.Errorf("servers = %+v", s)
	}
	if c.Limits.MessageSize != 10<<20 || c.DKIM.Selector != "s2026" || c.Relay.Username != "relay-user" {
		t.Errorf("limits/dkim/relay = %+v %+v %+v", c.Limits, c.DKIM, c.Relay)
	}
	if d, ok := c.Domain("EXAMPLE.com."); !ok || d.DisplayName != "Example Mail" {
		t.Errorf("Domain lookup = %+v %v", d, ok)
	}
}

func TestDefault(t *testing.T) {
	c := Default()
	if c.DataDir != "./mailconf-data" || c.Hostname != "localhost" || c.Source != DefaultName {
		t.Errorf("default = %+v", c)
	}
	want := map[string]string{"http": "127.0.0.1:8080", "smtp": "127.0.0.1:2525", "submission": "127.0.0.1:2587",
		"submissions": "127.0.0.1:2465", "imap": "127.0.0.1:2143", "imaps": "127.0.0.1:2993",
		"pop3": "127.0.0.1:2110", "pop3s": "127.0.0.1:2995", "https": ""}
	for _, s := range c.Listen.Services() {
		if want[s.Name] != s.Addr {
			t.Errorf("listen %s = %q, want %q", s.Name, s.Addr, want[s.Name])
		}
	}
	if len(c.Domains) != 1 || c.Domains[0].Name != "example.test" {
		t.Errorf("domains = %+v", c.Domains)
	}
	if !c.TLS.SelfSigned() || c.Limits.MessageSize != DefaultMessageSize || c.DKIM.Selector != "mailconf" {
		t.Errorf("tls/limits/dkim defaults wrong: %+v %+v %+v", c.TLS, c.Limits, c.DKIM)
	}
}

func TestErrorsNameFileAndLine(t *testing.T) {
	base := "data_dir = \"/d\"\nhostname = \"mail.example.com\"\n[listen]\nimaps = \":993\"\nsubmissions = \":465\"\n[[domain]]\nname = \"example.com\"\n"
	cases := []struct {
		name, src, want string
	}{
		{"unknown key", "data_dir = \"/d\"\nhostname = \"m.example.com\"\n[listen]\nlisen = \":80\"\n", `bad.toml:4: unknown key "lisen" in [listen]`},
		{"unknown top key", base + "[relay]\nsmarthst = \"x:1\"\n", `bad.toml:9: unknown key "smarthst" in [relay]`},
		{"unknown table", base + "[nope]\nx = 1\n", `bad.toml:8: unknown table [nope]`},
		{"wrong type", "data_dir = 5\n", `bad.toml:1: key "data_dir": wrong type`},
		{"syntax", "data_dir = \"x\nhostname = 1\n", `bad.toml:1:`},
		{"bad port", base + "  [[domain.server]]\n  protocol = \"imap\"\n  host = \"imap.example.com\"\n  port = 99999\n  security = \"tls\"\n", `bad.toml:11: port = 99999`},
		{"bad security", base + "  [[domain.server]]\n  protocol = \"imap\"\n  host = \"imap.example.com\"\n  port = 143\n  security = \"none\"\n", `bad.toml:12: security = "none"`},
		{"bad protocol", base + "  [[domain.server]]\n  protocol = \"jmap\"\n  host = \"x.example.com\"\n  port = 1\n  security = \"tls\"\n", `bad.toml:9: protocol = "jmap"`},
		{"second domain line", base + "[[domain]]\nname = \"a.example\"\nusername = \"uid\"\n", `bad.toml:10: username = "uid"`},
		{"duplicate domain", base + "[[domain]]\nname = \"Example.com\"\n", `bad.toml:9: domain "example.com" is listed twice`},
		{"bad hostname", "data_dir = \"/d\"\nhostname = \"bad host\"\n[listen]\nhttp = \":80\"\n[[domain]]\nname = \"example.com\"\n", `bad.toml:2: hostname "bad host"`},
		{"bad listen", "data_dir = \"/d\"\nhostname = \"m.example.com\"\n[listen]\nhttp = \"80\"\n[[domain]]\nname = \"example.com\"\n", `bad.toml:4: listen http = "80"`},
		{"listen twice", "data_dir = \"/d\"\nhostname = \"m.example.com\"\n[listen]\nhttp = \":80\"\nimap = \":80\"\n[[domain]]\nname = \"example.com\"\n", `bad.toml:5: listen imap = ":80" is already used by http`},
		{"no listener", "data_dir = \"/d\"\nhostname = \"m.example.com\"\n[[domain]]\nname = \"example.com\"\n", `enables no service`},
		{"no domain", "data_dir = \"/d\"\nhostname = \"m.example.com\"\n[listen]\nhttp = \":80\"\n", `no [[domain]]`},
		{"cert without key", base + "[tls]\ncert = \"/c.pem\"\n", `bad.toml:8: [tls] needs both cert and key`},
		{"caldav not https", base + "caldav = \"http://dav.example.com/\"\n", `bad.toml:8: caldav = "http://dav.example.com/"`},
		{"resolver", base + "[dns]\nresolver = \"127.0.0.1\"\n", `bad.toml:9: [dns] resolver = "127.0.0.1"`},
		{"relay user without password", base + "[relay]\nsmarthost = \"s.example:587\"\nusername = \"u\"\n", `[relay] needs both username and password_file`},
		{"message size", base + "[limits]\nmessage_size = 5\n", `bad.toml:9: [limits] message_size = 5`},
		{"nothing to publish", "data_dir = \"/d\"\nhostname = \"m.example.com\"\n[listen]\nhttp = \":80\"\n[[domain]]\nname = \"example.com\"\n", `bad.toml:5: domain "example.com" is served by the built-in server, which listens for no mail access`},
		{"servers without smtp", base + "  [[domain.server]]\n  protocol = \"imap\"\n  host = \"imap.example.com\"\n  port = 993\n  security = \"tls\"\n", `bad.toml:6: domain "example.com": [[domain.server]] needs at least one imap or pop3 server and one smtp server`},
		{"single-label domain", "data_dir = \"/d\"\nhostname = \"m.example.com\"\n[listen]\nhttp = \":80\"\n[[domain]]\nname = \"localhost\"\n", `bad.toml:6: domain name "localhost" needs at least two labels`},
		{"empty data_dir", "data_dir = \"\"\nhostname = \"m.example.com\"\n[listen]\nhttp = \":80\"\n[[domain]]\nname = \"example.com\"\n", `bad.toml:1: data_dir is empty`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("bad.toml", []byte(tc.src))
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "config: ") || !strings.Contains(msg, tc.want) {
				t.Errorf("error = %q, want it to contain %q", msg, tc.want)
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("error spans lines: %q", msg)
			}
		})
	}
}

func TestLoadAndResolve(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	t.Setenv(EnvVar, "")
	if got := Resolve(""); got != "" {
		t.Errorf("Resolve with nothing = %q, want embedded default", got)
	}
	if err := os.WriteFile("mailconf.toml", []byte(DefaultTOML()), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := Resolve(""); got != "mailconf.toml" {
		t.Errorf("Resolve = %q, want ./mailconf.toml", got)
	}
	t.Setenv(EnvVar, "/from/env.toml")
	if got := Resolve(""); got != "/from/env.toml" {
		t.Errorf("Resolve = %q, want $MAILCONF_CONFIG", got)
	}
	if got := Resolve("flag.toml"); got != "flag.toml" {
		t.Errorf("Resolve = %q, want the flag", got)
	}
	c, err := Load(filepath.Join(dir, "mailconf.toml"))
	if err != nil || c.Source != filepath.Join(dir, "mailconf.toml") {
		t.Fatalf("Load = %+v, %v", c, err)
	}
	if _, err := Load(filepath.Join(dir, "missing.toml")); err == nil || !strings.HasPrefix(err.Error(), "config: ") {
		t.Errorf("missing file error = %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(full)
	f.Add(DefaultTOML())
	f.Add("[[domain]]\n[[domain.server]]\nport = -1\n")
	f.Fuzz(func(t *testing.T, src string) {
		c, err := Parse("fuzz.toml", []byte(src))
		if err == nil && (len(c.Domains) == 0 || c.DataDir == "") {
			t.Fatalf("accepted an incomplete config: %+v", c)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Fatalf("multi-line error: %q", err)
		}
	})
}

// FuzzHostName: every accepted name is canonical, and canonical names map
// to themselves.
func FuzzHostName(f *testing.F) {
	for _, s := range []string{"example.com", "Mail.Example.COM.", "bücher.example", "xn--bcher-kva.example", "\x81", "a..b", "-a.b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, err := HostName(s)
		if err != nil {
			return
		}
		again, err := HostName(h)
		if err != nil || again != h {
			t.Fatalf("HostName(%q) = %q, which maps to %q, %v", s, h, again, err)
		}
	})
}
