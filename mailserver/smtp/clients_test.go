package smtp

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"mailconf/internal/testutil"
)

// Real clients from Debian packages against the real listeners. Passwords
// go through the environment or stdin, never argv.

func messageFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "msg.eml")
	if err := os.WriteFile(p, message, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func run(t *testing.T, cmd *exec.Cmd) (string, error) {
	t.Helper()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// wantOne checks that exactly one message arrived, byte for byte, with the
// given envelope.
func wantOne(t *testing.T, w *world, want []byte, from, to, authUser string) {
	t.Helper()
	msgs := w.sink.all()
	if len(msgs) != 1 {
		t.Fatalf("stored %d messages, want 1", len(msgs))
	}
	env := msgs[0].env
	if env.From != from || strings.Join(env.To, ",") != to || env.AuthUser != authUser {
		t.Errorf("envelope = %+v, want from %q to %q user %q", env, from, to, authUser)
	}
	_, body := splitReceived(t, msgs[0].data)
	if !bytes.Equal(body, want) {
		n := 0
		for n < len(body) && n < len(want) && body[n] == want[n] {
			n++
		}
		t.Errorf("stored bytes differ from offset %d: got %q, want %q", n, body[n:], want[n:])
	}
}

func TestSwaks(t *testing.T) {
	swaks := testutil.Tool(t, "swaks", "swaks")
	cases := []struct {
		name   string
		addr   func(*world) string
		args   []string
		from   string
		to     string
		user   string
		pass   string
		stored bool
	}{
		{"587 STARTTLS AUTH PLAIN", func(w *world) string { return w.subAddr },
			[]string{"--tls", "--auth", "PLAIN"}, alice, remoteRcpt, alice, alicePass, true},
		{"587 STARTTLS AUTH LOGIN", func(w *world) string { return w.subAddr },
			[]string{"--tls", "--auth", "LOGIN"}, bob, carol, bob, bobPass, true},
		{"465 implicit TLS", func(w *world) string { return w.subsAddr },
			[]string{"--tls-on-connect", "--auth", "PLAIN"}, alice, remoteRcpt, alice, alicePass, true},
		{"25 inbound", func(w *world) string { return w.mxAddr },
			nil, "sender@remote.example", alice, "", "", true},
		{"25 inbound STARTTLS", func(w *world) string { return w.mxAddr },
			[]string{"--tls"}, "sender@remote.example", bob, "", "", true},
		{"587 AUTH without TLS fails", func(w *world) string { return w.subAddr },
			[]string{"--auth", "PLAIN"}, alice, remoteRcpt, alice, alicePass, false},
		{"465 wrong password fails", func(w *world) string { return w.subsAddr },
			[]string{"--tls-on-connect", "--auth", "PLAIN"}, alice, remoteRcpt, alice, "wrong", false},
		{"25 relay attempt fails", func(w *world) string { return w.mxAddr },
			nil, "sender@remote.example", remoteRcpt, "", "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, nil)
			args := []string{"--server", tc.addr(w), "--ehlo", "client.test",
				"--from", tc.from, "--to", tc.to, "--data", messageFile(t),
				"--tls-verify", "--tls-ca-path", w.ca.RootFile, "--tls-sni", testHost, "--silent", "2"}
			args = append(args, tc.args...)
			cmd := exec.Command(swaks, args...)
			cmd.Env = os.Environ()
			if tc.user != "" {
				cmd.Args = append(cmd.Args, "--auth-user", tc.user)
				cmd.Env = append(cmd.Env, "SWAKS_OPT_auth_password="+tc.pass)
			}
			out, err := run(t, cmd)
			if !tc.stored {
				if err == nil {
					t.Fatalf("swaks succeeded:\n%s", out)
				}
				if n := len(w.sink.all()); n != 0 {
					t.Fatalf("stored %d messages", n)
				}
				return
			}
			if err != nil {
				t.Fatalf("swaks: %v\n%s", err, out)
			}
			// swaks always writes a CRLF of its own before the final dot.
			wantOne(t, w, append(append([]byte(nil), message...), "\r\n"...), tc.from, tc.to, tc.user)
		})
	}
}

func TestCurl(t *testing.T) {
	curl := testutil.Tool(t, "curl", "curl")
	for _, tc := range []struct {
		name, scheme string
		addr         func(*world) string
		extra        []string
	}{
		{"smtp STARTTLS 587", "smtp", func(w *world) string { return w.subAddr }, []string{"--ssl-reqd"}},
		{"smtps 465", "smtps", func(w *world) string { return w.subsAddr }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, nil)
			args := append([]string{"-sS", "--url", tc.scheme + "://" + tc.addr(w) + "/client.test",
				"--cacert", w.ca.RootFile, "--mail-from", alice, "--mail-rcpt", remoteRcpt,
				"--upload-file", messageFile(t), "-K", "-"}, tc.extra...)
			cmd := exec.Command(curl, args...)
			cmd.Stdin = strings.NewReader(`user = "` + alice + ":" + alicePass + `"` + "\n")
			if out, err := run(t, cmd); err != nil {
				t.Fatalf("curl: %v\n%s", err, out)
			}
			wantOne(t, w, message, alice, remoteRcpt, alice)
		})
	}
	t.Run("smtp without TLS cannot log in", func(t *testing.T) {
		w := newWorld(t, nil)
		cmd := exec.Command(curl, "-sS", "--url", "smtp://"+w.subAddr+"/client.test", "--mail-from", alice,
			"--mail-rcpt", remoteRcpt, "--upload-file", messageFile(t), "-K", "-")
		cmd.Stdin = strings.NewReader(`user = "` + alice + ":" + alicePass + `"` + "\n")
		if out, err := run(t, cmd); err == nil {
			t.Fatalf("curl succeeded without TLS:\n%s", out)
		}
		if n := len(w.sink.all()); n != 0 {
			t.Fatalf("stored %d messages", n)
		}
	})
}

const pythonClient = `
import os, smtplib, ssl, sys
ctx = ssl.create_default_context(cafile=os.environ["CA"])
host, port = os.environ["ADDR"].rsplit(":", 1)
user, password = os.environ["SMTP_USER"], os.environ["SMTP_PASS"]
msg = open(os.environ["MSG"], "rb").read()
if os.environ["MODE"] == "starttls":
    s = smtplib.SMTP(host, int(port), local_hostname="client.test", timeout=10)
    s.starttls(context=ctx)
    s.login(user, password)
else:
    s = smtplib.SMTP_SSL(host, int(port), local_hostname="client.test", context=ctx, timeout=10)
    s.ehlo()
    s.user, s.password = user, password
    s.auth("LOGIN", s.auth_login)
try:
    s.sendmail(os.environ["FROM"], [os.environ["RCPT"]], msg)
except smtplib.SMTPException as e:
    print("refused:", e)
    sys.exit(3)
s.quit()
`

func TestPythonSmtplib(t *testing.T) {
	py := testutil.Tool(t, "python3", "python3")
	for _, tc := range []struct {
		name, mode, from string
		addr             func(*world) string
		ok               bool
	}{
		{"587 STARTTLS PLAIN", "starttls", alice, func(w *world) string { return w.subAddr }, true},
		{"465 LOGIN", "tls", alice, func(w *world) string { return w.subsAddr }, true},
		{"foreign sender", "tls", bob, func(w *world) string { return w.subsAddr }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, nil)
			cmd := exec.Command(py, "-c", pythonClient)
			cmd.Env = append(os.Environ(), "CA="+w.ca.RootFile, "ADDR="+tc.addr(w), "SMTP_USER="+alice,
				"SMTP_PASS="+alicePass, "MSG="+messageFile(t), "FROM="+tc.from, "RCPT="+remoteRcpt, "MODE="+tc.mode)
			out, err := run(t, cmd)
			if !tc.ok {
				if err == nil || !strings.Contains(out, "553") {
					t.Fatalf("want a 553 refusal, got err=%v\n%s", err, out)
				}
				if n := len(w.sink.all()); n != 0 {
					t.Fatalf("stored %d", n)
				}
				return
			}
			if err != nil {
				t.Fatalf("python: %v\n%s", err, out)
			}
			wantOne(t, w, message, alice, remoteRcpt, alice)
		})
	}
}
