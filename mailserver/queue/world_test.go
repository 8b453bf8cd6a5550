package queue

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"

	"mailconf/autoconfig/dnsrecords/dnstest"
	"mailconf/internal/metrics"
	"mailconf/internal/testutil"
	"mailconf/mailserver/store"
)

// rxMsg is one message a receiving test server accepted.
type rxMsg struct {
	from   string
	to     []string
	data   []byte
	tls    bool
	authed string
}

// receiver is a go-smtp server of the test standing in for a remote MX or
// a smarthost, with scripted answers.
type receiver struct {
	addr string
	mu   sync.Mutex
	msgs []rxMsg
	// rcptErr and dataErr script failures; dataCalls counts DATA.
	rcptErr   func(rcpt string) error
	dataErr   func(call int) error
	dataCalls atomic.Int32
	conns     atomic.Int32
	// user/pass enable AUTH PLAIN and LOGIN and make MAIL require it.
	user, pass string
	// mechs overrides the offered AUTH mechanisms.
	mechs []string
	// tlsMaxVersion, when set, caps the TLS version the receiver offers.
	tlsMaxVersion uint16
}

func (r *receiver) messages() []rxMsg {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]rxMsg(nil), r.msgs...)
}

type rxSession struct {
	r      *receiver
	c      *gosmtp.Conn
	from   string
	to     []string
	authed string
}

func (s *rxSession) AuthMechanisms() []string {
	if s.r.user == "" {
		return nil
	}
	if s.r.mechs != nil {
		return s.r.mechs
	}
	return []string{sasl.Plain, sasl.Login}
}

func (s *rxSession) Auth(mech string) (sasl.Server, error) {
	check := func(user, pass string) error {
		if user != s.r.user || pass != s.r.pass {
			return &gosmtp.SMTPError{Code: 535, EnhancedCode: gosmtp.EnhancedCode{5, 7, 8}, Message: "bad credentials"}
		}
		s.authed = user
		return nil
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(_, user, pass string) error { return check(user, pass) }), nil
	case sasl.Login:
		return &loginServer{check: check}, nil
	}
	return nil, gosmtp.ErrAuthUnknownMechanism
}

// loginServer is a minimal AUTH LOGIN server for the smarthost fixture.
type loginServer struct {
	check func(user, pass string) error
	user  string
	step  int
}

func (l *loginServer) Next(resp []byte) ([]byte, bool, error) {
	l.step++
	switch l.step {
	case 1:
		if resp != nil {
			l.user = string(resp)
			l.step++
			return []byte("Password:"), false, nil
		}
		return []byte("Username:"), false, nil
	case 2:
		l.user = string(resp)
		return []byte("Password:"), false, nil
	default:
		return nil, true, l.check(l.user, string(resp))
	}
}

func (s *rxSession) Mail(from string, _ *gosmtp.MailOptions) error {
	if s.r.user != "" && s.authed == "" {
		return gosmtp.ErrAuthRequired
	}
	s.from = from
	return nil
}

func (s *rxSession) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	if s.r.rcptErr != nil {
		if err := s.r.rcptErr(to); err != nil {
			return err
		}
	}
	s.to = append(s.to, to)
	return nil
}

func (s *rxSession) Data(rd io.Reader) error {
	data, err := io.ReadAll(rd)
	if err != nil {
		return err
	}
	n := int(s.r.dataCalls.Add(1))
	if s.r.dataErr != nil {
		if err := s.r.dataErr(n); err != nil {
			return err
		}
	}
	_, isTLS := s.c.TLSConnectionState()
	s.r.mu.Lock()
	s.r.msgs = append(s.r.msgs, rxMsg{from: s.from, to: append([]string(nil), s.to...), data: data, tls: isTLS, authed: s.authed})
	s.r.mu.Unlock()
	return nil
}

func (s *rxSession) Reset()        { s.from, s.to = "", nil }
func (s *rxSession) Logout() error { return nil }

// startReceiver serves on ip:port (port "0": any). tlsCert enables
// STARTTLS, implicit makes it a TLS-from-the-start listener.
func startReceiver(t *testing.T, r *receiver, ip, port string, tlsCert *tls.Certificate, implicit bool) *receiver {
	t.Helper()
	srv := gosmtp.NewServer(gosmtp.BackendFunc(func(c *gosmtp.Conn) (gosmtp.Session, error) {
		r.conns.Add(1)
		return &rxSession{r: r, c: c}, nil
	}))
	srv.Domain = "rx.test"
	srv.ReadTimeout = 10 * time.Second
	srv.WriteTimeout = 10 * time.Second
	srv.ErrorLog = nopLog{}
	if tlsCert != nil {
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{*tlsCert}, MaxVersion: r.tlsMaxVersion}
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, port))
	if err != nil {
		t.Fatal(err)
	}
	if implicit {
		ln = tls.NewListener(ln, srv.TLSConfig)
	}
	r.addr = ln.Addr().String()
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return r
}

type nopLog struct{}

func (nopLog) Printf(string, ...any) {}
func (nopLog) Println(...any)        {}

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// world is the hermetic relay environment: a store with a local account,
// DNS for the test domains, a CA and a receiving server.
type world struct {
	t       *testing.T
	dir     string
	st      *store.Store
	alice   store.Account
	ca      *testutil.CA
	leaf    testutil.Leaf
	dns     *dnstest.Server
	rx      *receiver
	port    string
	clock   *clock
	metrics *metrics.Metrics
	logs    *testutil.SyncBuffer
}

// zone: remote.test has MX records (a dead preferred host first), amx.test
// only an A record, nullmx.test a null MX; 127.0.0.2 is the live server.
const zone = `
remote.test.      60 IN MX 5  dead.remote.test.
remote.test.      60 IN MX 10 mx1.remote.test.
dead.remote.test. 60 IN A 127.0.0.3
mx1.remote.test.  60 IN A 127.0.0.2
amx.test.         60 IN A 127.0.0.2
nullmx.test.      60 IN MX 0 .
relay.test.       60 IN A 127.0.0.2
`

type worldOpts struct {
	rx       *receiver
	starttls bool
	implicit bool
}

func newWorld(t *testing.T, o worldOpts) *world {
	t.Helper()
	w := &world{t: t, dir: t.TempDir(), clock: &clock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)},
		metrics: metrics.New(), logs: &testutil.SyncBuffer{}}
	w.openStore()
	var err error
	w.alice, err = w.st.CreateAccount(context.Background(), "alice@example.test", "x", []store.MailboxSpec{{Name: store.Inbox}})
	if err != nil {
		t.Fatal(err)
	}
	w.ca = testutil.NewCA(t)
	w.leaf = w.ca.Issue(t, []string{"mx1.remote.test", "amx.test", "relay.test"}, time.Time{}, time.Time{})
	w.dns = dnstest.Start(t, dnstest.Config{Zone: zone})
	if o.rx == nil {
		o.rx = &receiver{}
	}
	var cert *tls.Certificate
	if o.starttls || o.implicit {
		cert = &w.leaf.Cert
	}
	w.rx = startReceiver(t, o.rx, "127.0.0.2", "0", cert, o.implicit)
	_, w.port, _ = net.SplitHostPort(w.rx.addr)
	return w
}

func (w *world) openStore() {
	st, err := store.Open(context.Background(), w.dir, store.Options{Now: func() time.Time { return w.clock.Now() }})
	if err != nil {
		w.t.Fatal(err)
	}
	w.st = st
	w.t.Cleanup(func() { st.Close() })
}

func (w *world) log() string { return w.logs.String() }

func (w *world) config() Config {
	port := 0
	fmt.Sscan(w.port, &port)
	return Config{
		Hostname:     "mail.example.test",
		Resolver:     w.dns.Addr,
		Port:         port,
		RootCAs:      w.ca.Pool,
		Backoff:      func(int) time.Duration { return time.Minute },
		PollInterval: 20 * time.Millisecond,
		ConnTimeout:  10 * time.Second,
		Now:          w.clock.Now,
		Logger:       slog.New(slog.NewTextHandler(w.logs, nil)),
		Metrics:      w.metrics,
	}
}

// start runs a queue until the test ends (or stop is called).
func (w *world) start(cfg Config) (q *Queue, stop func()) {
	w.t.Helper()
	q, err := New(cfg, w.st)
	if err != nil {
		w.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- q.Run(context.Background()) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := q.Shutdown(ctx); err != nil {
				w.t.Errorf("shutdown: %v", err)
			}
			if err := <-done; err != nil {
				w.t.Errorf("run: %v", err)
			}
		})
	}
	w.t.Cleanup(stop)
	return q, stop
}

func (w *world) enqueue(sender string, rcpts []string, msg string) int64 {
	w.t.Helper()
	id, err := w.st.Enqueue(context.Background(), sender, rcpts, strings.NewReader(msg), time.Time{})
	if err != nil {
		w.t.Fatal(err)
	}
	return id
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (w *world) queueLen() int {
	n, err := w.st.QueueSize(context.Background())
	if err != nil {
		w.t.Fatal(err)
	}
	return n
}

func (w *world) entry(id int64) (store.QueueEntry, bool) {
	e, err := w.st.QueueEntry(context.Background(), id)
	if errors.Is(err, store.ErrNotFound) {
		return e, false
	}
	if err != nil {
		w.t.Fatal(err)
	}
	return e, true
}

func (w *world) inbox() [][]byte {
	w.t.Helper()
	ctx := context.Background()
	mb, err := w.st.Mailbox(ctx, w.alice.ID, store.Inbox)
	if err != nil {
		w.t.Fatal(err)
	}
	msgs, err := w.st.Messages(ctx, mb.ID)
	if err != nil {
		w.t.Fatal(err)
	}
	var out [][]byte
	for _, m := range msgs {
		b, err := w.st.ReadMessage(ctx, mb.ID, m.UID)
		if err != nil {
			w.t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

const testMsg = "From: alice@example.test\r\nTo: bob@remote.test\r\nSubject: relay test\r\n" +
	"Message-ID: <m1@example.test>\r\n\r\nline one\r\n.dot line\r\n..two dots\r\n"
