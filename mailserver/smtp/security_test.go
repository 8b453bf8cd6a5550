package smtp

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// The end-of-data variants of the SMTP smuggling research
// (reference/mailserver.md §5.1), each followed by a complete second
// transaction that a vulnerable server would run.
//
// oneMessage marks the one sequence that is not refused: go-smtp v0.25.1's
// dot-unstuffing drops ".\r" at the start of a line when no LF follows, so
// the bare CR never reaches the session. The result is still a single
// message whose content holds the would-be second transaction as text.
var smuggling = []struct {
	name, eod  string
	oneMessage bool
}{
	{"LF.LF", "\n.\n", false},
	{"LF.CRLF", "\n.\r\n", false},
	{"CRLF.LF", "\r\n.\n", false},
	{"CR.CRLF", "\r.\r\n", false},
	{"CRLF.CR", "\r\n.\r", true},
	{"CRCRLF.CRLF", "\r\r\n.\r\n", false},
	{"CR.CR", "\r.\r", false},
}

func smugglePayload(eod, rcpt2 string) string {
	return "Subject: first\r\n\r\nfirst message" + eod +
		"MAIL FROM:<ceo@example.com>\r\nRCPT TO:<" + rcpt2 + ">\r\nDATA\r\n" +
		"Subject: smuggled\r\n\r\nspoofed\r\n.\r\n"
}

func TestSmugglingMX(t *testing.T) {
	for _, tc := range smuggling {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, nil)
			c := dialRaw(t, w.mxAddr, false, nil)
			c.cmd("EHLO client.test", 250)
			c.cmd("MAIL FROM:<sender@remote.example>", 250)
			c.cmd("RCPT TO:<alice@example.com>", 250)
			c.cmd("DATA", 354)
			c.send(smugglePayload(tc.eod, bob) + "QUIT\r\n")
			checkSmuggling(t, c, w, tc.oneMessage)
		})
	}
}

func TestSmugglingSubmission(t *testing.T) {
	for _, tc := range smuggling {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, nil)
			c := w.loggedIn587(t, alice, alicePass)
			// Everything pipelined in one write, as an attacker would.
			c.send("MAIL FROM:<alice@example.com>\r\nRCPT TO:<someone@remote.example>\r\nDATA\r\n")
			c.expect(250)
			c.expect(250)
			c.expect(354)
			c.send(smugglePayload(tc.eod, "victim@remote.example") + "QUIT\r\n")
			checkSmuggling(t, c, w, tc.oneMessage)
		})
	}
}

// checkSmuggling wants at most one stored message and never the smuggled
// transaction on its own: either 550 5.5.2 and a closed connection with
// nothing stored, or (oneMessage) a single 250 for a single message that
// carries the attempted second transaction as plain content.
func checkSmuggling(t *testing.T, c *raw, w *world, oneMessage bool) {
	t.Helper()
	rest, closed := c.closedByServer()
	if !closed {
		t.Fatalf("server neither answered nor closed; read %q", rest)
	}
	msgs := w.sink.all()
	if len(msgs) > 1 {
		t.Fatalf("smuggling produced %d messages", len(msgs))
	}
	if !oneMessage {
		if len(msgs) != 0 {
			t.Errorf("message with bare CR/LF stored: %q", msgs[0].data)
		}
		if !strings.HasPrefix(rest, "550 5.5.2") || strings.Count(rest, "\r\n") != 1 {
			t.Errorf("replies after payload = %q, want one 550 5.5.2 then close", rest)
		}
		return
	}
	if len(msgs) != 1 || strings.Count(rest, "250 ") != 1 {
		t.Fatalf("want exactly one message and one 250, got %d messages, replies %q", len(msgs), rest)
	}
	_, body := splitReceived(t, msgs[0].data)
	if !strings.HasPrefix(string(body), "Subject: first\r\n") || !strings.Contains(string(body), "spoofed") {
		t.Errorf("stored message is not the first one with the payload as content: %q", body)
	}
	var nl newlineCheck
	if !nl.ok(body) {
		t.Errorf("stored message has bare CR/LF: %q", body)
	}
}

func TestBareNewlineRejectedAndNothingStored(t *testing.T) {
	for name, body := range map[string]string{
		"bare LF in header": "Subject: x\nX: y\r\n\r\nbody\r\n.\r\n",
		"bare CR in body":   "Subject: x\r\n\r\nbo\rdy\r\n.\r\n",
		"bare LF at start":  "\nSubject: x\r\n\r\nbody\r\n.\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			w := newWorld(t, nil)
			c := dialRaw(t, w.mxAddr, false, nil)
			c.cmd("EHLO client.test", 250)
			c.cmd("MAIL FROM:<sender@remote.example>", 250)
			c.cmd("RCPT TO:<alice@example.com>", 250)
			c.cmd("DATA", 354)
			c.send(body)
			rest, closed := c.closedByServer()
			if !closed || !strings.HasPrefix(rest, "550 5.5.2") {
				t.Errorf("reply %q closed=%v", rest, closed)
			}
			if n := len(w.sink.all()); n != 0 {
				t.Errorf("stored %d messages", n)
			}
		})
	}
}

// BDAT (CHUNKING, always advertised by go-smtp) carries raw bytes; bare
// newlines are refused there too.
func TestBDATBareNewline(t *testing.T) {
	w := newWorld(t, nil)
	c := dialRaw(t, w.mxAddr, false, nil)
	c.cmd("EHLO client.test", 250)
	c.cmd("MAIL FROM:<sender@remote.example>", 250)
	c.cmd("RCPT TO:<alice@example.com>", 250)
	good := "Subject: chunked\r\n\r\nok\r\n"
	c.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(good), good))
	c.expect(250)
	c.cmd("MAIL FROM:<sender@remote.example>", 250)
	c.cmd("RCPT TO:<alice@example.com>", 250)
	bad := "Subject: chunked\n\nbad\n"
	c.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(bad), bad))
	rest, closed := c.closedByServer()
	if !closed || !strings.Contains(rest, "550 5.5.2") {
		t.Errorf("BDAT with bare LF: %q closed=%v", rest, closed)
	}
	msgs := w.sink.all()
	if len(msgs) != 1 || !strings.HasSuffix(string(msgs[0].data), good) {
		t.Errorf("stored %+v", msgs)
	}
}

func TestSTARTTLSInjection(t *testing.T) {
	for name, addr := range map[string]func(*world) string{
		"mx":         func(w *world) string { return w.mxAddr },
		"submission": func(w *world) string { return w.subAddr },
	} {
		t.Run(name, func(t *testing.T) {
			w := newWorld(t, nil)
			c := dialRaw(t, addr(w), false, nil)
			c.cmd("EHLO client.test", 250)
			// One write: the commands after STARTTLS are plaintext a
			// man in the middle could have added.
			c.send("STARTTLS\r\nMAIL FROM:<sender@remote.example>\r\nNOOP\r\n")
			c.expect(220)
			c.startTLS(w.clientTLS)
			// The first reply inside TLS must answer our EHLO, not the
			// injected commands.
			ehlo := c.cmd("EHLO client.test", 250)
			if !strings.Contains(ehlo, "Hello client.test") {
				t.Fatalf("first reply inside TLS is not the EHLO answer: %q", ehlo)
			}
			c.send("RCPT TO:<alice@example.com>\r\n")
			if r := c.reply(); !strings.HasPrefix(r, "502 5.5.1") {
				t.Errorf("injected MAIL FROM survived STARTTLS: RCPT = %q", r)
			}
			c.send("NOOP\r\n")
			if r := c.reply(); !strings.HasPrefix(r, "250 2.0.0") {
				t.Errorf("NOOP = %q", r)
			}
			c.send("QUIT\r\n")
			if r := c.reply(); !strings.HasPrefix(r, "221") {
				t.Errorf("QUIT = %q (an extra reply means an injected command ran)", r)
			}
		})
	}
}

func TestSizeLimit(t *testing.T) {
	w := newWorld(t, func(c *Config) { c.MaxMessageBytes = 1000 })
	c := dialRaw(t, w.mxAddr, false, nil)
	ehlo := c.cmd("EHLO client.test", 250)
	if !strings.Contains(ehlo, "SIZE 1000\r\n") {
		t.Errorf("EHLO does not announce SIZE 1000:\n%s", ehlo)
	}
	c.send("MAIL FROM:<sender@remote.example> SIZE=1001\r\n")
	if r := c.reply(); !strings.HasPrefix(r, "552 5.3.4") {
		t.Errorf("MAIL SIZE over limit = %q", r)
	}
	// An honest SIZE, a dishonest body.
	c.cmd("MAIL FROM:<sender@remote.example> SIZE=500", 250)
	c.cmd("RCPT TO:<alice@example.com>", 250)
	c.cmd("DATA", 354)
	big := "Subject: big\r\n\r\n" + strings.Repeat(strings.Repeat("y", 78)+"\r\n", 30)
	c.send(big + ".\r\n")
	if r := c.reply(); !strings.HasPrefix(r, "552 5.3.4") {
		t.Errorf("oversized body = %q", r)
	}
	// The session is still in step: a small message goes through.
	c.cmd("MAIL FROM:<sender@remote.example>", 250)
	c.cmd("RCPT TO:<alice@example.com>", 250)
	c.cmd("DATA", 354)
	small := "Subject: small\r\n\r\n" + strings.Repeat("z", 900) + "\r\n"
	c.send(small + ".\r\n")
	c.expect(250)
	msgs := w.sink.all()
	if len(msgs) != 1 || !strings.HasSuffix(string(msgs[0].data), small) {
		t.Fatalf("stored %d messages", len(msgs))
	}
}

func TestTooManyRecipients(t *testing.T) {
	w := newWorld(t, func(c *Config) { c.MaxRecipients = 3 })
	c := w.loggedIn587(t, alice, alicePass)
	c.cmd("MAIL FROM:<alice@example.com>", 250)
	for i := 0; i < 3; i++ {
		c.cmd(fmt.Sprintf("RCPT TO:<r%d@remote.example>", i), 250)
	}
	c.send("RCPT TO:<r3@remote.example>\r\n")
	if r := c.reply(); !strings.HasPrefix(r, "452 4.5.3") {
		t.Errorf("fourth RCPT = %q", r)
	}
	c.cmd("DATA", 354)
	c.send("Subject: x\r\n\r\nx\r\n.\r\n")
	c.expect(250)
	if msgs := w.sink.all(); len(msgs) != 1 || len(msgs[0].env.To) != 3 {
		t.Errorf("stored %+v", msgs)
	}
}

func TestLineTooLong(t *testing.T) {
	w := newWorld(t, func(c *Config) { c.MaxLineLength = 200 })
	c := dialRaw(t, w.mxAddr, false, nil)
	c.cmd("EHLO client.test", 250)
	c.cmd("MAIL FROM:<sender@remote.example>", 250)
	c.cmd("RCPT TO:<alice@example.com>", 250)
	c.cmd("DATA", 354)
	c.send("Subject: long\r\n\r\n" + strings.Repeat("w", 300) + "\r\n.\r\n")
	rest, closed := c.closedByServer()
	if !closed || !strings.HasPrefix(rest, "500 5.5.2") {
		t.Errorf("long line: %q closed=%v", rest, closed)
	}
	if n := len(w.sink.all()); n != 0 {
		t.Errorf("stored %d", n)
	}
	// A long command line closes the connection too.
	c2 := dialRaw(t, w.mxAddr, false, nil)
	c2.send("EHLO " + strings.Repeat("h", 300) + "\r\n")
	if rest, closed := c2.closedByServer(); !closed || !strings.HasPrefix(rest, "500") {
		t.Errorf("long command: %q closed=%v", rest, closed)
	}
}

func TestPerIPConnectionLimit(t *testing.T) {
	w := newWorld(t, func(c *Config) { c.MaxConnsPerIP = 2 })
	a := dialRaw(t, w.mxAddr, false, nil)
	dialRaw(t, w.mxAddr, false, nil)
	third, err := net.Dial("tcp", w.mxAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	r := &raw{t: t, conn: third, r: newReader(third)}
	rest, closed := r.closedByServer()
	if !closed || !strings.HasPrefix(rest, "421 4.7.0") {
		t.Fatalf("third connection: %q closed=%v", rest, closed)
	}
	// The limit is per listener and per address: 465 still answers.
	dialRaw(t, w.subsAddr, true, w.clientTLS)
	// After one closes, a new connection is served again.
	a.cmd("QUIT", 221)
	deadline := time.Now().Add(5 * time.Second)
	for {
		conn, err := net.Dial("tcp", w.mxAddr)
		if err != nil {
			t.Fatal(err)
		}
		line, _ := newReader(conn).ReadString('\n')
		conn.Close()
		if strings.HasPrefix(line, "220 ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot never freed: %q", line)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Refusals on implicit TLS just close.
	w2 := newWorld(t, func(c *Config) { c.MaxConnsPerIP = 1 })
	dialRaw(t, w2.subsAddr, true, w2.clientTLS)
	conn, err := net.Dial("tcp", w2.subsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := conn.Read(make([]byte, 10)); err == nil || n != 0 {
		t.Errorf("465 over limit: read %d bytes, err %v", n, err)
	}
}

func TestIdleTimeouts(t *testing.T) {
	w := newWorld(t, func(c *Config) { c.ReadTimeout = 300 * time.Millisecond })
	c := dialRaw(t, w.mxAddr, false, nil)
	c.cmd("EHLO client.test", 250)
	start := time.Now()
	rest, closed := c.closedByServer()
	if !closed || !strings.HasPrefix(rest, "421 4.4.2") {
		t.Errorf("idle command phase: %q closed=%v", rest, closed)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("idle connection lived %v", d)
	}

	// DATA: steady trickle within the idle time is fine, a stall is not.
	c = dialRaw(t, w.mxAddr, false, nil)
	c.cmd("EHLO client.test", 250)
	c.cmd("MAIL FROM:<sender@remote.example>", 250)
	c.cmd("RCPT TO:<alice@example.com>", 250)
	c.cmd("DATA", 354)
	c.send("Subject: slow\r\n\r\n")
	for i := 0; i < 5; i++ {
		time.Sleep(150 * time.Millisecond)
		c.send("line\r\n")
	}
	c.send(".\r\n")
	c.expect(250)
	c.cmd("MAIL FROM:<sender@remote.example>", 250)
	c.cmd("RCPT TO:<alice@example.com>", 250)
	c.cmd("DATA", 354)
	c.send("Subject: stalled\r\n\r\nhalf")
	rest, closed = c.closedByServer()
	if !closed || !strings.HasPrefix(rest, "421 4.4.2") {
		t.Errorf("stalled DATA: %q closed=%v", rest, closed)
	}
	if msgs := w.sink.all(); len(msgs) != 1 || !strings.Contains(string(msgs[0].data), "Subject: slow") {
		t.Errorf("stored %d messages", len(msgs))
	}
}

func TestBackendFailuresAreTemporary(t *testing.T) {
	w := newWorld(t, nil)
	c := dialRaw(t, w.mxAddr, false, nil)
	c.cmd("EHLO client.test", 250)
	c.cmd("MAIL FROM:<sender@remote.example>", 250)
	w.rcpts.mu.Lock()
	w.rcpts.fail = true
	w.rcpts.mu.Unlock()
	if r := c.cmd("RCPT TO:<alice@example.com>", 451); strings.Contains(r, "fire") {
		t.Errorf("lookup error leaked: %q", r)
	}
	w.rcpts.mu.Lock()
	w.rcpts.fail = false
	w.rcpts.mu.Unlock()
	c.cmd("RCPT TO:<alice@example.com>", 250)
	w.sink.mu.Lock()
	w.sink.fail = true
	w.sink.mu.Unlock()
	c.cmd("DATA", 354)
	c.send("Subject: x\r\n\r\nx\r\n.\r\n")
	if r := c.expect(451); !strings.HasPrefix(r, "451 4.3.0") || strings.Contains(r, "space") {
		t.Errorf("store failure = %q", r)
	}
}

func TestShutdownDrains(t *testing.T) {
	w := newWorld(t, nil)
	idle := dialRaw(t, w.mxAddr, false, nil)
	idle.cmd("EHLO idle.test", 250)
	busy := dialRaw(t, w.mxAddr, false, nil)
	busy.cmd("EHLO busy.test", 250)
	busy.cmd("MAIL FROM:<sender@remote.example>", 250)
	busy.cmd("RCPT TO:<alice@example.com>", 250)
	busy.cmd("DATA", 354)
	busy.send("Subject: in flight\r\n\r\nfirst half\r\n")
	time.Sleep(100 * time.Millisecond) // the server is inside Data now

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- w.mx.Shutdown(ctx)
	}()
	if rest, closed := idle.closedByServer(); !closed || !strings.HasPrefix(rest, "421") {
		t.Errorf("idle session at shutdown: %q closed=%v", rest, closed)
	}
	select {
	case err := <-done:
		t.Fatalf("shutdown returned during a DATA transfer: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	busy.send("second half\r\n.\r\n")
	busy.expect(250)
	if rest, closed := busy.closedByServer(); !closed || !strings.HasPrefix(rest, "421") {
		t.Errorf("busy session after its message: %q closed=%v", rest, closed)
	}
	if err := <-done; err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if msgs := w.sink.all(); len(msgs) != 1 || !strings.HasSuffix(string(msgs[0].data), "second half\r\n") {
		t.Errorf("in-flight message lost: %+v", msgs)
	}
	if _, err := net.DialTimeout("tcp", w.mxAddr, time.Second); err == nil {
		t.Error("listener still accepts after shutdown")
	}
}
