package pop3

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"mailconf/mailserver/accounts"
)

// wireForm is the reference for what RETR must deliver: every line with
// CRLF, a final line end added. It works on the whole message at once, so
// it shares no code with the streaming encoder.
func wireForm(raw string) string {
	if raw == "" {
		return ""
	}
	raw = strings.ReplaceAll(raw, "\r\n", "\n")
	if !strings.HasSuffix(raw, "\n") {
		raw += "\n"
	}
	return strings.ReplaceAll(raw, "\n", "\r\n")
}

var samples = []string{
	"From: a@example.org\r\nSubject: plain\r\n\r\nHello.\r\n",
	"Subject: dots\r\n\r\n.\r\n..\r\n.leading dot\r\nmiddle . dot\r\n.\r\n",
	"Subject: bare LF\n\nline one\nline two\n",
	"Subject: no final newline\r\n\r\nlast line",
	"Subject: mixed\r\n\nbody\nmore\r\n\r\n\r\n",
	"Subject: binary\r\n\r\n\x00\x01\xff\xfe caf\xc3\xa9 \rCR inside\r\n",
	"Subject: only headers\r\nX-A: b\r\n",
}

func TestCapaAndNoLoginBeforeTLS(t *testing.T) {
	e := newEnv(t)
	c := e.dialPlain()
	c.expectOK("CAPA")
	capa := c.multi()
	for _, want := range []string{"TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "STLS", "IMPLEMENTATION mailconf"} {
		if !slices.Contains(capa, want) {
			t.Errorf("CAPA before TLS lacks %q: %q", want, capa)
		}
	}
	for _, no := range []string{"USER", "SASL PLAIN"} {
		if slices.Contains(capa, no) {
			t.Errorf("CAPA before TLS offers %q", no)
		}
	}
	c.expectErr("USER "+alice, "-ERR [AUTH]")
	c.expectErr("PASS "+alicePass, "-ERR [AUTH]")
	c.expectErr("AUTH PLAIN "+plain("", alice, alicePass), "-ERR [AUTH]")
	c.expectOK("AUTH")
	if m := c.multi(); len(m) != 0 {
		t.Errorf("AUTH lists mechanisms before TLS: %q", m)
	}
	c.stls()
	c.expectOK("CAPA")
	capa = c.multi()
	if slices.Contains(capa, "STLS") || !slices.Contains(capa, "USER") || !slices.Contains(capa, "SASL PLAIN") {
		t.Errorf("CAPA after STLS: %q", capa)
	}
	c.expectErr("STLS", "-ERR")
	c.expectOK("USER " + alice)
	c.expectOK("PASS " + alicePass)
	if r := c.cmd("STAT"); r != "+OK 0 0" {
		t.Errorf("STAT on empty maildrop: %q", r)
	}
	if r := c.cmd("QUIT"); !strings.HasPrefix(r, "+OK") {
		t.Errorf("QUIT: %q", r)
	}
	c.closed()
}

// TestSTLSDiscardsPipelinedPlaintext is CVE-2011-0411: commands sent in
// plaintext behind STLS must not run inside TLS.
func TestSTLSDiscardsPipelinedPlaintext(t *testing.T) {
	e := newEnv(t)
	c := e.dialPlain()
	c.send("STLS\r\nUSER " + alice + "\r\nCAPA\r\n")
	c.stlsAfterWrite()
	// Had USER run, PASS would log in and the first reply would be CAPA's.
	if r := c.cmd("PASS " + alicePass); r != "-ERR USER first" {
		t.Fatalf("PASS after injected USER: %q", r)
	}
	if r := c.cmd("QUIT"); r != "+OK Logging out" {
		t.Fatalf("QUIT: %q", r)
	}
	if !strings.Contains(e.logs.String(), "discarded plaintext pipelined after STLS") {
		t.Error("discard not logged")
	}
}

func (c *client) stlsAfterWrite() {
	c.t.Helper()
	if r := c.line(); r != "+OK Begin TLS negotiation" {
		c.t.Fatalf("STLS: %q", r)
	}
	c.stlsHandshake()
}

func (c *client) stlsHandshake() {
	c.t.Helper()
	c.conn.SetDeadline(time.Now().Add(5 * time.Second))
	tc := tls.Client(c.conn, c.cfg)
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("handshake: %v", err)
	}
	c.conn = tc
	c.r.Reset(tc)
}

func TestRetrByteExactAndSizes(t *testing.T) {
	e := newEnv(t)
	for _, s := range samples {
		e.deliver(s)
	}
	c := e.login()
	var total int64
	c.expectOK("LIST")
	list := c.multi()
	if len(list) != len(samples) {
		t.Fatalf("LIST: %q", list)
	}
	for i, s := range samples {
		want := wireForm(s)
		total += int64(len(want))
		if list[i] != fmt.Sprintf("%d %d", i+1, len(want)) {
			t.Errorf("LIST line %d = %q, want size %d", i+1, list[i], len(want))
		}
		if r := c.cmd(fmt.Sprintf("LIST %d", i+1)); r != fmt.Sprintf("+OK %d %d", i+1, len(want)) {
			t.Errorf("LIST %d = %q", i+1, r)
		}
		if r := c.cmd(fmt.Sprintf("RETR %d", i+1)); r != fmt.Sprintf("+OK %d octets", len(want)) {
			t.Fatalf("RETR %d: %q", i+1, r)
		}
		if got := c.body(); string(got) != want {
			t.Errorf("RETR %d:\n got %q\nwant %q", i+1, got, want)
		}
	}
	if r := c.cmd("STAT"); r != fmt.Sprintf("+OK %d %d", len(samples), total) {
		t.Errorf("STAT = %q, want total %d", r, total)
	}
	// On the wire, dots are stuffed and the terminator cannot appear early.
	c.send("RETR 2\r\n")
	var raw bytes.Buffer
	for {
		l := c.line()
		raw.WriteString(l + "\r\n")
		if l == "." {
			break
		}
	}
	wantWire := "+OK " + strconv.Itoa(len(wireForm(samples[1]))) + " octets\r\nSubject: dots\r\n\r\n..\r\n...\r\n..leading dot\r\nmiddle . dot\r\n..\r\n.\r\n"
	if raw.String() != wantWire {
		t.Errorf("wire form of RETR 2:\n got %q\nwant %q", raw.String(), wantWire)
	}
	c.expectOK("QUIT")
}

func TestTop(t *testing.T) {
	e := newEnv(t)
	e.deliver("Subject: top\r\nX-B: c\r\n\r\nb1\r\n.b2\r\nb3\r\n")
	e.deliver("Subject: no body separator\r\nX-A: b\r\n")
	e.deliver("Subject: lf\n\nx\ny\n")
	c := e.login()
	cases := []struct {
		cmd, want string
	}{
		{"TOP 1 0", "Subject: top\r\nX-B: c\r\n\r\n"},
		{"TOP 1 2", "Subject: top\r\nX-B: c\r\n\r\nb1\r\n.b2\r\n"},
		{"TOP 1 100", "Subject: top\r\nX-B: c\r\n\r\nb1\r\n.b2\r\nb3\r\n"},
		{"TOP 2 5", "Subject: no body separator\r\nX-A: b\r\n"},
		{"TOP 3 1", "Subject: lf\r\n\r\nx\r\n"},
	}
	for _, tc := range cases {
		c.expectOK(tc.cmd)
		if got := string(c.body()); got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.cmd, got, tc.want)
		}
	}
	for _, bad := range []string{"TOP 1", "TOP 1 -1", "TOP 1 x", "TOP", "TOP 1 2 3"} {
		c.expectErr(bad, "-ERR")
	}
	c.expectErr("TOP 9 1", "-ERR No such message")
}

func TestUIDLStableAcrossSessions(t *testing.T) {
	e := newEnv(t)
	u1 := e.deliver("Subject: 1\r\n\r\n1\r\n")
	u2 := e.deliver("Subject: 2\r\n\r\n2\r\n")
	c := e.login()
	c.expectOK("UIDL")
	first := c.multi()
	want := []string{
		fmt.Sprintf("1 %08X%08X", u1, e.inbox.UIDValidity),
		fmt.Sprintf("2 %08X%08X", u2, e.inbox.UIDValidity),
	}
	if !slices.Equal(first, want) {
		t.Fatalf("UIDL = %q, want %q", first, want)
	}
	if r := c.cmd("UIDL 2"); r != "+OK "+want[1] {
		t.Errorf("UIDL 2 = %q", r)
	}
	c.expectOK("DELE 1")
	c.expectOK("QUIT")
	u3 := e.deliver("Subject: 3\r\n\r\n3\r\n")
	c = e.login()
	c.expectOK("UIDL")
	second := c.multi()
	want2 := []string{
		fmt.Sprintf("1 %08X%08X", u2, e.inbox.UIDValidity),
		fmt.Sprintf("2 %08X%08X", u3, e.inbox.UIDValidity),
	}
	if !slices.Equal(second, want2) {
		t.Fatalf("UIDL after delete and delivery = %q, want %q", second, want2)
	}
	for _, l := range second {
		id := strings.Fields(l)[1]
		if len(id) < 1 || len(id) > 70 || strings.ContainsFunc(id, func(r rune) bool { return r < 0x21 || r > 0x7e }) {
			t.Errorf("UIDL value %q breaks RFC 1939", id)
		}
	}
}

func TestDeletionSemantics(t *testing.T) {
	e := newEnv(t)
	uids := []uint32{e.deliver("Subject: 1\r\n\r\n1\r\n"), e.deliver("Subject: 2\r\n\r\n22\r\n"), e.deliver("Subject: 3\r\n\r\n333\r\n")}

	// DELE then a dropped connection deletes nothing.
	c := e.login()
	c.expectOK("DELE 1")
	c.expectOK("DELE 2")
	c.conn.Close()
	waitFor(t, func() bool { return !e.srv.held(e.alice.ID) })
	if got := e.inboxUIDs(); !slices.Equal(got, uids) {
		t.Fatalf("after DELE and drop: %v, want %v", got, uids)
	}

	// RSET undoes; deleted messages vanish from STAT/LIST/UIDL and refuse
	// every reference.
	c = e.login()
	c.expectOK("DELE 2")
	c.expectErr("DELE 2", "-ERR Message is deleted")
	c.expectErr("RETR 2", "-ERR Message is deleted")
	c.expectErr("LIST 2", "-ERR Message is deleted")
	c.expectErr("UIDL 2", "-ERR Message is deleted")
	c.expectErr("TOP 2 0", "-ERR Message is deleted")
	sz1, sz3 := len("Subject: 1\r\n\r\n1\r\n"), len("Subject: 3\r\n\r\n333\r\n")
	if r := c.cmd("STAT"); r != fmt.Sprintf("+OK 2 %d", sz1+sz3) {
		t.Errorf("STAT with one deleted: %q", r)
	}
	c.expectOK("LIST")
	if l := c.multi(); !slices.Equal(l, []string{fmt.Sprintf("1 %d", sz1), fmt.Sprintf("3 %d", sz3)}) {
		t.Errorf("LIST with one deleted: %q", l)
	}
	c.expectOK("RSET")
	c.expectOK("RETR 2")
	c.body()
	c.expectOK("QUIT")
	if got := e.inboxUIDs(); !slices.Equal(got, uids) {
		t.Fatalf("after RSET and QUIT: %v", got)
	}

	// DELE then QUIT removes, and an IMAP session watching INBOX learns of
	// it through the store.
	watch, cancel := e.st.Watch(e.inbox.ID)
	defer cancel()
	before := e.inbox.HighestModSeq
	if mb, err := e.st.MailboxByID(context.Background(), e.inbox.ID); err == nil {
		before = mb.HighestModSeq
	}
	c = e.login()
	c.expectOK("DELE 1")
	c.expectOK("DELE 3")
	if r := c.cmd("QUIT"); r != "+OK Logging out, messages deleted" {
		t.Fatalf("QUIT: %q", r)
	}
	c.closed()
	if got := e.inboxUIDs(); !slices.Equal(got, []uint32{uids[1]}) {
		t.Fatalf("after DELE 1, DELE 3, QUIT: %v", got)
	}
	select {
	case <-watch:
	case <-time.After(5 * time.Second):
		t.Fatal("no store notification for the POP3 deletion")
	}
	_, vanished, _, err := e.st.Changes(context.Background(), e.inbox.ID, before)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(vanished, []uint32{uids[0], uids[2]}) {
		t.Errorf("IMAP sees vanished %v, want %v", vanished, []uint32{uids[0], uids[2]})
	}
}

// waitFor polls cond for up to 5 seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for range 500 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("condition not reached")
}

func TestExpungedByIMAPDuringSession(t *testing.T) {
	e := newEnv(t)
	u1 := e.deliver("Subject: 1\r\n\r\n1\r\n")
	e.deliver("Subject: 2\r\n\r\n2\r\n")
	c := e.login()
	if _, err := e.st.Remove(context.Background(), e.inbox.ID, []uint32{u1}); err != nil {
		t.Fatal(err)
	}
	c.expectErr("RETR 1", "-ERR Message was removed")
	c.expectOK("RETR 2")
	c.body()
	// A delivery during the session is not part of the maildrop.
	e.deliver("Subject: 3\r\n\r\n3\r\n")
	if r := c.cmd("STAT"); !strings.HasPrefix(r, "+OK 2 ") {
		t.Errorf("STAT after delivery during session: %q", r)
	}
	c.expectErr("RETR 3", "-ERR No such message")
	c.expectOK("DELE 1")
	c.expectOK("DELE 2")
	c.expectOK("QUIT")
	if got := e.inboxUIDs(); len(got) != 1 {
		t.Errorf("left after QUIT: %v, want only the new delivery", got)
	}
}

func TestInUse(t *testing.T) {
	e := newEnv(t)
	e.deliver("Subject: 1\r\n\r\n1\r\n")
	first := e.login()
	second := e.dialTLS()
	second.expectOK("USER " + alice)
	second.expectErr("PASS "+alicePass, "-ERR [IN-USE]")
	// Another account is not affected.
	other := e.dialTLS()
	other.expectOK("USER " + bob)
	other.expectOK("PASS " + bobPass)
	// The lock also covers the STLS listener.
	third := e.dialPlain()
	third.stls()
	third.expectErr("AUTH PLAIN "+plain("", alice, alicePass), "-ERR [IN-USE]")
	first.expectOK("QUIT")
	first.closed()
	waitFor(t, func() bool { return !e.srv.held(e.alice.ID) })
	second.expectOK("USER " + alice)
	second.expectOK("PASS " + alicePass)
	second.expectOK("STAT")
}

func TestCommandsInWrongState(t *testing.T) {
	e := newEnv(t)
	e.deliver("Subject: 1\r\n\r\n1\r\n")
	c := e.dialTLS()
	for _, cmd := range []string{"STAT", "LIST", "RETR 1", "DELE 1", "UIDL", "TOP 1 1", "RSET", "NOOP"} {
		c.expectErr(cmd, "-ERR")
	}
	c.expectErr("PASS "+alicePass, "-ERR USER first")
	c.expectOK("USER " + alice)
	c.expectOK("PASS " + alicePass)
	for _, cmd := range []string{"USER " + alice, "PASS x", "AUTH PLAIN " + plain("", alice, alicePass), "STLS", "APOP a b"} {
		c.expectErr(cmd, "-ERR")
	}
	for _, n := range []string{"0", "2", "-1", "+1", "99999999999999999999", "abc", "1x", "", "1 2"} {
		r := c.cmd(strings.TrimSpace("RETR " + n))
		if !strings.HasPrefix(r, "-ERR") {
			t.Errorf("RETR %q: %q", n, r)
		}
	}
	c.expectOK("NOOP")
	c.expectOK("RETR 1")
	c.body()
	// Commands are case-insensitive.
	c.expectOK("stat")
	c.expectOK("QuIt")
}

func TestHostileInput(t *testing.T) {
	e := newEnv(t)
	e.deliver("Subject: 1\r\n\r\n1\r\n")

	t.Run("long line", func(t *testing.T) {
		c := e.dialTLS()
		c.expectErr("NOOP "+strings.Repeat("a", 300), "-ERR Line too long")
		c.expectErr("USER "+strings.Repeat("b", 5000), "-ERR Line too long")
		c.expectOK("CAPA")
		c.multi()
		c.expectOK("USER " + alice)
		c.expectOK("PASS " + alicePass)
		c.expectOK("STAT")
		c.expectOK("QUIT")
		c.closed()
	})
	t.Run("endless line", func(t *testing.T) {
		c := e.dialTLS()
		junk := bytes.Repeat([]byte("x"), 16<<10)
		for range 8 {
			if _, err := c.conn.Write(junk); err != nil {
				break
			}
		}
		c.closed()
	})
	t.Run("binary", func(t *testing.T) {
		c := e.dialTLS()
		for _, b := range []string{"\x00\x01\x02", "\xff\xfe USER", "USER \x00" + alice, "CAPA\x00", "\x16\x03\x01\x02\x00"} {
			r := c.cmd(b)
			if !strings.HasPrefix(r, "-ERR") || strings.Contains(r, "\x00") || strings.Contains(r, "\xff") || strings.Contains(r, "\x16") {
				t.Errorf("%q: %q", b, r)
			}
		}
	})
	t.Run("bad command cap before login", func(t *testing.T) {
		c := e.dialPlain()
		for i := range maxBadCommands - 1 {
			c.expectErr(fmt.Sprintf("GET /%d HTTP/1.1", i), "-ERR")
		}
		c.expectErr("EHLO x", "-ERR Too many invalid commands")
		c.closed()
	})
	t.Run("bad base64", func(t *testing.T) {
		c := e.dialTLS()
		c.expectErr("AUTH PLAIN !!!notbase64", "-ERR Invalid base64")
		if r := c.cmd("AUTH PLAIN"); r != "+ " {
			t.Fatalf("AUTH PLAIN continuation: %q", r)
		}
		c.expectErr("%%%", "-ERR Invalid base64")
		c.expectErr("AUTH PLAIN "+base64Of("no nul bytes"), "-ERR [AUTH]")
		c.expectErr("AUTH PLAIN =", "-ERR [AUTH]")
		c.expectErr("AUTH CRAM-MD5", "-ERR Unsupported")
		c.expectOK("AUTH PLAIN " + plain("", alice, alicePass))
		c.expectOK("STAT")
		c.expectOK("QUIT")
		c.closed()
	})
}

func base64Of(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestAuthPlain(t *testing.T) {
	e := newEnv(t)
	t.Run("initial response", func(t *testing.T) {
		c := e.dialTLS()
		c.expectOK("AUTH PLAIN " + plain("", alice, alicePass))
		c.expectOK("QUIT")
		c.closed()
	})
	t.Run("continuation and authzid", func(t *testing.T) {
		c := e.dialTLS()
		if r := c.cmd("auth plain"); r != "+ " {
			t.Fatalf("continuation: %q", r)
		}
		c.expectOK(plain(alice, alice, alicePass))
		c.expectOK("QUIT")
		c.closed()
	})
	t.Run("cancel", func(t *testing.T) {
		c := e.dialTLS()
		c.cmd("AUTH PLAIN")
		c.expectErr("*", "-ERR Authentication cancelled")
		c.expectOK("AUTH PLAIN " + plain("", bob, bobPass))
		c.expectOK("QUIT")
		c.closed()
	})
	t.Run("password with spaces via PASS", func(t *testing.T) {
		c := e.dialTLS()
		c.expectOK("USER " + bob)
		c.expectOK("PASS " + bobPass)
	})
	t.Run("failures", func(t *testing.T) {
		c := e.dialTLS()
		c.expectErr("AUTH PLAIN "+plain(bob, alice, alicePass), "-ERR [AUTH]")
		c.expectOK("USER " + alice)
		c.expectErr("PASS wrong", "-ERR [AUTH] Authentication failed")
		c.expectOK("USER nobody@example.com")
		r := c.cmd("PASS " + alicePass)
		if !strings.HasPrefix(r, "-ERR [AUTH]") {
			t.Fatalf("third failure: %q", r)
		}
		c.closed()
	})
}

func TestThrottledThroughSharedAuthenticator(t *testing.T) {
	e := newEnv(t, func(_ *Config, l *accounts.Limits) { l.IPFailures = 4 })
	c := e.dialTLS()
	for range 3 {
		c.expectOK("USER " + alice)
		c.cmd("PASS nope")
	}
	c.closed()
	c = e.dialTLS()
	c.expectErr("AUTH PLAIN "+plain("", alice, "nope"), "-ERR [AUTH]") // fourth: blocks the client
	// Blocked: even the right password is not checked.
	c.expectErr("AUTH PLAIN "+plain("", alice, alicePass), "-ERR [LOGIN-DELAY]")
	c.closed()
	// A failed login is counted under protocol "pop3".
	if !strings.Contains(e.logs.String(), "protocol=pop3") {
		t.Error("authenticator did not log a pop3 failure")
	}
}

func TestStoreTroubleIsSysTemp(t *testing.T) {
	e := newEnv(t)
	e.st.Close()
	c := e.dialTLS()
	c.expectOK("USER " + alice)
	c.expectErr("PASS "+alicePass, "-ERR [SYS/TEMP]")
}

func TestPipelining(t *testing.T) {
	e := newEnv(t)
	e.deliver("Subject: 1\r\n\r\n.1\r\n")
	e.deliver("Subject: 2\r\n\r\n2\r\n")
	c := e.dialTLS()
	c.send("USER " + alice + "\r\nPASS " + alicePass + "\r\nSTAT\r\nRETR 1\r\nUIDL 2\r\nDELE 2\r\nRETR 2\r\nLIST\r\nQUIT\r\n")
	want := []string{"+OK", "+OK Logged in", "+OK 2 ", "+OK ", "Subject: 1", "", "..1", ".", "+OK 2 ", "+OK Marked", "-ERR Message is deleted", "+OK 1 ", "1 ", ".", "+OK Logging out, messages deleted"}
	for i, w := range want {
		if l := c.line(); !strings.HasPrefix(l, w) || (w == "" && l != "") {
			t.Fatalf("reply %d = %q, want prefix %q", i, l, w)
		}
	}
	c.closed()
}

func TestIdleTimeout(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *accounts.Limits) { c.IdleTimeout = 300 * time.Millisecond })
	uid := e.deliver("Subject: 1\r\n\r\n1\r\n")
	c := e.login()
	c.expectOK("DELE 1")
	if r := c.line(); r != "-ERR Autologout; idle for too long" {
		t.Fatalf("idle: %q", r)
	}
	c.closed()
	waitFor(t, func() bool { return !e.srv.held(e.alice.ID) })
	if got := e.inboxUIDs(); !slices.Equal(got, []uint32{uid}) {
		t.Fatalf("autologout applied deletions: %v", got)
	}
}

func TestConnectionLimits(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *accounts.Limits) { c.MaxConnsPerIP = 2 })
	a, b := e.dialPlain(), e.dialTLS()
	c := e.dial(e.plainAddr)
	if r := c.line(); !strings.HasPrefix(r, "-ERR [SYS/TEMP]") {
		t.Fatalf("third connection: %q", r)
	}
	c.closed()
	a.expectOK("QUIT")
	a.closed()
	b.expectOK("CAPA")
	waitFor(t, func() bool {
		e.srv.mu.Lock()
		defer e.srv.mu.Unlock()
		return len(e.srv.sessions) == 1
	})
	e.dialPlain().expectOK("CAPA")
}

func TestLoginDelayAndExpire(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *accounts.Limits) {
		c.LoginDelay = time.Hour
		c.Expire = ExpireNever
	})
	c := e.login()
	c.expectOK("CAPA")
	capa := c.multi()
	if !slices.Contains(capa, "LOGIN-DELAY 3600") || !slices.Contains(capa, "EXPIRE NEVER") {
		t.Errorf("CAPA: %q", capa)
	}
	c.expectOK("QUIT")
	c.closed()
	waitFor(t, func() bool { return !e.srv.held(e.alice.ID) })
	c = e.dialTLS()
	c.expectOK("USER " + alice)
	c.expectErr("PASS "+alicePass, "-ERR [LOGIN-DELAY]")
}

func TestShutdownAppliesNoDeletions(t *testing.T) {
	e := newEnv(t)
	uid := e.deliver("Subject: 1\r\n\r\n1\r\n")
	c := e.login()
	c.expectOK("DELE 1")
	idle := e.dialPlain()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for _, cl := range []*client{c, idle} {
		if r := cl.line(); r != "-ERR [SYS/TEMP] Server shutting down" {
			t.Errorf("at shutdown: %q", r)
		}
		cl.closed()
	}
	for range 2 {
		if err := <-e.served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
	}
	if got := e.inboxUIDs(); !slices.Equal(got, []uint32{uid}) {
		t.Fatalf("shutdown applied deletions: %v", got)
	}
	if _, err := net.DialTimeout("tcp", e.plainAddr, time.Second); err == nil {
		t.Error("listener still accepts after Shutdown")
	}
}

func TestMetricsCountConnections(t *testing.T) {
	e := newEnv(t)
	e.dialPlain().expectOK("QUIT")
	e.login().expectOK("QUIT")
	mfs, err := e.metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += "/" + l.GetValue()
			}
			got[key] = m.GetCounter().GetValue()
		}
	}
	if got["mailconf_connections_total/pop3"] != 1 || got["mailconf_connections_total/pop3s"] != 1 || got["mailconf_logins_total/pop3/ok"] != 1 {
		t.Errorf("metrics: %v", got)
	}
}

func TestNewValidates(t *testing.T) {
	e := newEnv(t)
	if _, err := New(Config{TLS: e.srv.cfg.TLS}, e.st, e.auth); err == nil {
		t.Error("New accepted an empty Hostname")
	}
	if _, err := New(Config{Hostname: "h"}, e.st, e.auth); err == nil {
		t.Error("New accepted a nil TLS config")
	}
	if _, err := New(Config{Hostname: "h", TLS: e.srv.cfg.TLS}, nil, e.auth); err == nil {
		t.Error("New accepted a nil store")
	}
}
