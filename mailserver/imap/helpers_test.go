package imap

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"mailconf/config"
	"mailconf/internal/testutil"
	"mailconf/mailserver/accounts"
	"mailconf/mailserver/store"
)

const (
	alice     = "alice@example.com"
	alicePass = "alice-password-1"
	bob       = "bob@example.com"
	bobPass   = "bob-password-22"
)

const testConfig = `
data_dir = "%s"
hostname = "mail.example.com"
[listen]
imaps = "127.0.0.1:2993"
submissions = "127.0.0.1:2465"
[[domain]]
name = "example.com"
`

type env struct {
	t        *testing.T
	st       *store.Store
	srv      *Server
	ca       *testutil.CA
	addr     string // STARTTLS
	tlsAddr  string // implicit TLS
	clientTC *tls.Config
	aliceID  int64
}

type envOpt func(*Config)

func newEnv(t *testing.T, opts ...envOpt) *env {
	t.Helper()
	return newEnvAuth(t, accounts.AuthOptions{}, opts...)
}

// newEnvAuth is newEnv with the shared authenticator's options given.
func newEnvAuth(t *testing.T, authOpts accounts.AuthOptions, opts ...envOpt) *env {
	t.Helper()
	dir := t.TempDir()
	cfg, err := config.Parse("test.toml", []byte(strings.Replace(testConfig, "%s", dir, 1)))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := store.Open(ctx, dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	mgr := accounts.NewManager(st, cfg)
	a, err := mgr.Add(ctx, alice, alicePass)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mgr.Add(ctx, bob, bobPass); err != nil {
		t.Fatal(err)
	}
	auth := accounts.NewAuthenticator(st, cfg, authOpts)
	ca := testutil.NewCA(t)
	leaf := ca.Issue(t, []string{"mail.example.com", "localhost", "127.0.0.1"}, time.Time{}, time.Time{})
	c := Config{
		Hostname: "mail.example.com",
		TLS:      &tls.Config{Certificates: []tls.Certificate{leaf.Cert}},
	}
	for _, o := range opts {
		o(&c)
	}
	srv, err := New(c, st, auth)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lnTLS, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	go srv.ServeTLS(lnTLS)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return &env{
		t: t, st: st, srv: srv, ca: ca,
		addr: ln.Addr().String(), tlsAddr: lnTLS.Addr().String(),
		clientTC: &tls.Config{RootCAs: ca.Pool, ServerName: "mail.example.com"},
		aliceID:  a.ID,
	}
}

// client dials implicit TLS and logs in.
func (e *env) client(user, pass string, h *imapclient.UnilateralDataHandler) *imapclient.Client {
	e.t.Helper()
	c, err := imapclient.DialTLS(e.tlsAddr, &imapclient.Options{TLSConfig: e.clientTC, UnilateralDataHandler: h})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	if err := c.Login(user, pass).Wait(); err != nil {
		e.t.Fatalf("login %s: %v", user, err)
	}
	return c
}

func (e *env) alice() *imapclient.Client { return e.client(alice, alicePass, nil) }

func appendMsg(t *testing.T, c *imapclient.Client, mbox string, msg string, opts *goimap.AppendOptions) *goimap.AppendData {
	t.Helper()
	cmd := c.Append(mbox, int64(len(msg)), opts)
	if _, err := io.WriteString(cmd, msg); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := cmd.Wait()
	if err != nil {
		t.Fatalf("append to %s: %v", mbox, err)
	}
	return data
}

func testMessage(i int) string {
	return fmt.Sprintf("From: Sender %d <sender%d@example.org>\r\n"+
		"To: Alice <alice@example.com>\r\n"+
		"Subject: message number %d\r\n"+
		"Date: Mon, 02 Jan 2006 15:04:05 +0000\r\n"+
		"Message-ID: <m%d@example.org>\r\n"+
		"\r\n"+
		"Body line of message %d.\r\n", i, i, i, i, i)
}

// rawConn is a line-level client for the security tests.
type rawConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func (e *env) rawTLS() *rawConn {
	e.t.Helper()
	c, err := tls.Dial("tcp", e.tlsAddr, e.clientTC)
	return e.raw(c, err)
}

func (e *env) rawPlain() *rawConn {
	e.t.Helper()
	c, err := net.Dial("tcp", e.addr)
	return e.raw(c, err)
}

// raw wraps a fresh connection (or fails the test with the dial error)
// and reads the greeting.
func (e *env) raw(c net.Conn, err error) *rawConn {
	e.t.Helper()
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	r := &rawConn{t: e.t, c: c, br: bufio.NewReader(c)}
	r.expectPrefix("* OK")
	return r
}

func (r *rawConn) send(s string) {
	r.t.Helper()
	r.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(r.c, s); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

// sendLax writes and ignores errors: the server may hang up mid-write.
func (r *rawConn) sendLax(s string) {
	r.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(r.c, s)
}

// line reads one response line; "" with ok=false on EOF or error.
func (r *rawConn) line() (string, bool) {
	r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	l, err := r.br.ReadString('\n')
	if err != nil {
		return l, false
	}
	return strings.TrimRight(l, "\r\n"), true
}

func (r *rawConn) expectPrefix(p string) string {
	r.t.Helper()
	l, ok := r.line()
	if !ok || !strings.HasPrefix(l, p) {
		r.t.Fatalf("want line starting %q, got %q (ok=%v)", p, l, ok)
	}
	return l
}

// until reads lines until one starts with prefix and returns all read.
func (r *rawConn) until(prefix string) []string {
	r.t.Helper()
	var lines []string
	for {
		l, ok := r.line()
		if !ok {
			r.t.Fatalf("connection ended before %q; got %q", prefix, lines)
		}
		lines = append(lines, l)
		if strings.HasPrefix(l, prefix) {
			return lines
		}
	}
}

func (r *rawConn) login() {
	r.t.Helper()
	r.send("L1 LOGIN " + alice + " " + alicePass + "\r\n")
	r.until("L1 OK")
}

// closed reports whether the server closed the connection (EOF or reset,
// not a timeout) and returns the lines it sent before.
func (r *rawConn) closed() ([]string, bool) {
	var lines []string
	for {
		r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		l, err := r.br.ReadString('\n')
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return lines, false
			}
			return lines, true
		}
		lines = append(lines, strings.TrimRight(l, "\r\n"))
	}
}
