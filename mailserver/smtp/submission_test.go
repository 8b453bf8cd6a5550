package smtp

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"strings"
	"testing"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"
)

func TestSubmission587NetSMTP(t *testing.T) {
	w := newWorld(t, nil)
	conn, err := net.Dial("tcp", w.subAddr)
	if err != nil {
		t.Fatal(err)
	}
	// The client's idea of the host name decides PlainAuth's TLS check.
	c, err := smtp.NewClient(conn, testHost)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.Extension("AUTH"); ok {
		t.Error("AUTH offered before TLS")
	}
	if ok, _ := c.Extension("STARTTLS"); !ok {
		t.Fatal("no STARTTLS on 587")
	}
	if err := c.StartTLS(w.clientTLS); err != nil {
		t.Fatal(err)
	}
	ok, mechs := c.Extension("AUTH")
	if !ok || mechs != "PLAIN LOGIN" {
		t.Errorf("AUTH after TLS = %v %q, want PLAIN LOGIN", ok, mechs)
	}
	if err := c.Auth(smtp.PlainAuth("", "Alice@Example.com", alicePass, testHost)); err != nil {
		t.Fatalf("AUTH PLAIN: %v", err)
	}
	if err := c.Mail("alice@EXAMPLE.com"); err != nil {
		t.Fatalf("own address, other case: %v", err)
	}
	for _, r := range []string{remoteRcpt, bob} {
		if err := c.Rcpt(r); err != nil {
			t.Fatalf("RCPT %s: %v", r, err)
		}
	}
	wc, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	wc.Write(message)
	if err := wc.Close(); err != nil {
		t.Fatal(err)
	}
	c.Quit()

	msgs := w.sink.all()
	if len(msgs) != 1 {
		t.Fatalf("stored %d messages", len(msgs))
	}
	env := msgs[0].env
	if !env.Submission || env.AuthUser != alice || env.From != "alice@example.com" || strings.Join(env.To, ",") != remoteRcpt+","+bob || !env.TLS {
		t.Errorf("envelope = %+v", env)
	}
	hdr, body := splitReceived(t, msgs[0].data)
	if !bytes.Equal(body, message) {
		t.Error("stored bytes differ")
	}
	m := receivedRE.FindStringSubmatch(hdr)
	if m == nil || m[2] != "UTF8SMTPSA" || m[4] == "" {
		t.Errorf("Received header:\n%s", hdr)
	}
	if strings.Contains(hdr, alice) || strings.Contains(hdr, "PLAIN") {
		t.Errorf("Received header tells the login:\n%s", hdr)
	}
	calls := strings.Join(w.auth.calls, ";")
	if calls != "smtp/127.0.0.1/Alice@Example.com" {
		t.Errorf("authenticator calls = %q", calls)
	}
}

func TestSubmission465GoSMTPLogin(t *testing.T) {
	w := newWorld(t, nil)
	c, err := gosmtp.DialTLS(w.subsAddr, w.clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		t.Error("STARTTLS offered under implicit TLS")
	}
	if err := c.Auth(sasl.NewLoginClient(bob, bobPass)); err != nil {
		t.Fatalf("AUTH LOGIN: %v", err)
	}
	if err := c.SendMail(bob, []string{remoteRcpt}, bytes.NewReader(message)); err != nil {
		t.Fatal(err)
	}
	// A second message in the same session.
	if err := c.SendMail(bob, []string{carol}, bytes.NewReader(message)); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	msgs := w.sink.all()
	if len(msgs) != 2 || msgs[0].env.AuthUser != bob || msgs[1].env.To[0] != carol {
		t.Fatalf("stored %+v", msgs)
	}
	hdr, _ := splitReceived(t, msgs[0].data)
	if m := receivedRE.FindStringSubmatch(hdr); m == nil || m[2] != "ESMTPSA" || m[5] != remoteRcpt {
		t.Errorf("Received header:\n%s", hdr)
	}
}

func smtpCode(t *testing.T, err error) string {
	t.Helper()
	var se *gosmtp.SMTPError
	if !errors.As(err, &se) {
		t.Fatalf("want an SMTP error reply, got %v", err)
	}
	return fmt.Sprintf("%d %d.%d.%d", se.Code, se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
}

func TestSubmissionRules(t *testing.T) {
	w := newWorld(t, nil)

	t.Run("plaintext 587: no AUTH, MAIL refused", func(t *testing.T) {
		c := dialRaw(t, w.subAddr, false, nil)
		ehlo := c.cmd("EHLO client.test", 250)
		if strings.Contains(ehlo, "AUTH") || !strings.Contains(ehlo, "STARTTLS") {
			t.Errorf("EHLO before TLS:\n%s", ehlo)
		}
		c.send("AUTH PLAIN " + plainIR("", alice, alicePass) + "\r\n")
		if r := c.reply(); !strings.HasPrefix(r, "523 5.7.10") {
			t.Errorf("AUTH before TLS = %q", r)
		}
		c.send("AUTH LOGIN\r\n")
		if r := c.reply(); !strings.HasPrefix(r, "523 5.7.10") {
			t.Errorf("AUTH LOGIN before TLS = %q", r)
		}
		c.send("MAIL FROM:<alice@example.com>\r\n")
		if r := c.reply(); !strings.HasPrefix(r, "530 5.7.0") {
			t.Errorf("MAIL before TLS = %q", r)
		}
		if len(w.auth.calls) != 0 {
			t.Errorf("authenticator called before TLS: %v", w.auth.calls)
		}
	})

	t.Run("TLS without AUTH: MAIL refused, relay patterns never reach RCPT", func(t *testing.T) {
		c := dialRaw(t, w.subsAddr, true, w.clientTLS)
		ehlo := c.cmd("EHLO client.test", 250)
		if !strings.Contains(ehlo, "AUTH PLAIN LOGIN") {
			t.Errorf("EHLO on 465:\n%s", ehlo)
		}
		for _, from := range []string{"<alice@example.com>", "<>", "<someone@remote.example>"} {
			c.send("MAIL FROM:" + from + "\r\n")
			if r := c.reply(); !strings.HasPrefix(r, "530 5.7.0") {
				t.Errorf("MAIL FROM:%s without AUTH = %q", from, r)
			}
		}
		for _, rcpt := range []string{"<someone@remote.example>", "<alice%remote.example@example.com>", "<@example.com:someone@remote.example>"} {
			c.send("RCPT TO:" + rcpt + "\r\n")
			if r := c.reply(); !strings.HasPrefix(r, "5") {
				t.Errorf("RCPT TO:%s without AUTH = %q", rcpt, r)
			}
		}
		c.send("DATA\r\n")
		if r := c.reply(); !strings.HasPrefix(r, "5") {
			t.Errorf("DATA without AUTH = %q", r)
		}
	})

	t.Run("sender must be the login", func(t *testing.T) {
		c := w.loggedIn587(t, alice, alicePass)
		for _, tc := range []struct{ from, reply string }{
			{"<bob@example.com>", "553 5.7.1"},
			{"<alice@example.org>", "553 5.7.1"},
			{"<alice@example.com.evil>", "553 5.7.1"},
			{"<>", "553 5.7.1"},
			{"<alice@[127.0.0.1]>", "553 5.7.1"},
			{"<alice@example.com.>", "553 5.7.1"},
			{"<ALICE@Example.COM>", "250"},
		} {
			c.send("MAIL FROM:" + tc.from + "\r\n")
			if r := c.reply(); !strings.HasPrefix(r, tc.reply) {
				t.Errorf("MAIL FROM:%s = %q, want %s", tc.from, r, tc.reply)
			}
		}
		for _, tc := range []struct{ rcpt, reply string }{
			{"<someone@remote.example>", "250"},
			{"<nobody@example.com>", "550 5.1.1"},
			{"<alice%remote.example@example.com>", "553 5.1.3"},
			{`<"a b"@remote.example>`, "553 5.1.3"},
			{"<x@[10.0.0.1]>", "553 5.1.3"},
			{"<x@remote.example.>", "553 5.1.3"},
		} {
			c.send("RCPT TO:" + tc.rcpt + "\r\n")
			if r := c.reply(); !strings.HasPrefix(r, tc.reply) {
				t.Errorf("RCPT TO:%s = %q, want %s", tc.rcpt, r, tc.reply)
			}
		}
		c.cmd("AUTH PLAIN "+plainIR("", bob, bobPass), 503)
	})

	t.Run("SMTPUTF8 and IDN recipients", func(t *testing.T) {
		c := w.loggedIn587(t, bob, bobPass)
		c.cmd("MAIL FROM:<bob@example.com> SMTPUTF8", 250)
		c.cmd("RCPT TO:<jörg@Bücher.example>", 250)
		c.cmd("DATA", 354)
		c.send("Subject: utf8\r\n\r\nhallo\r\n.\r\n")
		c.expect(250)
		var got *stored
		for _, m := range w.sink.all() {
			if m.env.AuthUser == bob {
				got = &m
			}
		}
		if got == nil || strings.Join(got.env.To, ",") != "jörg@xn--bcher-kva.example" || !got.env.UTF8 {
			t.Fatalf("stored %+v", got)
		}
		if hdr, _ := splitReceived(t, got.data); !strings.Contains(hdr, " with UTF8SMTPSA id ") {
			t.Errorf("Received header:\n%s", hdr)
		}
	})

	t.Run("wrong password, then disconnect after three failures", func(t *testing.T) {
		c := dialRaw(t, w.subsAddr, true, w.clientTLS)
		c.cmd("EHLO client.test", 250)
		c.send("AUTH PLAIN " + plainIR("", alice, "wrong") + "\r\n")
		if r := c.reply(); !strings.HasPrefix(r, "535 5.7.8") {
			t.Fatalf("wrong password = %q", r)
		}
		c.send("AUTH PLAIN " + plainIR(bob, alice, alicePass) + "\r\n")
		if r := c.reply(); !strings.HasPrefix(r, "535 5.7.8") {
			t.Fatalf("authzid of another user = %q", r)
		}
		c.cmd("AUTH LOGIN", 334)
		c.cmd(b64("nobody@example.com"), 334)
		c.send(b64("whatever") + "\r\n")
		if r := c.reply(); !strings.HasPrefix(r, "535 5.7.8") {
			t.Fatalf("unknown user = %q", r)
		}
		if rest, closed := c.closedByServer(); !closed {
			t.Fatalf("connection still open after 3 failures (read %q)", rest)
		}
	})

	t.Run("temporary authenticator failure", func(t *testing.T) {
		c := dialRaw(t, w.subsAddr, true, w.clientTLS)
		c.cmd("EHLO client.test", 250)
		r := c.cmd("AUTH PLAIN "+plainIR("", tempFailUser, "x"), 454)
		if !strings.HasPrefix(r, "454 4.7.0") || strings.Contains(r, "database") {
			t.Errorf("temporary failure reply %q (must not leak the cause)", r)
		}
	})

	t.Run("go-smtp client: MAIL before AUTH", func(t *testing.T) {
		c, err := gosmtp.DialTLS(w.subsAddr, w.clientTLS)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		err = c.Mail(alice, nil)
		if got := smtpCode(t, err); got != "530 5.7.0" {
			t.Errorf("MAIL before AUTH = %s", got)
		}
		if err := c.Auth(sasl.NewPlainClient("", alice, alicePass)); err != nil {
			t.Fatal(err)
		}
		if got := smtpCode(t, c.Mail(bob, nil)); got != "553 5.7.1" {
			t.Errorf("foreign MAIL FROM = %s", got)
		}
	})
}

func TestSubmissionRequiresTLSConfig(t *testing.T) {
	if _, err := NewSubmission(Config{Hostname: testHost}, &fakeAuth{}, nil, &recordSink{}, false); err == nil {
		t.Error("submission without TLS accepted")
	}
	if _, err := NewMX(Config{}, &fakeRecipients{}, &recordSink{}); err == nil {
		t.Error("MX without hostname accepted")
	}
}
