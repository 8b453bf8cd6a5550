package delivery

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/smtp"
	"net/textproto"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	msgdkim "github.com/emersion/go-msgauth/dkim"

	"mailconf/config"
	"mailconf/internal/testutil"
	"mailconf/mailserver/accounts"
	"mailconf/mailserver/dkim"
	mailsmtp "mailconf/mailserver/smtp"
	"mailconf/mailserver/store"
)

const (
	alicePass = "alice-secret-pw"
	bobPass   = "bob-secret-pw1"
)

type fixture struct {
	cfg      *config.Config
	st       *store.Store
	keys     *dkim.Keys
	wakes    atomic.Int32
	mxAddr   string
	subAddr  string
	clientTC *tls.Config
	alice    store.Account
	bob      store.Account
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	cfg, err := config.Parse("test.toml", []byte(fmt.Sprintf(`
data_dir = %q
hostname = "mail.example.test"
[listen]
smtp = "127.0.0.1:2525"
submission = "127.0.0.1:2587"
imaps = "127.0.0.1:2993"
[[domain]]
name = "example.test"
`, dir)))
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &fixture{cfg: cfg, st: st}
	mgr := accounts.NewManager(st, cfg)
	if f.alice, err = mgr.Add(ctx, "alice@example.test", alicePass); err != nil {
		t.Fatal(err)
	}
	if f.bob, err = mgr.Add(ctx, "bob@example.test", bobPass); err != nil {
		t.Fatal(err)
	}
	if f.keys, err = dkim.Load(cfg); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	d := New(st, cfg, Options{DKIM: f.keys, Wake: func() { f.wakes.Add(1) }, Logger: log})

	ca := testutil.NewCA(t)
	leaf := ca.Issue(t, []string{"mail.example.test"}, time.Time{}, time.Time{})
	f.clientTC = &tls.Config{RootCAs: ca.Pool, ServerName: "mail.example.test"}
	scfg := mailsmtp.Config{
		Hostname: "mail.example.test",
		TLS:      &tls.Config{Certificates: []tls.Certificate{leaf.Cert}},
		Logger:   log,
	}
	mx, err := mailsmtp.NewMX(scfg, d, d)
	if err != nil {
		t.Fatal(err)
	}
	auth := Auth{accounts.NewAuthenticator(st, cfg, accounts.AuthOptions{Logger: log})}
	sub, err := mailsmtp.NewSubmission(scfg, auth, d, d, false)
	if err != nil {
		t.Fatal(err)
	}
	f.mxAddr = serve(t, mx)
	f.subAddr = serve(t, sub)
	return f
}

func serve(t *testing.T, s *mailsmtp.Server) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
		<-done
	})
	return ln.Addr().String()
}

func (f *fixture) submitClient(t *testing.T) *smtp.Client {
	t.Helper()
	conn, err := net.Dial("tcp", f.subAddr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := smtp.NewClient(conn, "mail.example.test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.StartTLS(f.clientTC); err != nil {
		t.Fatal(err)
	}
	if err := c.Auth(smtp.PlainAuth("", "alice@example.test", alicePass, "mail.example.test")); err != nil {
		t.Fatal(err)
	}
	return c
}

func send(t *testing.T, c *smtp.Client, from string, to []string, msg string) {
	t.Helper()
	if err := c.Mail(from); err != nil {
		t.Fatal(err)
	}
	for _, r := range to {
		if err := c.Rcpt(r); err != nil {
			t.Fatalf("RCPT %s: %v", r, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) inbox(t *testing.T, acct store.Account) [][]byte {
	t.Helper()
	ctx := context.Background()
	mb, err := f.st.Mailbox(ctx, acct.ID, store.Inbox)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := f.st.Messages(ctx, mb.ID)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, m := range msgs {
		b, err := f.st.ReadMessage(ctx, mb.ID, m.UID)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

const body = "From: Alice <alice@example.test>\r\nTo: bob@example.test, carol@remote.test\r\n" +
	"Subject: routing\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <r1@example.test>\r\n\r\nhello\r\n"

func TestSubmissionLocalAndRemoteInOneMessage(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c := f.submitClient(t)
	send(t, c, "alice@example.test", []string{"bob@example.test", "carol@remote.test", "Dave@Remote.Test"}, body)

	got := f.inbox(t, f.bob)
	if len(got) != 1 {
		t.Fatalf("bob has %d messages, want 1", len(got))
	}
	if !bytes.HasSuffix(got[0], []byte(body)) {
		t.Fatalf("stored message does not end with the submitted bytes:\n%s", got[0])
	}
	q, err := f.st.QueueList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(q) != 1 {
		t.Fatalf("queue holds %d entries, want 1", len(q))
	}
	if q[0].Sender != "alice@example.test" || len(q[0].Pending()) != 2 {
		t.Fatalf("queue entry: %+v", q[0])
	}
	if f.wakes.Load() != 1 {
		t.Errorf("queue woken %d times, want 1", f.wakes.Load())
	}
	b, err := f.st.OpenQueued(ctx, q[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var queued bytes.Buffer
	if _, err := queued.ReadFrom(b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(queued.Bytes(), got[0]) {
		t.Error("the queued body differs from the delivered one")
	}

	// DKIM: signed by example.test, verifiable with the published key.
	txt, err := f.keys.TXTRecord("example.test")
	if err != nil {
		t.Fatal(err)
	}
	vs, err := msgdkim.VerifyWithOptions(bytes.NewReader(got[0]), &msgdkim.VerifyOptions{
		LookupTXT: func(name string) ([]string, error) {
			if name == "mailconf._domainkey.example.test" {
				return []string{txt}, nil
			}
			return nil, fmt.Errorf("no TXT at %s", name)
		},
	})
	if err != nil || len(vs) != 1 || vs[0].Err != nil {
		t.Fatalf("DKIM verification: %v %+v", err, vs)
	}
}

func TestSubmissionUnknownLocalRecipient(t *testing.T) {
	f := newFixture(t)
	c := f.submitClient(t)
	if err := c.Mail("alice@example.test"); err != nil {
		t.Fatal(err)
	}
	err := c.Rcpt("nobody@example.test")
	var te *textproto.Error
	if !errors.As(err, &te) || te.Code != 550 || !strings.HasPrefix(te.Msg, "5.1.1") {
		t.Fatalf("RCPT to a missing local mailbox: %v, want 550 5.1.1", err)
	}
}

func TestMXDeliversLocallyOnlyAndDoesNotSign(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c, err := smtp.Dial(f.mxAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail("someone@elsewhere.test"); err != nil {
		t.Fatal(err)
	}
	err = c.Rcpt("carol@remote.test")
	var te *textproto.Error
	if !errors.As(err, &te) || te.Code != 554 {
		t.Fatalf("relay via MX: %v, want 554", err)
	}
	if err := c.Rcpt("nobody@example.test"); !errors.As(err, &te) || te.Code != 550 {
		t.Fatalf("unknown user via MX: %v, want 550", err)
	}
	msg := "From: someone@elsewhere.test\r\nSubject: in\r\n\r\nhi\r\n"
	send(t, c, "someone@elsewhere.test", []string{"BOB@example.test"}, msg)
	got := f.inbox(t, f.bob)
	if len(got) != 1 || !bytes.HasSuffix(got[0], []byte(msg)) {
		t.Fatalf("bob's INBOX: %q", got)
	}
	if bytes.Contains(got[0], []byte("DKIM-Signature")) {
		t.Error("inbound mail was DKIM-signed")
	}
	if n, _ := f.st.QueueSize(ctx); n != 0 || f.wakes.Load() != 0 {
		t.Errorf("inbound mail queued (%d) or woke the queue (%d)", n, f.wakes.Load())
	}
}

func TestAcceptRefusesRelayFromMXAndVanishedAccounts(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	d := New(f.st, f.cfg, Options{Logger: slog.New(slog.DiscardHandler)})
	err := d.Accept(ctx, mailsmtp.Envelope{ID: "x", From: "a@b.test", To: []string{"c@remote.test"}}, []byte("Subject: x\r\n\r\nx\r\n"))
	if err == nil {
		t.Fatal("MX envelope with a remote recipient was accepted")
	}
	err = d.Accept(ctx, mailsmtp.Envelope{ID: "y", From: "a@b.test", To: []string{"gone@example.test"}}, []byte("Subject: x\r\n\r\nx\r\n"))
	if !errors.Is(err, ErrNoRecipients) {
		t.Fatalf("only a vanished recipient: %v, want ErrNoRecipients", err)
	}
	if n, _ := f.st.QueueSize(ctx); n != 0 {
		t.Errorf("queue size %d after refused messages", n)
	}
	served, exists, err := d.Lookup(ctx, "bob@example.test")
	if err != nil || !served || !exists {
		t.Errorf("Lookup(bob) = %v %v %v", served, exists, err)
	}
	served, exists, err = d.Lookup(ctx, "bob@remote.test")
	if err != nil || served || exists {
		t.Errorf("Lookup(remote) = %v %v %v", served, exists, err)
	}
}
