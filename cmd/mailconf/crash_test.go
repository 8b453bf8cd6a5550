package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"mailconf/autoconfig/dnsrecords/dnstest"
	"mailconf/internal/testutil"
	"mailconf/mailserver/store"
)

// crashRounds is how many times the server is killed mid-stream.
const crashRounds = 4

// crashMsg is one message a test client tried to send.
type crashMsg struct {
	id   string // Message-ID without the angle brackets
	from string
	to   []string
	raw  []byte // exactly the bytes given to DATA, CRLF line endings
}

// crashLog collects what the clients sent and which messages got a 250.
// It lives in the test, not at package level.
type crashLog struct {
	mu    sync.Mutex
	sent  map[string]crashMsg
	acked []crashMsg
	// perRound counts acknowledgements per sender in the current round.
	perRound map[string]int
	errs     map[string]error
}

func (l *crashLog) attempt(m crashMsg) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sent[m.id] = m
}

func (l *crashLog) ack(sender string, m crashMsg) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.acked = append(l.acked, m)
	l.perRound[sender]++
}

func (l *crashLog) fail(sender string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.errs[sender] == nil {
		l.errs[sender] = err
	}
}

func (l *crashLog) newRound() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.perRound = map[string]int{}
	l.errs = map[string]error{}
}

func (l *crashLog) ackedBy(senders ...string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range senders {
		if l.perRound[s] == 0 {
			return false
		}
	}
	return true
}

func (l *crashLog) errors() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for s, err := range l.errs {
		fmt.Fprintf(&b, "  %s: %v\n", s, err)
	}
	return b.String()
}

// crashSender streams messages over one listener until the connection
// breaks (the server was killed) or ctx ends.
type crashSender struct {
	name    string
	addr    string
	from    string
	rcpts   [][]string // recipient sets to pick from
	connect func(ctx context.Context, addr string) (*smtp.Client, error)
	rng     *rand.Rand
	n       int
}

// crashAlphabet is what body lines are made of: printable ASCII without
// the angle brackets (so a body never looks like a Message-ID header) and
// every 8-bit byte. CR and LF only appear as CRLF line ends.
var crashAlphabet = func() []byte {
	var a []byte
	for c := byte(' '); c <= '~'; c++ {
		if c != '<' && c != '>' {
			a = append(a, c)
		}
	}
	for c := 0x80; c <= 0xff; c++ {
		a = append(a, byte(c))
	}
	return a
}()

func (s *crashSender) next(round int) crashMsg {
	s.n++
	to := s.rcpts[s.rng.IntN(len(s.rcpts))]
	id := fmt.Sprintf("crash-%d-%s-%d@client.test", round, s.name, s.n)
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: <%s>\r\nTo: %s\r\nSubject: crash round %d message %d\r\nMessage-ID: <%s>\r\n",
		s.from, strings.Join(to, ", "), round, s.n, id)
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	lines := 1 + s.rng.IntN(40)
	if s.rng.IntN(8) == 0 {
		lines += 200 // now and then a message of a few hundred KiB
	}
	for range lines {
		switch s.rng.IntN(10) {
		case 0:
			b.WriteString(".") // a lone dot must be dot-stuffed, not end DATA
		case 1:
			b.WriteString("..leading dots")
		case 2: // empty line
		default:
			n := s.rng.IntN(998) // RFC 5322 line limit without the CRLF
			for range n {
				b.WriteByte(crashAlphabet[s.rng.IntN(len(crashAlphabet))])
			}
		}
		b.WriteString("\r\n")
	}
	return crashMsg{id: id, from: s.from, to: to, raw: b.Bytes()}
}

func (s *crashSender) run(ctx context.Context, round int, log *crashLog) {
	c, err := s.connect(ctx, s.addr)
	if err != nil {
		log.fail(s.name, err)
		return
	}
	defer c.Close()
	for ctx.Err() == nil {
		m := s.next(round)
		log.attempt(m)
		if err := sendCrashMsg(c, m); err != nil {
			log.fail(s.name, fmt.Errorf("%s: %w", m.id, err))
			return
		}
		log.ack(s.name, m)
	}
}

// sendCrashMsg runs one transaction; nil means DATA was answered 250.
func sendCrashMsg(c *smtp.Client, m crashMsg) error {
	if err := c.Mail(m.from); err != nil {
		return fmt.Errorf("MAIL: %w", err)
	}
	for _, r := range m.to {
		if err := c.Rcpt(r); err != nil {
			return fmt.Errorf("RCPT %s: %w", r, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if _, err := w.Write(m.raw); err != nil {
		return fmt.Errorf("DATA write: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("end of DATA: %w", err)
	}
	return nil
}

// dialSMTP connects with a deadline that bounds the whole session, so a
// client can never hang the test.
func dialSMTP(ctx context.Context, addr string) (*smtp.Client, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if err := conn.SetDeadline(time.Now().Add(40 * time.Second)); err != nil {
		conn.Close()
		return nil, err
	}
	c, err := smtp.NewClient(conn, "mail.example.com")
	if err != nil {
		conn.Close()
		return nil, err
	}
	if err := c.Hello("client.test"); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func crashUserAdd(t *testing.T, cfgFile, addr, password string) {
	t.Helper()
	cmd := exec.Command(binary, "user", "add", addr, "--password-stdin", "--config", cfgFile)
	cmd.Env = append(os.Environ(), "MAILCONF_CONFIG=")
	cmd.Stdin = strings.NewReader(password + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mailconf user add %s: %v\n%s", addr, err, out)
	}
}

// TestCrashKeepsAcknowledgedMail kills `mailconf serve` with SIGKILL while
// clients stream mail into it over port 25 and authenticated submission,
// restarts it, and finally checks the store: every message that got its
// 250 is in each local recipient's INBOX and in the queue for each remote
// recipient, byte for byte and exactly once.
func TestCrashKeepsAcknowledgedMail(t *testing.T) {
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	ca := testutil.NewCA(t)
	certFile, keyFile := installCert(t, ca, dir, "mail.example.com", "127.0.0.1")

	// Remote mail must stay queued and never leave the machine: the remote
	// domain's MX is loopback port 25, where nothing may listen.
	if c, err := net.DialTimeout("tcp", "127.0.0.1:25", 2*time.Second); err == nil {
		c.Close()
		t.Fatal("something listens on 127.0.0.1:25; this test needs that port closed so relayed mail stays in the queue")
	}
	dns := dnstest.Start(t, dnstest.Config{Zone: `
remote.test. 300 IN MX 10 mx.remote.test.
mx.remote.test. 300 IN A 127.0.0.1
`})

	httpAddr, smtpAddr := testutil.FreeAddr(t), testutil.FreeAddr(t)
	subAddr, subsAddr := testutil.FreeAddr(t), testutil.FreeAddr(t)
	imapsAddr, pop3sAddr := testutil.FreeAddr(t), testutil.FreeAddr(t)
	cfgFile := filepath.Join(dir, "mailconf.toml")
	writeFile(t, cfgFile, fmt.Sprintf(`data_dir = %q
hostname = "mail.example.com"
[tls]
cert = %q
key = %q
[listen]
http = %q
smtp = %q
submission = %q
submissions = %q
imaps = %q
pop3s = %q
[dns]
resolver = %q
[[domain]]
name = "example.com"
`, dataDir, certFile, keyFile, httpAddr, smtpAddr, subAddr, subsAddr, imapsAddr, pop3sAddr, dns.Addr))

	password := fmt.Sprintf("crash-%x", rand.Uint64())
	crashUserAdd(t, cfgFile, "a@example.com", password)
	crashUserAdd(t, cfgFile, "b@example.com", password)

	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	mx := &crashSender{
		name: "mx", addr: smtpAddr, from: "sender@remote.test",
		rcpts:   [][]string{{"a@example.com"}, {"b@example.com"}, {"a@example.com", "b@example.com"}},
		connect: dialSMTP,
		rng:     rand.New(rand.NewPCG(seed, 2)),
	}
	sub := &crashSender{
		name: "submission", addr: subAddr, from: "b@example.com",
		rcpts: [][]string{{"a@example.com"}, {"x@remote.test"}, {"a@example.com", "y@remote.test"}},
		connect: func(ctx context.Context, addr string) (*smtp.Client, error) {
			c, err := dialSMTP(ctx, addr)
			if err != nil {
				return nil, err
			}
			if err := c.StartTLS(&tls.Config{RootCAs: ca.Pool, ServerName: "mail.example.com"}); err != nil {
				c.Close()
				return nil, fmt.Errorf("STARTTLS: %w", err)
			}
			if err := c.Auth(smtp.PlainAuth("", "b@example.com", password, "mail.example.com")); err != nil {
				c.Close()
				return nil, fmt.Errorf("AUTH: %w", err)
			}
			return c, nil
		},
		rng: rand.New(rand.NewPCG(seed, 3)),
	}
	senders := []*crashSender{mx, sub}
	names := []string{mx.name, sub.name}

	log := &crashLog{sent: map[string]crashMsg{}}
	for round := 1; round <= crashRounds; round++ {
		log.newRound()
		d := startDaemon(t, dir, "--config", cfgFile)
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for _, s := range senders {
			wg.Go(func() { s.run(ctx, round, log) })
		}
		// Kill only once both paths are carrying traffic, then at a random
		// moment of the stream.
		deadline := time.Now().Add(20 * time.Second)
		for !log.ackedBy(names...) {
			if time.Now().After(deadline) {
				cancel()
				t.Fatalf("round %d: no message acknowledged on every listener within 20 s\nclient errors:\n%s\nserver stderr:\n%s",
					round, log.errors(), d.stderr)
			}
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(time.Duration(50+rng.IntN(351)) * time.Millisecond)
		if err := d.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		d.wait()
		cancel()
		wg.Wait()
		t.Logf("round %d: killed; client errors (expected after the kill):\n%s", round, log.errors())
	}

	// A clean start after the last crash must still work and stop cleanly.
	log.newRound()
	d := startDaemon(t, dir, "--config", cfgFile)
	for _, s := range senders {
		c, err := s.connect(context.Background(), s.addr)
		if err != nil {
			t.Fatalf("%s after restart: %v\n%s", s.name, err, d.stderr)
		}
		m := s.next(crashRounds + 1)
		log.attempt(m)
		if err := sendCrashMsg(c, m); err != nil {
			t.Fatalf("%s after restart: %v\n%s", s.name, err, d.stderr)
		}
		log.ack(s.name, m)
		c.Quit()
	}
	d.stop(t)

	checkCrashStore(t, dataDir, log)
}

var crashMessageID = regexp.MustCompile(`(?m)^Message-ID: <([^>\r\n]+)>\r$`)

// checkCrashStore opens the store the killed servers left behind and
// compares it with what the clients were told.
func checkCrashStore(t *testing.T, dataDir string, log *crashLog) {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, dataDir, store.Options{})
	if err != nil {
		t.Fatalf("open store after the crashes: %v", err)
	}
	defer st.Close()

	// found maps "message id|place" to the stored copies; a place is a
	// local address (its INBOX) or "queue:" plus a remote recipient.
	found := map[string][][]byte{}
	add := func(place string, raw []byte) {
		m := crashMessageID.FindSubmatch(raw)
		if m == nil {
			return // not one of ours (nothing else should be there, but it is not our business)
		}
		k := string(m[1]) + "|" + place
		found[k] = append(found[k], raw)
	}
	for _, addr := range []string{"a@example.com", "b@example.com"} {
		acct, err := st.AccountByAddress(ctx, addr)
		if err != nil {
			t.Fatal(err)
		}
		mb, err := st.Mailbox(ctx, acct.ID, store.Inbox)
		if err != nil {
			t.Fatal(err)
		}
		msgs, err := st.Messages(ctx, mb.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, mi := range msgs {
			raw, err := st.ReadMessage(ctx, mb.ID, mi.UID)
			if err != nil {
				t.Fatalf("%s INBOX UID %d: %v", addr, mi.UID, err)
			}
			if int64(len(raw)) != mi.Size {
				t.Errorf("%s INBOX UID %d: %d bytes stored, size says %d", addr, mi.UID, len(raw), mi.Size)
			}
			add(addr, raw)
		}
	}
	entries, err := st.QueueList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		body, err := st.OpenQueued(ctx, e.ID)
		if err != nil {
			t.Fatalf("queue entry %d: %v", e.ID, err)
		}
		raw, err := io.ReadAll(body)
		body.Close()
		if err != nil {
			t.Fatalf("queue entry %d: %v", e.ID, err)
		}
		for _, r := range e.Recipients {
			if r.Status == store.RcptDelivered {
				t.Errorf("queue entry %d: %s marked delivered, but nothing listens at its MX", e.ID, r.Address)
			}
			add("queue:"+r.Address, raw)
		}
	}

	// Whatever is stored is whole: the server's own header block, then
	// exactly the client's bytes. Unacknowledged messages may be missing,
	// but never truncated, altered or doubled.
	for k, copies := range found {
		id, place, _ := strings.Cut(k, "|")
		if len(copies) > 1 {
			t.Errorf("%s stored %d times for %s", id, len(copies), place)
		}
		m, ok := log.sent[id]
		if !ok {
			t.Errorf("%s for %s: a Message-ID no client sent", id, place)
			continue
		}
		for _, raw := range copies {
			checkCrashCopy(t, id, place, raw, m.raw)
		}
	}

	var local, remote int
	for _, m := range log.acked {
		for _, r := range m.to {
			place := r
			if strings.HasSuffix(r, "@remote.test") {
				place, remote = "queue:"+r, remote+1
			} else {
				local++
			}
			if len(found[m.id+"|"+place]) == 0 {
				t.Errorf("%s got 250 but is missing for %s", m.id, place)
			}
		}
	}
	t.Logf("%d messages sent, %d acknowledged (%d local and %d remote deliveries), %d queue entries",
		len(log.sent), len(log.acked), local, remote, len(entries))
	if local == 0 || remote == 0 {
		t.Errorf("the stream exercised too little: %d local, %d remote acknowledged deliveries", local, remote)
	}
}

// checkCrashCopy compares one stored copy with what the client sent.
func checkCrashCopy(t *testing.T, id, place string, stored, sent []byte) {
	t.Helper()
	if !bytes.HasSuffix(stored, sent) {
		n := 0
		for n < len(stored) && n < len(sent) && stored[len(stored)-1-n] == sent[len(sent)-1-n] {
			n++
		}
		t.Errorf("%s for %s: stored %d bytes do not end with the %d bytes sent (common tail %d bytes)",
			id, place, len(stored), len(sent), n)
		return
	}
	prefix := stored[:len(stored)-len(sent)]
	if !bytes.HasPrefix(prefix, []byte("Received: from ")) && !bytes.HasPrefix(prefix, []byte("DKIM-Signature: ")) ||
		!bytes.Contains(prefix, []byte("Received: from ")) || !bytes.HasSuffix(prefix, []byte("\r\n")) ||
		bytes.Contains(prefix, []byte("\r\n\r\n")) {
		t.Errorf("%s for %s: unexpected header block before the sent bytes:\n%q", id, place, prefix)
	}
}
