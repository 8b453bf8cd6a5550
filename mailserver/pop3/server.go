// Package pop3 is mailconf's POP3 server (RFC 1939 with CAPA, RFC 2449;
// STLS, RFC 2595; AUTH PLAIN, RFC 5034; response codes, RFC 3206) on the
// shared store and authenticator. The maildrop is the account's INBOX.
//
// Wiring (cmd/mailconf serve): one Server serves both POP3 listeners, so
// that the maildrop lock covers port 110 and port 995 alike:
//
//	srv, err := pop3.New(pop3.Config{
//		Hostname: cfg.Hostname,
//		TLS:      tlsConfig, // the certificate manager's *tls.Config
//		Logger:   logger.With("service", "pop3"),
//		Metrics:  m,
//	}, st, auth) // auth: the process-wide *accounts.Authenticator
//	go srv.Serve(ln110)    // cfg.Listen.POP3: plaintext greeting, STLS
//	go srv.ServeTLS(ln995) // cfg.Listen.POP3S: implicit TLS
//	...
//	srv.Shutdown(ctx)
//
// Serve and ServeTLS return ErrServerClosed after Shutdown.
//
// Sessions: a login takes the maildrop exclusively (a second session for
// the same account gets -ERR [IN-USE] until the first ends), fixes the
// message list and numbers for the session (new deliveries show up at the
// next login), and deletions marked with DELE are applied only when QUIT
// moves the session to the UPDATE state. A dropped, timed-out or shut-down
// session deletes nothing. Deletions go through store.Remove, which leaves
// tombstones and signals the mailbox watchers, so IMAP sessions on the
// same INBOX see them as expunges. A message an IMAP client expunges while
// a POP3 session holds it answers RETR with -ERR; UPDATE ignores it.
package pop3

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"

	"mailconf/internal/connlimit"
	"mailconf/internal/metrics"
	"mailconf/mailserver/accounts"
	"mailconf/mailserver/store"
)

// ErrServerClosed is returned by Serve and ServeTLS after Shutdown.
var ErrServerClosed = errors.New("pop3: server closed")

// ExpireNever, as Config.Expire, advertises "EXPIRE NEVER": the server
// never deletes retrieved mail by itself.
const ExpireNever time.Duration = -1

// Config configures a Server. Hostname and TLS are required.
type Config struct {
	// Hostname appears in the greeting.
	Hostname string
	// TLS serves STLS on Serve listeners and the handshake on ServeTLS
	// listeners. Logins are refused until TLS is active.
	TLS *tls.Config
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Metrics may be nil; connections are counted as "pop3" and "pop3s".
	Metrics *metrics.Metrics
	// MaxConnsPerIP caps connections from one IPv4 address or IPv6 /64
	// across the server's listeners (default 20). Connections over it
	// get -ERR [SYS/TEMP] (plaintext) or are closed (implicit TLS).
	MaxConnsPerIP int
	// MaxConns caps all connections of the server (default 1000).
	MaxConns int
	// IdleTimeout ends a session that sends no command for this long,
	// without applying deletions (default and minimum per RFC 1939: 10
	// minutes; tests may set less).
	IdleTimeout time.Duration
	// LoginDelay, when positive, is advertised as LOGIN-DELAY (whole
	// seconds) and enforced: a login sooner than this after the account's
	// previous POP3 login gets -ERR [LOGIN-DELAY].
	LoginDelay time.Duration
	// Expire, when set, is advertised as EXPIRE: ExpireNever, or the days
	// (rounded up) after which retrieved mail may be deleted by the
	// server. Zero advertises nothing.
	Expire time.Duration
}

const (
	defaultMaxConnsPerIP = 20
	defaultMaxConns      = 1000
	defaultIdleTimeout   = 10 * time.Minute
	// writeTimeout bounds one reply (a RETR of a large message to a slow
	// client flushes many times; each flush gets this long).
	writeTimeout = 2 * time.Minute
	// handshakeTimeout bounds a TLS handshake.
	handshakeTimeout = 30 * time.Second
	// backendTimeout bounds one store or authenticator call.
	backendTimeout = time.Minute
	// maxAuthFailures ends a connection after this many failed logins; the
	// authenticator's per-client and per-name delays and blocks do the
	// rest across connections.
	maxAuthFailures = 3
	// maxBadCommands ends an unauthenticated connection after this many
	// unknown, malformed or out-of-state commands (cross-protocol attacks
	// send a stream of another protocol's lines).
	maxBadCommands = 10
	// maxSizeCache bounds the wire-size cache (entries); when full it
	// starts over.
	maxSizeCache = 1 << 20
)

// Server is a POP3 server. One Server may serve any number of listeners.
type Server struct {
	cfg  Config
	st   *store.Store
	auth *accounts.Authenticator
	log  *slog.Logger

	ctx    context.Context // cancelled by Shutdown
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// limit holds the MaxConns and MaxConnsPerIP slots of all listeners.
	limit *connlimit.Counter

	mu        sync.Mutex
	closing   bool
	listeners map[net.Listener]struct{}
	sessions  map[*session]struct{}
	locks     map[int64]struct{} // accounts whose maildrop a session holds
	lastLogin map[int64]time.Time

	sizeMu sync.Mutex
	sizes  map[sizeKey]int64
}

// sizeKey names a message for good: the store never reuses a UID under
// one UIDVALIDITY and bodies never change, so its wire size never changes.
type sizeKey struct {
	mailbox     int64
	uidValidity uint32
	uid         uint32
}

// New returns a Server over the store's INBOXes, logging in through auth
// (which must be the authenticator every other protocol of the process
// shares, so that failed logins are throttled across protocols).
func New(cfg Config, st *store.Store, auth *accounts.Authenticator) (*Server, error) {
	if cfg.Hostname == "" {
		return nil, errors.New("pop3: Config.Hostname is required")
	}
	if cfg.TLS == nil {
		return nil, errors.New("pop3: Config.TLS is required (logins are accepted only under TLS)")
	}
	if st == nil || auth == nil {
		return nil, errors.New("pop3: a store and an authenticator are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxConnsPerIP <= 0 {
		cfg.MaxConnsPerIP = defaultMaxConnsPerIP
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = defaultMaxConns
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = defaultIdleTimeout
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		cfg: cfg, st: st, auth: auth, log: cfg.Logger,
		ctx: ctx, cancel: cancel,
		limit:     connlimit.NewCounter(cfg.MaxConns, cfg.MaxConnsPerIP),
		listeners: map[net.Listener]struct{}{},
		sessions:  map[*session]struct{}{},
		locks:     map[int64]struct{}{},
		lastLogin: map[int64]time.Time{},
		sizes:     map[sizeKey]int64{},
	}, nil
}

// Serve accepts plaintext connections (port 110) that must use STLS
// before they can log in.
func (s *Server) Serve(ln net.Listener) error { return s.serve(ln, false) }

// ServeTLS accepts connections that begin with a TLS handshake (port 995,
// RFC 8314 implicit TLS).
func (s *Server) ServeTLS(ln net.Listener) error { return s.serve(ln, true) }

func (s *Server) serve(ln net.Listener, implicitTLS bool) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()
	service := "pop3"
	if implicitTLS {
		service = "pop3s"
	}
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("pop3 accept", "err", err, "retry_in", backoff)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("pop3: accept: %w", err)
		}
		backoff = 0
		sess, ok := s.track(c, implicitTLS)
		if !ok {
			go s.refuse(c, implicitTLS)
			continue
		}
		if s.cfg.Metrics != nil {
			s.cfg.Metrics.Connections.WithLabelValues(service).Inc()
		}
		go sess.run()
	}
}

func (s *Server) track(c net.Conn, implicitTLS bool) (*session, bool) {
	ip := connlimit.ClientAddr(c.RemoteAddr())
	release, err := s.limit.Acquire(ip)
	if err != nil {
		s.log.Warn("pop3 connection refused", "ip", ip.String(), "reason", err,
			"max_conns", s.cfg.MaxConns, "max_conns_per_ip", s.cfg.MaxConnsPerIP)
		return nil, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		release()
		return nil, false
	}
	sess := newSession(s, c, ip, release, implicitTLS)
	s.sessions[sess] = struct{}{}
	s.wg.Add(1)
	return sess, true
}

func (s *Server) untrack(sess *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.sessions, sess)
	sess.release()
	if sess.locked {
		delete(s.locks, sess.acct.ID)
		sess.locked = false
	}
}

// refuse answers a connection over a limit. Under implicit TLS a
// plaintext line would reach the client as a broken handshake, so the
// connection is just closed.
func (s *Server) refuse(c net.Conn, implicitTLS bool) {
	defer c.Close()
	if implicitTLS {
		return
	}
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, _ = c.Write([]byte("-ERR [SYS/TEMP] Too many connections, try again later\r\n"))
}

// lock takes the account's maildrop for sess; false if another session
// holds it. It also enforces LoginDelay.
func (s *Server) lock(sess *session, id int64) (inUse, tooSoon bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, held := s.locks[id]; held {
		return true, false
	}
	now := time.Now()
	if d := s.cfg.LoginDelay; d > 0 {
		if last, ok := s.lastLogin[id]; ok && now.Sub(last) < d {
			return false, true
		}
		s.lastLogin[id] = now
	}
	s.locks[id] = struct{}{}
	sess.locked = true
	return false, false
}

// unlock releases the maildrop early (after a failed snapshot).
func (s *Server) unlock(sess *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sess.locked {
		delete(s.locks, sess.acct.ID)
		sess.locked = false
	}
}

// Shutdown stops the listeners, ends every session that is waiting for a
// command (without applying its deletions: only QUIT does that), lets
// sessions finish the command they are running (an UPDATE in progress
// completes), and waits for them until ctx ends; then it closes what is
// left and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	for ln := range s.listeners {
		ln.Close()
	}
	for sess := range s.sessions {
		sess.drain()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		s.cancel()
		return nil
	case <-ctx.Done():
	}
	// Sessions still busy (a stuck store call, a client not reading a
	// RETR) are cut off; their context ends their backend calls.
	s.cancel()
	s.mu.Lock()
	for sess := range s.sessions {
		sess.raw.Close()
	}
	s.mu.Unlock()
	<-done
	return fmt.Errorf("pop3: shutdown: %w", ctx.Err())
}

// cachedSize returns a message's wire size from the cache.
func (s *Server) cachedSize(k sizeKey) (int64, bool) {
	s.sizeMu.Lock()
	defer s.sizeMu.Unlock()
	n, ok := s.sizes[k]
	return n, ok
}

func (s *Server) storeSize(k sizeKey, n int64) {
	s.sizeMu.Lock()
	defer s.sizeMu.Unlock()
	if len(s.sizes) >= maxSizeCache {
		clear(s.sizes)
	}
	s.sizes[k] = n
}
