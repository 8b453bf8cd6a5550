package smtp

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"mailconf/internal/metrics"
	"mailconf/internal/testutil"
)

const (
	testHost     = "mail.example.com"
	alice        = "alice@example.com"
	alicePass    = "correct horse battery staple"
	bob          = "bob@example.com"
	bobPass      = "hunter2-but-longer"
	carol        = "carol@example.org"
	remoteRcpt   = "someone@remote.example"
	tempFailUser = "tempfail@example.com"
)

// fakeAuth knows two accounts; logins are case-insensitive and return the
// canonical (lower-case) address, as the real authenticator does.
type fakeAuth struct {
	mu    sync.Mutex
	calls []string // protocol/remote/username, never the password
}

func (a *fakeAuth) Authenticate(_ context.Context, protocol string, remote netip.Addr, username, password string) (string, error) {
	a.mu.Lock()
	a.calls = append(a.calls, protocol+"/"+remote.String()+"/"+username)
	a.mu.Unlock()
	u := strings.ToLower(username)
	switch {
	case u == tempFailUser:
		return "", errors.New("fake store: database is locked")
	case u == alice && password == alicePass:
		return alice, nil
	case u == bob && password == bobPass:
		return bob, nil
	}
	return "", fmt.Errorf("fake auth: %w", ErrAuthFailed)
}

// fakeRecipients serves example.com and example.org.
type fakeRecipients struct {
	mu      sync.Mutex
	lookups []string
	fail    bool
}

func (r *fakeRecipients) Lookup(_ context.Context, addr string) (bool, bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lookups = append(r.lookups, addr)
	if r.fail {
		return false, false, errors.New("fake store: disk on fire")
	}
	i := strings.LastIndexByte(addr, '@')
	domain := addr[i+1:]
	served := domain == "example.com" || domain == "example.org"
	switch strings.ToLower(addr) {
	case alice, bob, carol:
		return served, true, nil
	}
	return served, false, nil
}

type stored struct {
	env  Envelope
	data []byte
}

type recordSink struct {
	mu   sync.Mutex
	msgs []stored
	fail bool
}

func (s *recordSink) Accept(_ context.Context, env Envelope, data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		return errors.New("fake store: no space left on device")
	}
	s.msgs = append(s.msgs, stored{env, append([]byte(nil), data...)})
	return nil
}

func (s *recordSink) all() []stored {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]stored(nil), s.msgs...)
}

// world is the three listeners on loopback with a real test CA.
type world struct {
	ca        *testutil.CA
	leaf      testutil.Leaf
	clientTLS *tls.Config
	auth      *fakeAuth
	rcpts     *fakeRecipients
	sink      *recordSink
	logs      *testutil.SyncBuffer
	metrics   *metrics.Metrics
	mx        *Server
	sub, subs *Server
	mxAddr    string
	subAddr   string // 587, STARTTLS
	subsAddr  string // 465, implicit TLS
}

func newWorld(t testing.TB, tweak func(*Config)) *world {
	t.Helper()
	w := &world{
		ca:      testutil.NewCA(t),
		auth:    &fakeAuth{},
		rcpts:   &fakeRecipients{},
		sink:    &recordSink{},
		logs:    &testutil.SyncBuffer{},
		metrics: metrics.New(),
	}
	w.leaf = w.ca.Issue(t, []string{testHost, "127.0.0.1"}, time.Time{}, time.Time{})
	w.clientTLS = &tls.Config{RootCAs: w.ca.Pool, ServerName: testHost}
	cfg := Config{
		Hostname:    testHost,
		ReadTimeout: 10 * time.Second,
		TLS:         &tls.Config{Certificates: []tls.Certificate{w.leaf.Cert}, MinVersion: tls.VersionTLS12},
		Logger:      slog.New(slog.NewTextHandler(w.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Metrics:     w.metrics,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	var err error
	if w.mx, err = NewMX(cfg, w.rcpts, w.sink); err != nil {
		t.Fatal(err)
	}
	if w.sub, err = NewSubmission(cfg, w.auth, w.rcpts, w.sink, false); err != nil {
		t.Fatal(err)
	}
	if w.subs, err = NewSubmission(cfg, w.auth, w.rcpts, w.sink, true); err != nil {
		t.Fatal(err)
	}
	w.mxAddr = serve(t, w.mx)
	w.subAddr = serve(t, w.sub)
	w.subsAddr = serve(t, w.subs)
	t.Cleanup(func() {
		if strings.Contains(w.logs.String(), alicePass) || strings.Contains(w.logs.String(), bobPass) {
			t.Errorf("a password appears in the log:\n%s", w.logs.String())
		}
	})
	return w
}

func serve(t testing.TB, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// raw is a hand-driven SMTP client for what real clients never send.
type raw struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
}

func dialRaw(t testing.TB, addr string, implicitTLS bool, tlsCfg *tls.Config) *raw {
	t.Helper()
	var c net.Conn
	var err error
	if implicitTLS {
		c, err = tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, tlsCfg)
	} else {
		c, err = net.DialTimeout("tcp", addr, 5*time.Second)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	rc := &raw{t: t, conn: c, r: bufio.NewReader(c)}
	rc.expect(220)
	return rc
}

func (c *raw) send(s string) {
	c.t.Helper()
	_ = c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatalf("write %q: %v", s, err)
	}
}

// reply reads one (possibly multi-line) reply; "" at EOF.
func (c *raw) reply() string {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var all strings.Builder
	for {
		line, err := c.r.ReadString('\n')
		all.WriteString(line)
		if err != nil {
			return all.String()
		}
		if len(line) < 4 || line[3] != '-' {
			return all.String()
		}
	}
}

func (c *raw) expect(code int) string {
	c.t.Helper()
	r := c.reply()
	if !strings.HasPrefix(r, fmt.Sprintf("%d", code)) {
		c.t.Fatalf("want %d, got %q", code, r)
	}
	return r
}

func (c *raw) cmd(line string, code int) string {
	c.t.Helper()
	c.send(line + "\r\n")
	return c.expect(code)
}

// startTLS upgrades after a 220 to STARTTLS.
func (c *raw) startTLS(cfg *tls.Config) {
	c.t.Helper()
	tc := tls.Client(c.conn, cfg)
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("TLS handshake: %v", err)
	}
	c.conn, c.r = tc, bufio.NewReader(tc)
}

// closedByServer reports whether the server closed the connection, reading
// (and returning) whatever it still sent.
func (c *raw) closedByServer() (string, bool) {
	_ = c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	rest, err := io.ReadAll(c.r)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return string(rest), false
		}
	}
	return string(rest), true
}

// loggedIn587 returns a raw client on 587 after STARTTLS and AUTH PLAIN.
func (w *world) loggedIn587(t testing.TB, user, pass string) *raw {
	t.Helper()
	c := dialRaw(t, w.subAddr, false, nil)
	c.cmd("EHLO client.test", 250)
	c.cmd("STARTTLS", 220)
	c.startTLS(w.clientTLS)
	c.cmd("EHLO client.test", 250)
	c.cmd("AUTH PLAIN "+plainIR("", user, pass), 235)
	return c
}

func plainIR(authz, user, pass string) string {
	return b64(authz + "\x00" + user + "\x00" + pass)
}

// splitReceived returns the Received header the server added and the
// bytes after it, failing if the message does not start with one.
func splitReceived(t testing.TB, data []byte) (string, []byte) {
	t.Helper()
	if !bytes.HasPrefix(data, []byte("Received: ")) {
		t.Fatalf("stored message does not start with Received: %q", data)
	}
	// The header ends at the first CRLF not followed by folding white space.
	for i := 0; i+2 < len(data); i++ {
		if data[i] == '\r' && data[i+1] == '\n' && data[i+2] != '\t' && data[i+2] != ' ' {
			return string(data[:i+2]), data[i+2:]
		}
	}
	t.Fatalf("unterminated Received header: %q", data)
	return "", nil
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func newReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }
