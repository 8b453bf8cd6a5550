package pop3

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"mailconf/config"
	"mailconf/internal/metrics"
	"mailconf/internal/testutil"
	"mailconf/mailserver/accounts"
	"mailconf/mailserver/store"
)

const (
	alice     = "alice@example.com"
	alicePass = "correct horse battery staple"
	bob       = "bob@example.com"
	bobPass   = "hunter2 with spaces"
)

const testConfig = `
data_dir = "%s"
hostname = "mail.example.com"
[listen]
pop3 = "127.0.0.1:2110"
pop3s = "127.0.0.1:2995"
submissions = "127.0.0.1:2465"
[[domain]]
name = "example.com"
`

// env is a store with two accounts, the shared authenticator and a POP3
// server on two loopback listeners (110-style with STLS, 995-style).
type env struct {
	t         testing.TB
	ca        *testutil.CA
	clientTLS *tls.Config
	st        *store.Store
	auth      *accounts.Authenticator
	srv       *Server
	logs      *testutil.SyncBuffer
	metrics   *metrics.Metrics
	plainAddr string
	tlsAddr   string
	alice     store.Account
	bob       store.Account
	inbox     store.Mailbox // alice's
	served    chan error
}

type envOption func(*Config, *accounts.Limits)

func newEnv(t testing.TB, opts ...envOption) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	cfg, err := config.Parse("test.toml", []byte(strings.Replace(testConfig, "%s", dir, 1)))
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	mgr := accounts.NewManager(st, cfg)
	e := &env{t: t, st: st, logs: &testutil.SyncBuffer{}, metrics: metrics.New(), served: make(chan error, 2)}
	if e.alice, err = mgr.Add(ctx, alice, alicePass); err != nil {
		t.Fatal(err)
	}
	if e.bob, err = mgr.Add(ctx, bob, bobPass); err != nil {
		t.Fatal(err)
	}
	if e.inbox, err = st.Mailbox(ctx, e.alice.ID, store.Inbox); err != nil {
		t.Fatal(err)
	}
	e.ca = testutil.NewCA(t)
	leaf := e.ca.Issue(t, []string{"mail.example.com", "localhost", "127.0.0.1"}, time.Time{}, time.Time{})
	e.clientTLS = &tls.Config{RootCAs: e.ca.Pool, ServerName: "mail.example.com"}
	logger := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	pcfg := Config{
		Hostname: "mail.example.com",
		TLS:      &tls.Config{Certificates: []tls.Certificate{leaf.Cert}},
		Logger:   logger,
		Metrics:  e.metrics,
	}
	lim := accounts.Limits{BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond}
	for _, o := range opts {
		o(&pcfg, &lim)
	}
	e.auth = accounts.NewAuthenticator(st, cfg, accounts.AuthOptions{Limits: lim, Metrics: e.metrics, Logger: logger})
	if e.srv, err = New(pcfg, st, e.auth); err != nil {
		t.Fatal(err)
	}
	lp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lt, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.plainAddr, e.tlsAddr = lp.Addr().String(), lt.Addr().String()
	go func() { e.served <- e.srv.Serve(lp) }()
	go func() { e.served <- e.srv.ServeTLS(lt) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := e.srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if t.Failed() {
			t.Logf("server log:\n%s", e.logs.String())
		}
	})
	return e
}

// deliver puts raw into alice's INBOX and returns its UID.
func (e *env) deliver(raw string) uint32 {
	e.t.Helper()
	r, err := e.st.Deliver(context.Background(), e.alice.ID, store.Inbox, []byte(raw), time.Time{})
	if err != nil {
		e.t.Fatal(err)
	}
	return r.UID
}

func (e *env) inboxUIDs() []uint32 {
	e.t.Helper()
	ms, err := e.st.Messages(context.Background(), e.inbox.ID)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []uint32
	for _, m := range ms {
		out = append(out, m.UID)
	}
	return out
}

// client is a raw POP3 client: lines in, lines out, nothing hidden.
type client struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
	cfg  *tls.Config
}

func (e *env) dial(addr string) *client {
	e.t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		e.t.Fatal(err)
	}
	cl := &client{t: e.t, conn: c, r: bufio.NewReader(c), cfg: e.clientTLS}
	e.t.Cleanup(func() { cl.conn.Close() })
	return cl
}

// dialPlain connects to the STLS listener and reads the greeting.
func (e *env) dialPlain() *client {
	e.t.Helper()
	c := e.dial(e.plainAddr)
	if g := c.line(); !strings.HasPrefix(g, "+OK ") {
		e.t.Fatalf("greeting %q", g)
	}
	return c
}

// dialTLS connects to the implicit-TLS listener and reads the greeting.
func (e *env) dialTLS() *client {
	e.t.Helper()
	raw, err := net.DialTimeout("tcp", e.tlsAddr, 5*time.Second)
	if err != nil {
		e.t.Fatal(err)
	}
	tc := tls.Client(raw, e.clientTLS)
	cl := &client{t: e.t, conn: tc, r: bufio.NewReader(tc), cfg: e.clientTLS}
	e.t.Cleanup(func() { cl.conn.Close() })
	if g := cl.line(); !strings.HasPrefix(g, "+OK ") {
		e.t.Fatalf("greeting %q", g)
	}
	return cl
}

// login dials 995 and logs in as alice.
func (e *env) login() *client {
	e.t.Helper()
	c := e.dialTLS()
	c.expectOK("USER " + alice)
	c.expectOK("PASS " + alicePass)
	return c
}

func (c *client) send(s string) {
	c.t.Helper()
	_ = c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatalf("write %q: %v", s, err)
	}
}

// line reads one line without CRLF; "" plus a failed test on error.
func (c *client) line() string {
	c.t.Helper()
	l, err := c.readLine()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return l
}

func (c *client) readLine() (string, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	l, err := c.r.ReadString('\n')
	if err != nil {
		return l, err
	}
	if !strings.HasSuffix(l, "\r\n") {
		c.t.Fatalf("line without CRLF: %q", l)
	}
	return strings.TrimSuffix(l, "\r\n"), nil
}

func (c *client) cmd(line string) string {
	c.t.Helper()
	c.send(line + "\r\n")
	return c.line()
}

func (c *client) expectOK(line string) string {
	c.t.Helper()
	r := c.cmd(line)
	if !strings.HasPrefix(r, "+OK") {
		c.t.Fatalf("%s: got %q", strings.Fields(line)[0], r)
	}
	return r
}

func (c *client) expectErr(line, prefix string) {
	c.t.Helper()
	r := c.cmd(line)
	if !strings.HasPrefix(r, prefix) {
		c.t.Fatalf("%q: got %q, want prefix %q", line, r, prefix)
	}
}

// multi reads a multi-line body after its status line, un-stuffing dots,
// and returns the lines.
func (c *client) multi() []string {
	c.t.Helper()
	var out []string
	for {
		l := c.line()
		if l == "." {
			return out
		}
		if strings.HasPrefix(l, ".") {
			l = l[1:]
		}
		out = append(out, l)
	}
}

// body reads a multi-line body as bytes exactly as a client reassembles
// it: each line un-stuffed, with CRLF.
func (c *client) body() []byte {
	c.t.Helper()
	var b bytes.Buffer
	for _, l := range c.multi() {
		b.WriteString(l)
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

// stls upgrades the connection after a +OK to STLS.
func (c *client) stls() {
	c.t.Helper()
	c.expectOK("STLS")
	if c.r.Buffered() != 0 {
		c.t.Fatalf("server sent %d bytes after +OK to STLS", c.r.Buffered())
	}
	tc := tls.Client(c.conn, c.cfg)
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("handshake: %v", err)
	}
	c.conn = tc
	c.r = bufio.NewReader(tc)
}

// closed asserts the server closes the connection (after any lines).
func (c *client) closed() {
	c.t.Helper()
	for range 10 {
		l, err := c.readLine()
		if errors.Is(err, io.EOF) || err != nil && strings.Contains(err.Error(), "reset") {
			return
		}
		if err != nil {
			c.t.Fatalf("want close, got %v", err)
		}
		c.t.Logf("line before close: %q", l)
	}
	c.t.Fatal("connection still open")
}

func plain(authz, user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte(authz + "\x00" + user + "\x00" + pass))
}

// held reports whether a session holds the account's maildrop.
func (s *Server) held(id int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.locks[id]
	return ok
}
