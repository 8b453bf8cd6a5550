// Package imap is mailconf's IMAP server (IMAP4rev1 and IMAP4rev2) on top of
// go-imap v2's imapserver engine and mailconf's store.
//
// go-imap v2.0.0-beta.8 is used only behind this package's own guards
// (mailserver.md §1.5): TLS is always terminated here, never inside the
// library, so every byte the library reads has first passed a guardConn
// that tracks command lines and literals; EXAMINE is enforced as read-only
// by the backend; BODY[] is served from the stored bytes.
//
// Intended wiring in `mailconf serve` (listen.imap is STARTTLS, listen.imaps
// implicit TLS):
//
//	srv, err := imap.New(imap.Config{
//		Hostname: cfg.Hostname, TLS: tlsConfig, Logger: log.With("service", "imap"),
//		Metrics: met, AppendLimit: cfg.Limits.MessageSize,
//	}, st, auth)
//	ln143, _ := net.Listen("tcp", cfg.Listen.IMAP)
//	ln993, _ := net.Listen("tcp", cfg.Listen.IMAPS)
//	go srv.Serve(ln143)    // STARTTLS, LOGINDISABLED before TLS
//	go srv.ServeTLS(ln993) // implicit TLS
//	...
//	srv.Shutdown(ctx)
package imap

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"mailconf/internal/connlimit"
	"mailconf/internal/metrics"
	"mailconf/mailserver/store"
)

// Authenticator checks credentials with throttling; *accounts.Authenticator
// implements it.
type Authenticator interface {
	Authenticate(ctx context.Context, protocol string, remote netip.Addr, username, password string) (store.Account, error)
}

// Config configures a Server.
type Config struct {
	// Hostname appears in the greeting.
	Hostname string
	// TLS is required unless InsecureAuth is set: Serve offers STARTTLS
	// with it, ServeTLS terminates implicit TLS with it.
	TLS *tls.Config
	// Logger receives connection and error logs; nil discards them.
	Logger *slog.Logger
	// Metrics may be nil.
	Metrics *metrics.Metrics
	// MaxConnsPerIP limits simultaneous connections from one client
	// address (0: 50).
	MaxConnsPerIP int
	// MaxConnsPerAccount limits simultaneous logged-in sessions of one
	// account (0: 50).
	MaxConnsPerAccount int
	// AppendLimit is the largest APPEND in bytes (0: the store's message
	// size limit).
	AppendLimit int64
	// IdleTimeout ends a connection that sends nothing for this long, IDLE
	// included (0: 30 minutes, the RFC 9051 minimum autologout timer).
	IdleTimeout time.Duration
	// InsecureAuth lets Serve accept LOGIN on plaintext connections. Only
	// for loopback benchmarks against a plaintext baseline; never in
	// production.
	InsecureAuth bool
}

// Server is an IMAP server. One Server serves any number of listeners.
type Server struct {
	cfg  Config
	st   *store.Store
	auth Authenticator
	log  *slog.Logger
	lib  *imapserver.Server
	ln   *chanListener
	caps goimap.CapSet

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	raw       map[net.Conn]struct{} // connections not yet handed to the library
	perIP     *connlimit.Counter    // MaxConnsPerIP slots of all listeners
	perAcct   map[int64]int
	sessions  map[*session]struct{}
	libDone   chan struct{}

	mbMu   sync.Mutex
	mboxes map[int64]*mailboxState

	hdrs *headerCache
}

// New creates a server on the store and authenticator.
func New(cfg Config, st *store.Store, auth Authenticator) (*Server, error) {
	if st == nil || auth == nil {
		return nil, errors.New("imap: store and authenticator are required")
	}
	if cfg.TLS == nil && !cfg.InsecureAuth {
		return nil, errors.New("imap: a TLS configuration is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxConnsPerIP <= 0 {
		cfg.MaxConnsPerIP = 50
	}
	if cfg.MaxConnsPerAccount <= 0 {
		cfg.MaxConnsPerAccount = 50
	}
	if cfg.AppendLimit <= 0 || cfg.AppendLimit > st.MessageSizeLimit() {
		cfg.AppendLimit = st.MessageSizeLimit()
	}
	if cfg.AppendLimit > 0xFFFFFFFF {
		cfg.AppendLimit = 0xFFFFFFFF
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 30 * time.Minute
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "localhost"
	}
	s := &Server{
		cfg:       cfg,
		st:        st,
		auth:      auth,
		log:       cfg.Logger,
		ln:        newChanListener(),
		listeners: map[net.Listener]struct{}{},
		raw:       map[net.Conn]struct{}{},
		perIP:     connlimit.NewCounter(0, cfg.MaxConnsPerIP),
		perAcct:   map[int64]int{},
		sessions:  map[*session]struct{}{},
		mboxes:    map[int64]*mailboxState{},
		hdrs:      newHeaderCache(headerCacheBytes),
		libDone:   make(chan struct{}),
	}
	s.caps = goimap.CapSet{}
	for _, c := range []goimap.Cap{
		goimap.CapIMAP4rev1, goimap.CapIMAP4rev2, goimap.CapLiteralPlus,
		goimap.CapNamespace, goimap.CapUIDPlus, goimap.CapESearch, goimap.CapSearchRes,
		goimap.CapListExtended, goimap.CapListStatus, goimap.CapMove, goimap.CapStatusSize,
		goimap.CapBinary, goimap.CapChildren, goimap.CapSpecialUse, goimap.CapCreateSpecialUse,
	} {
		s.caps[c] = struct{}{}
	}
	s.lib = imapserver.New(&imapserver.Options{
		NewSession: s.newSession,
		Caps:       s.caps,
		Logger:     log.New(slogWriter{s.log}, "", 0),
		// Every connection the library sees is already TLS (terminated by
		// this package) or a deliberate plaintext benchmark listener.
		InsecureAuth: true,
	})
	go func() {
		defer close(s.libDone)
		s.lib.Serve(s.ln)
	}()
	return s, nil
}

// slogWriter adapts the library's Printf logger to slog.
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.l.Warn("imap: library", "msg", strings.TrimSpace(string(p)))
	return len(p), nil
}

// Serve accepts connections on ln: STARTTLS with LOGINDISABLED before TLS
// (or plaintext with LOGIN when Config.InsecureAuth and no TLS are set).
func (s *Server) Serve(ln net.Listener) error {
	if s.cfg.TLS == nil {
		return s.accept(ln, "imap", s.handoffPlain)
	}
	return s.accept(ln, "imap", s.serveStartTLS)
}

// ServeTLS accepts implicit-TLS connections on ln (port 993).
func (s *Server) ServeTLS(ln net.Listener) error {
	if s.cfg.TLS == nil {
		return errors.New("imap: ServeTLS needs a TLS configuration")
	}
	return s.accept(ln, "imaps", s.serveImplicitTLS)
}

func (s *Server) accept(ln net.Listener, service string, handle func(net.Conn, func())) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errors.New("imap: server closed")
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) {
				delay = min(max(delay*2, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("imap: accept: %w", err)
		}
		delay = 0
		if s.cfg.Metrics != nil {
			s.cfg.Metrics.Connections.WithLabelValues(service).Inc()
		}
		ip := remoteIP(c)
		release, err := s.perIP.Acquire(ip)
		if err != nil {
			s.log.Warn("imap: too many connections", "ip", ip.String())
			go func() {
				c.SetWriteDeadline(time.Now().Add(5 * time.Second))
				c.Write([]byte("* BYE [UNAVAILABLE] Too many connections from your address\r\n"))
				c.Close()
			}()
			continue
		}
		s.trackRaw(c, true)
		go handle(c, release)
	}
}

func remoteIP(c net.Conn) netip.Addr {
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.IPv4Unspecified()
}

func (s *Server) acquireAccount(id int64) (func(), bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.perAcct[id] >= s.cfg.MaxConnsPerAccount {
		return nil, false
	}
	s.perAcct[id]++
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.perAcct[id]--; s.perAcct[id] <= 0 {
				delete(s.perAcct, id)
			}
		})
	}, true
}

func (s *Server) trackRaw(c net.Conn, add bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		s.raw[c] = struct{}{}
	} else {
		delete(s.raw, c)
	}
}

// handoff gives a (TLS or deliberate plaintext) connection to the library
// behind a guard.
func (s *Server) handoff(c net.Conn, release func(), afterStartTLS bool) {
	s.trackRaw(c, false)
	g := newGuard(c, s.cfg.AppendLimit, s.cfg.IdleTimeout, release)
	g.dropGreeting = afterStartTLS
	if !s.ln.push(g) {
		g.Close()
	}
}

func (s *Server) handoffPlain(c net.Conn, release func()) { s.handoff(c, release, false) }

func (s *Server) serveImplicitTLS(c net.Conn, release func()) {
	tc := tls.Server(c, s.cfg.TLS)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		s.log.Debug("imap: TLS handshake", "ip", remoteIP(c).String(), "err", err)
		s.trackRaw(c, false)
		c.Close()
		release()
		return
	}
	s.handoff(tc, release, false)
}

// preTLSCaps is all a client learns before STARTTLS: no AUTH mechanism,
// no LITERAL+ (no literal is accepted here at all).
const preTLSCaps = "IMAP4rev1 IMAP4rev2 STARTTLS LOGINDISABLED"

// serveStartTLS runs the few commands allowed before STARTTLS itself, so
// that the library only ever sees the connection after TLS.
func (s *Server) serveStartTLS(c net.Conn, release func()) {
	fail := func() {
		s.trackRaw(c, false)
		c.Close()
		release()
	}
	br := bufio.NewReaderSize(c, 1024)
	write := func(lines ...string) bool {
		c.SetWriteDeadline(time.Now().Add(30 * time.Second))
		_, err := c.Write([]byte(strings.Join(lines, "\r\n") + "\r\n"))
		return err == nil
	}
	if !write("* OK [CAPABILITY " + preTLSCaps + "] " + s.cfg.Hostname + " IMAP ready") {
		fail()
		return
	}
	for commands := 0; ; commands++ {
		if commands > 20 {
			write("* BYE Too many commands before STARTTLS")
			fail()
			return
		}
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		line, err := readShortLine(br, 1024)
		if err != nil {
			if errors.Is(err, errLineTooLong) {
				write("* BYE Command line too long")
			}
			fail()
			return
		}
		tag, cmd := parseCommandStart(line)
		if !validTag(tag) {
			write("* BAD Invalid tag", "* BYE Protocol error")
			fail()
			return
		}
		if _, nonSync, ok := trailingLiteral(line); ok {
			// No literal is legitimate before TLS; a non-synchronizing
			// one is already on the wire, so hang up.
			if nonSync {
				write("* BYE Literals are not accepted before STARTTLS")
				fail()
				return
			}
			if !write(tag + " NO [PRIVACYREQUIRED] Use STARTTLS first") {
				fail()
				return
			}
			continue
		}
		switch cmd {
		case "CAPABILITY":
			if !write("* CAPABILITY "+preTLSCaps, tag+" OK CAPABILITY completed") {
				fail()
				return
			}
		case "NOOP":
			if !write(tag + " OK NOOP completed") {
				fail()
				return
			}
		case "LOGOUT":
			write("* BYE Logging out", tag+" OK LOGOUT completed")
			fail()
			return
		case "LOGIN", "AUTHENTICATE":
			if !write(tag + " NO [PRIVACYREQUIRED] Use STARTTLS before logging in") {
				fail()
				return
			}
		case "STARTTLS":
			if !write(tag + " OK Begin TLS negotiation now") {
				fail()
				return
			}
			// Anything pipelined after STARTTLS in the clear is dropped:
			// it would otherwise be a command injection (RFC 2595 §3.1).
			if br.Buffered() > 0 {
				s.log.Warn("imap: plaintext pipelined after STARTTLS discarded", "ip", remoteIP(c).String())
				write("* BYE Data after STARTTLS")
				fail()
				return
			}
			c.SetReadDeadline(time.Time{})
			c.SetWriteDeadline(time.Time{})
			tc := tls.Server(c, s.cfg.TLS)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err := tc.HandshakeContext(ctx)
			cancel()
			if err != nil {
				s.log.Debug("imap: STARTTLS handshake", "ip", remoteIP(c).String(), "err", err)
				fail()
				return
			}
			s.handoff(tc, release, true)
			return
		default:
			// As the library does: one unknown command before login ends
			// the connection (cross-protocol attacks).
			write(tag+" BAD Unknown command", "* BYE Unknown command")
			fail()
			return
		}
	}
}

var errLineTooLong = errors.New("line too long")

func readShortLine(br *bufio.Reader, max int) (string, error) {
	var sb strings.Builder
	for {
		chunk, err := br.ReadSlice('\n')
		if sb.Len()+len(chunk) > max {
			return "", errLineTooLong
		}
		sb.Write(chunk)
		if err == nil {
			return strings.TrimRight(sb.String(), "\r\n"), nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return "", err
		}
	}
}

// Shutdown stops accepting, says BYE to every session and closes all
// connections. It returns when the connections are closed or ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	var errs []error
	for ln := range s.listeners {
		errs = append(errs, ln.Close())
	}
	for c := range s.raw {
		c.Close()
	}
	sessions := make([]*session, 0, len(s.sessions))
	for ss := range s.sessions {
		sessions = append(sessions, ss)
	}
	s.mu.Unlock()
	s.ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, ss := range sessions {
			ss.conn.Bye("Server shutting down")
		}
		s.lib.Close()
		<-s.libDone
	}()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, ctx.Err())
	}
	s.mbMu.Lock()
	for id, mb := range s.mboxes {
		if mb.grace != nil {
			mb.grace.Stop()
			mb.grace = nil
		}
		mb.stop()
		delete(s.mboxes, id)
	}
	s.mbMu.Unlock()
	for _, err := range errs {
		if err != nil && !errors.Is(err, net.ErrClosed) {
			return fmt.Errorf("imap: shutdown: %w", err)
		}
	}
	return nil
}

// chanListener is the net.Listener the library serves: it yields guarded
// connections after this package has done TLS.
type chanListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newChanListener() *chanListener {
	return &chanListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) push(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }
