package smtp

import (
	"bytes"
	"net/smtp"
	"regexp"
	"strings"
	"testing"

	gosmtp "github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"

	"mailconf/internal/testutil"
)

// message has what byte-exactness must survive: 8-bit UTF-8, a line that
// starts with a dot (dot-stuffed on the wire), trailing white space, an
// empty line at the end, a 990-byte line.
var message = []byte("From: Sender <sender@remote.example>\r\n" +
	"To: Alice <alice@example.com>\r\n" +
	"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"Content-Transfer-Encoding: 8bit\r\n" +
	"\r\n" +
	"Grüße aus Köln \t \r\n" +
	".a line that starts with a dot\r\n" +
	"..and one with two\r\n" +
	strings.Repeat("x", 990) + "\r\n" +
	"\r\n")

var receivedRE = regexp.MustCompile(`^Received: from (\S+) \(\[127\.0\.0\.1\]\)\r\n` +
	`\tby mail\.example\.com \(mailconf\) with ((?:ESMTP|UTF8SMTP)S?A?) id ([0-9A-F]{16})` +
	`(?:\r\n\t\(using (TLS 1\.[23]) with cipher [A-Z0-9_]+\))?` +
	`(?:\r\n\tfor <([^>]+)>)?` +
	`;\r\n\t\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} [+-]\d{4}\r\n$`)

func TestMXDeliveryNetSMTP(t *testing.T) {
	w := newWorld(t, nil)
	c, err := smtp.Dial(w.mxAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.Extension("AUTH"); ok {
		t.Error("port 25 offers AUTH")
	}
	if err := c.Mail("sender@remote.example"); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("Alice@EXAMPLE.com"); err != nil {
		t.Fatalf("mixed-case local recipient: %v", err)
	}
	wc, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wc.Write(message); err != nil {
		t.Fatal(err)
	}
	if err := wc.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}

	msgs := w.sink.all()
	if len(msgs) != 1 {
		t.Fatalf("stored %d messages, want 1", len(msgs))
	}
	if n := counterValue(t, w.metrics.Connections.WithLabelValues("smtp")); n != 1 {
		t.Errorf("connections metric = %v", n)
	}
	if n := counterValue(t, w.metrics.Messages.WithLabelValues("in")); n != 1 {
		t.Errorf("messages metric = %v", n)
	}
	env := msgs[0].env
	if env.From != "sender@remote.example" || len(env.To) != 1 || env.To[0] != "Alice@example.com" ||
		env.Submission || env.AuthUser != "" || env.TLS || env.Helo != "client.test" || env.RemoteIP.String() != "127.0.0.1" {
		t.Errorf("envelope = %+v", env)
	}
	hdr, body := splitReceived(t, msgs[0].data)
	if !bytes.Equal(body, message) {
		t.Errorf("stored bytes differ from the sent message:\n got %q\nwant %q", body, message)
	}
	m := receivedRE.FindStringSubmatch(hdr)
	if m == nil {
		t.Fatalf("Received header malformed:\n%s", hdr)
	}
	// net/smtp declares SMTPUTF8 whenever the server offers it.
	if m[1] != "client.test" || m[2] != "UTF8SMTP" || m[3] != env.ID || m[4] != "" || m[5] != "Alice@example.com" || !env.UTF8 {
		t.Errorf("Received header fields %q in\n%s", m[1:], hdr)
	}
}

func TestMXDeliveryGoSMTPWithSTARTTLS(t *testing.T) {
	w := newWorld(t, nil)
	c, err := gosmtp.DialStartTLS(w.mxAddr, w.clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if ok, _ := c.Extension("AUTH"); ok {
		t.Error("port 25 offers AUTH under TLS")
	}
	if err := c.SendMail("", []string{bob, carol, "BOB@example.com"}, bytes.NewReader(message)); err != nil {
		t.Fatalf("null-sender mail to two local mailboxes: %v", err)
	}
	msgs := w.sink.all()
	if len(msgs) != 1 {
		t.Fatalf("stored %d messages, want 1", len(msgs))
	}
	env := msgs[0].env
	if env.From != "" || strings.Join(env.To, ",") != bob+","+carol || !env.TLS {
		t.Errorf("envelope = %+v (want deduplicated recipients, TLS)", env)
	}
	hdr, body := splitReceived(t, msgs[0].data)
	if !bytes.Equal(body, message) {
		t.Errorf("stored bytes differ")
	}
	m := receivedRE.FindStringSubmatch(hdr)
	if m == nil || m[2] != "ESMTPS" || m[4] == "" || m[5] != "" {
		t.Errorf("Received header (want ESMTPS, TLS comment, no for-clause with two recipients):\n%s", hdr)
	}
}

func TestMXRecipientRules(t *testing.T) {
	w := newWorld(t, nil)
	c := dialRaw(t, w.mxAddr, false, nil)
	ehlo := c.cmd("EHLO client.test", 250)
	for _, ext := range []string{"PIPELINING", "8BITMIME", "SMTPUTF8", "SIZE 26214400", "ENHANCEDSTATUSCODES", "STARTTLS"} {
		if !strings.Contains(ehlo, "250-"+ext+"\r\n") && !strings.Contains(ehlo, "250 "+ext+"\r\n") {
			t.Errorf("EHLO lacks %s:\n%s", ext, ehlo)
		}
	}
	if strings.Contains(ehlo, "AUTH") {
		t.Errorf("MX offers AUTH:\n%s", ehlo)
	}
	c.cmd("AUTH PLAIN "+plainIR("", alice, alicePass), 523)
	c.cmd("MAIL FROM:<sender@remote.example>", 250)
	cases := []struct {
		rcpt, reply string
	}{
		{"<nobody@example.com>", "550 5.1.1"},
		{"<someone@remote.example>", "554 5.7.1"},
		{"<SOMEONE@Remote.Example>", "554 5.7.1"},
		// The relay tricks of reference/mailserver.md §5.3.
		{"<alice%remote.example@example.com>", "550 5.1.1"},
		{"<remote.example!alice@example.com>", "550 5.1.1"},
		{"<@example.com:someone@remote.example>", "554 5.7.1"},
		{"<@example.com,@example.org:someone@remote.example>", "554 5.7.1"},
		{`<"someone@remote.example"@example.com>`, "550 5.1.1"},
		{`<"someone%remote.example"@example.com>`, "550 5.1.1"},
		{"<alice@[127.0.0.1]>", "554 5.7.1"},
		{"<alice@[IPv6:::1]>", "554 5.7.1"},
		{"<alice@example.com.>", "554 5.7.1"},
		{"<someone@remote.example.>", "554 5.7.1"},
		{"<someone@remote.example@example.com>", "550 5.1.1"},
		{"<postmaster>", "501"},
		{"<alice@ex ample.com>", "501"},
		{"<alice..x@example.com>", "550 5.1.1"},
		{"<ålice@example.com>", "553 5.6.7"}, // UTF-8 without SMTPUTF8
		// The real mailboxes, in any case.
		{"<alice@example.com>", "250"},
		{"<ALICE@EXAMPLE.COM>", "250"},
		{`<"alice"@example.com>`, "250"},
	}
	for _, tc := range cases {
		c.send("RCPT TO:" + tc.rcpt + "\r\n")
		if got := c.reply(); !strings.HasPrefix(got, tc.reply) {
			t.Errorf("RCPT TO:%s = %q, want %s", tc.rcpt, got, tc.reply)
		}
	}
	c.cmd("DATA", 354)
	c.send("Subject: relay test\r\n\r\nhello\r\n.\r\n")
	c.expect(250)
	msgs := w.sink.all()
	if len(msgs) != 1 || strings.Join(msgs[0].env.To, ",") != "alice@example.com" {
		t.Fatalf("stored %+v, want one message for alice only", msgs)
	}
	// Nothing but the plain served-domain spellings reached the store.
	for _, l := range w.rcpts.lookups {
		if strings.ContainsAny(l[strings.LastIndexByte(l, '@')+1:], "[]!%:") || strings.HasSuffix(l, ".") {
			t.Errorf("lookup of a non-canonical domain: %q", l)
		}
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	return testutil.MetricValue(t, c)
}
