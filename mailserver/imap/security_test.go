package imap

import (
	"bufio"
	"context"
	"crypto/tls"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"

	"mailconf/mailserver/accounts"
)

func mailboxExists(t *testing.T, e *env, name string) bool {
	t.Helper()
	_, err := e.st.Mailbox(context.Background(), e.aliceID, name)
	return err == nil
}

// literalWithCommands is a 5000-byte literal whose lines are IMAP
// commands, the smuggling payload of mailserver.md §1.5(1).
func literalWithCommands() string {
	body := "Subject: hello\r\n\r\nX1 DELETE Victim\r\nX2 CREATE Injected\r\n"
	return body + strings.Repeat("a", 5000-len(body))
}

func TestLiteralSmugglingAppend(t *testing.T) {
	// A literal above APPENDLIMIT sent with LITERAL+: refused, discarded,
	// connection in step, nothing inside it runs.
	e2 := newEnv(t, func(c *Config) { c.AppendLimit = 1000 })
	c2 := e2.alice()
	if err := c2.Create("Victim", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	r := e2.rawTLS()
	r.login()
	r.send("p1 APPEND INBOX {5000+}\r\n" + literalWithCommands() + "\r\n")
	lines := r.until("p1 ")
	if !strings.HasPrefix(lines[len(lines)-1], "p1 NO [TOOBIG]") {
		t.Errorf("oversized APPEND: %q", lines)
	}
	r.send("p2 NOOP\r\n")
	lines = r.until("p2 ")
	for _, l := range lines {
		if strings.HasPrefix(l, "X1") || strings.HasPrefix(l, "X2") {
			t.Errorf("literal content answered as a command: %q", l)
		}
	}
	if lines[len(lines)-1] != "p2 OK NOOP completed" {
		t.Errorf("after refused literal: %q", lines)
	}
	if !mailboxExists(t, e2, "Victim") || mailboxExists(t, e2, "Injected") {
		t.Fatal("commands inside the literal were executed")
	}
}

func TestLiteralSmugglingOutsideAppend(t *testing.T) {
	e := newEnv(t)
	c := e.alice()
	if err := c.Create("Victim", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{
		"s1 SEARCH TEXT {5000+}\r\n",      // SEARCH with a big literal
		"s1 CREATE {5000+}\r\n",           // any other command
		"s1 LOGIN {5000+}\r\n",            // before login
		"s1 APPEND INBOX {99999999+}\r\n", // beyond anything we would discard
	} {
		r := e.rawTLS()
		if !strings.Contains(cmd, "LOGIN") {
			r.login()
			r.send("s0 SELECT INBOX\r\n")
			r.until("s0 OK")
		}
		r.sendLax(cmd + literalWithCommands() + "\r\n")
		lines, closed := r.closed()
		if !closed {
			t.Errorf("%q: connection left open: %q", cmd, lines)
		}
		for _, l := range lines {
			if strings.HasPrefix(l, "X1") || strings.HasPrefix(l, "X2") {
				t.Errorf("%q: literal content answered as a command: %q", cmd, l)
			}
		}
		if !mailboxExists(t, e, "Victim") || mailboxExists(t, e, "Injected") {
			t.Fatalf("%q: commands inside the literal were executed", cmd)
		}
	}
}

// TestLiteralRejectedByLibrary covers a literal of allowed size in a
// command the library refuses before reading it (a bad APPEND date): the
// guard must not let the library parse the literal as commands.
func TestLiteralRejectedByLibrary(t *testing.T) {
	e := newEnv(t)
	c := e.alice()
	if err := c.Create("Victim", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	r := e.rawTLS()
	r.login()
	payload := "Subject: x\r\n\r\nX1 DELETE Victim\r\nX2 CREATE Injected\r\n"
	r.sendLax("b1 APPEND INBOX \"not a date\" {" + strconv.Itoa(len(payload)) + "+}\r\n" + payload + "\r\n")
	lines, _ := r.closed()
	for _, l := range lines {
		if strings.HasPrefix(l, "X1") || strings.HasPrefix(l, "X2") {
			t.Errorf("literal content answered as a command: %q", l)
		}
	}
	time.Sleep(100 * time.Millisecond)
	if !mailboxExists(t, e, "Victim") || mailboxExists(t, e, "Injected") {
		t.Fatalf("commands inside the literal were executed: %q", lines)
	}
}

func TestOversizedSyncLiteral(t *testing.T) {
	e := newEnv(t)
	r := e.rawTLS()
	r.login()
	r.send("x1 SELECT {5000}\r\n")
	if l := r.expectPrefix("x1 "); !strings.HasPrefix(l, "x1 NO") && !strings.HasPrefix(l, "x1 BAD") {
		t.Fatalf("x1: %q", l)
	}
	r.send("x2 NOOP\r\n")
	if l := r.expectPrefix("x2 "); l != "x2 OK NOOP completed" {
		t.Fatalf("x2 after refused literal: %q", l)
	}
	// A literal within limits still works.
	r.send("x3 SELECT {5}\r\n")
	r.expectPrefix("+ ")
	r.send("INBOX\r\n")
	r.until("x3 OK")
}

func TestPreAuthHugeLiteral(t *testing.T) {
	e := newEnv(t)
	for _, conn := range []func() *rawConn{e.rawTLS, e.rawPlain} {
		r := conn()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		r.send("a1 LOGIN {400000000}\r\n")
		l := r.expectPrefix("a1 ")
		if !strings.HasPrefix(l, "a1 NO") {
			t.Errorf("pre-auth huge literal: %q", l)
		}
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		if grown := int64(after.TotalAlloc) - int64(before.TotalAlloc); grown > 50<<20 {
			t.Errorf("allocated %d bytes for an announced literal", grown)
		}
		// Still in step.
		r.send("a2 CAPABILITY\r\n")
		r.until("a2 OK")
	}
	// The non-synchronizing form closes the connection at once.
	r := e.rawTLS()
	r.send("a1 LOGIN {400000000+}\r\n")
	if _, closed := r.closed(); !closed {
		t.Error("pre-auth {400000000+} left the connection open")
	}
}

func TestStartTLS(t *testing.T) {
	e := newEnv(t)
	r := e.rawPlain()
	r.send("c1 CAPABILITY\r\n")
	caps := r.until("c1 OK")[0]
	if !strings.Contains(caps, "STARTTLS") || !strings.Contains(caps, "LOGINDISABLED") || strings.Contains(caps, "AUTH=") ||
		!strings.Contains(caps, "IMAP4rev1") || !strings.Contains(caps, "IMAP4rev2") {
		t.Errorf("pre-TLS capabilities: %q", caps)
	}
	r.send("c2 LOGIN " + alice + " " + alicePass + "\r\n")
	if l := r.expectPrefix("c2 "); !strings.HasPrefix(l, "c2 NO") {
		t.Errorf("LOGIN before STARTTLS: %q", l)
	}
	r.send("c3 AUTHENTICATE PLAIN AGFsaWNlQGV4YW1wbGUuY29tAGFsaWNlLXBhc3N3b3JkLTE=\r\n")
	if l := r.expectPrefix("c3 "); !strings.HasPrefix(l, "c3 NO") {
		t.Errorf("AUTHENTICATE before STARTTLS: %q", l)
	}
	r.send("c4 STARTTLS\r\n")
	r.expectPrefix("c4 OK")
	tc := tls.Client(r.c, e.clientTC)
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	r.c, r.br = tc, bufio.NewReader(tc)
	r.send("c5 CAPABILITY\r\n")
	caps = r.until("c5 OK")[0]
	if strings.Contains(caps, "LOGINDISABLED") || !strings.Contains(caps, "AUTH=PLAIN") || strings.Contains(caps, "STARTTLS") ||
		!strings.Contains(caps, "IMAP4rev1") || !strings.Contains(caps, "IMAP4rev2") {
		t.Errorf("post-TLS capabilities: %q", caps)
	}
	r.send("c6 LOGIN " + alice + " " + alicePass + "\r\n")
	r.until("c6 OK")

	// A command pipelined after STARTTLS in the same write is not run.
	r2 := e.rawPlain()
	r2.send("d1 STARTTLS\r\nd2 LOGIN " + alice + " " + alicePass + "\r\n")
	r2.expectPrefix("d1 OK")
	lines, closed := r2.closed()
	for _, l := range lines {
		if strings.HasPrefix(l, "d2") {
			t.Errorf("pipelined command answered: %q", l)
		}
	}
	if !closed {
		t.Error("connection with pipelined plaintext not closed")
	}
}

func TestAuthenticatePlainAndFailures(t *testing.T) {
	e := newEnv(t)
	r := e.rawTLS()
	r.send("a1 AUTHENTICATE PLAIN AGFsaWNlQGV4YW1wbGUuY29tAHdyb25n\r\n") // wrong password
	if l := r.until("a1 "); !strings.HasPrefix(l[len(l)-1], "a1 NO [AUTHENTICATIONFAILED]") {
		t.Errorf("wrong password: %q", l)
	}
	r.send("a2 AUTHENTICATE PLAIN AGFsaWNlQGV4YW1wbGUuY29tAGFsaWNlLXBhc3N3b3JkLTE=\r\n")
	if l := r.until("a2 "); !strings.HasPrefix(l[len(l)-1], "a2 OK") {
		t.Errorf("AUTHENTICATE PLAIN: %q", l)
	}
	r.send("a3 LOGIN x y\r\n")
	if l := r.until("a3 "); !strings.HasPrefix(l[len(l)-1], "a3 NO") && !strings.HasPrefix(l[len(l)-1], "a3 BAD") {
		t.Errorf("second login: %q", l)
	}
}

func TestExamineWritesOnTheWire(t *testing.T) {
	e := newEnv(t)
	c := e.alice()
	appendMsg(t, c, "INBOX", testMessage(1), &goimap.AppendOptions{Flags: []goimap.Flag{goimap.FlagDeleted}})
	r := e.rawTLS()
	r.login()
	r.send("e1 EXAMINE INBOX\r\n")
	if l := r.until("e1 "); !strings.Contains(l[len(l)-1], "[READ-ONLY]") {
		t.Errorf("EXAMINE: %q", l)
	}
	for _, cmd := range []string{"STORE 1 +FLAGS (\\Seen)", "UID STORE 1 -FLAGS (\\Deleted)", "EXPUNGE", "UID EXPUNGE 1", "MOVE 1 Trash"} {
		r.send("e2 " + cmd + "\r\n")
		if l := r.until("e2 "); !strings.HasPrefix(l[len(l)-1], "e2 NO") {
			t.Errorf("%s under EXAMINE: %q", cmd, l)
		}
	}
	r.send("e3 FETCH 1 (BODY[])\r\n")
	for _, l := range r.until("e3 ") {
		if strings.Contains(l, `\Seen`) {
			t.Errorf("FETCH BODY[] under EXAMINE reported \\Seen: %q", l)
		}
	}
	r.send("e4 CLOSE\r\n")
	r.until("e4 OK")
	msgs, _ := e.st.Messages(context.Background(), mustMailbox(t, e, "INBOX").ID)
	if len(msgs) != 1 || len(msgs[0].Flags) != 1 {
		t.Errorf("EXAMINE changed the mailbox: %+v", msgs)
	}
}

func TestLongLine(t *testing.T) {
	e := newEnv(t)
	r := e.rawTLS()
	r.login()
	// The server may hang up before it has read the whole line, and the
	// write then fails with a reset: that is the behaviour under test.
	r.sendLax("l1 NOOP " + strings.Repeat("a", 100000) + "\r\n")
	if _, closed := r.closed(); !closed {
		t.Error("100 KB command line did not end the connection")
	}
}

// TestLoginThrottled: IMAP logins go through the shared authenticator,
// so its failed-login throttling applies here as in SMTP: after enough
// failures from one address even the right password is refused, for LOGIN
// and AUTHENTICATE PLAIN alike.
func TestLoginThrottled(t *testing.T) {
	e := newEnvAuth(t, accounts.AuthOptions{
		Limits: accounts.Limits{IPFailures: 3},
		Sleep:  func(context.Context, time.Duration) error { return nil },
	})
	r := e.rawTLS()
	for i := 0; i < 3; i++ {
		r.send("t1 LOGIN " + alice + " wrong-password\r\n")
		if l := r.until("t1 "); !strings.HasPrefix(l[len(l)-1], "t1 NO [AUTHENTICATIONFAILED]") {
			t.Fatalf("wrong password %d: %q", i+1, l)
		}
	}
	r.send("t2 LOGIN " + alice + " " + alicePass + "\r\n")
	if l := r.until("t2 "); !strings.HasPrefix(l[len(l)-1], "t2 NO") || !strings.Contains(l[len(l)-1], "Too many failed logins") {
		t.Errorf("right password after the failure limit: %q", l)
	}
	r.send("t3 AUTHENTICATE PLAIN AGFsaWNlQGV4YW1wbGUuY29tAGFsaWNlLXBhc3N3b3JkLTE=\r\n")
	if l := r.until("t3 "); !strings.HasPrefix(l[len(l)-1], "t3 NO") || !strings.Contains(l[len(l)-1], "Too many failed logins") {
		t.Errorf("AUTHENTICATE PLAIN after the failure limit: %q", l)
	}
}
