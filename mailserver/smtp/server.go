// Package smtp runs the SMTP listeners of the built-in mail server on top of
// github.com/emersion/go-smtp: the MX on port 25 (mail for local mailboxes
// only, no AUTH) and message submission on 587 (STARTTLS) and 465 (implicit
// TLS) for logged-in users. It adds what go-smtp leaves to the application
// (reference/mailserver.md §2.4): rejecting bare CR/LF, sender-vs-login
// checks, connection limits, an idle timeout during DATA, a limit on failed
// AUTHs per connection and a graceful shutdown that ends idle sessions.
//
// Storage and accounts are reached through the small interfaces below; the
// mail store and the authenticator implement them.
package smtp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"mailconf/internal/connlimit"
	"mailconf/internal/metrics"
)

// ErrAuthFailed is what an Authenticator returns (possibly wrapped) for
// wrong credentials or an unknown user; it is answered 535 5.7.8. Any other
// error is answered 454 4.7.0 (temporary) and logged.
var ErrAuthFailed = errors.New("smtp: authentication failed")

// Authenticator checks a login. It is shared by every protocol, which is why
// it gets the protocol name ("smtp") and the client address: it owns the
// slow-down and blocking of password guessing. It returns the account's
// canonical address, against which MAIL FROM is checked.
type Authenticator interface {
	Authenticate(ctx context.Context, protocol string, remote netip.Addr, username, password string) (address string, err error)
}

// Recipients tells whether an address belongs to a served domain and
// whether that mailbox exists. addr has its domain lower-cased in A-label
// form; the local part is as the client sent it.
type Recipients interface {
	Lookup(ctx context.Context, addr string) (served bool, exists bool, err error)
}

// Sink takes a complete message. It returns only after the message is
// durably committed (fsync), because the client gets its 250 right after.
// An error makes the client retry later (451 4.3.0).
type Sink interface {
	Accept(ctx context.Context, env Envelope, data []byte) error
}

// Envelope describes one received message.
type Envelope struct {
	ID         string     // id also written into the Received header and logs
	From       string     // reverse-path; "" is the null sender (MX only)
	To         []string   // recipients, deduplicated, domains canonical
	AuthUser   string     // canonical address of the logged-in user (submission)
	RemoteIP   netip.Addr // client address
	Helo       string     // EHLO/HELO argument as sent
	Submission bool       // from 587/465: remote recipients are to be relayed
	TLS        bool       // the message arrived over TLS
	UTF8       bool       // MAIL FROM carried SMTPUTF8
}

// Config holds the limits and identity shared by all three listeners.
// Zero values take the defaults named per field.
type Config struct {
	Hostname        string        // greeting and Received "by"; required
	MaxMessageBytes int64         // advertised as SIZE and enforced; default 25 MiB
	MaxRecipients   int           // RCPTs per transaction; default 100
	MaxLineLength   int           // bytes per line, commands and DATA alike; default 4096
	ReadTimeout     time.Duration // idle time waiting for a command or for DATA bytes; default 5 min
	WriteTimeout    time.Duration // default 1 min
	DataTimeout     time.Duration // cap on one whole DATA transfer; default 30 min
	MaxConnsPerIP   int           // per IPv4 address / IPv6 /64; default 20
	MaxConns        int           // per listener; default 1000
	TLS             *tls.Config   // required for submission; enables STARTTLS on 25
	Logger          *slog.Logger  // default slog.Default()
	Metrics         *metrics.Metrics
}

const (
	defaultMaxMessageBytes = 25 << 20
	defaultMaxRecipients   = 100
	defaultMaxLineLength   = 4096
	defaultReadTimeout     = 5 * time.Minute
	defaultWriteTimeout    = time.Minute
	defaultDataTimeout     = 30 * time.Minute
	defaultMaxConnsPerIP   = 20
	defaultMaxConns        = 1000
	// maxAuthFailures ends a connection after this many failed AUTHs; the
	// authenticator's per-IP and per-account delays do the rest.
	maxAuthFailures = 3
	// backendTimeout bounds one store or authenticator call.
	backendTimeout = time.Minute
)

func (c Config) withDefaults() Config {
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = defaultMaxMessageBytes
	}
	if c.MaxRecipients <= 0 {
		c.MaxRecipients = defaultMaxRecipients
	}
	if c.MaxLineLength <= 0 {
		c.MaxLineLength = defaultMaxLineLength
	}
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = defaultReadTimeout
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = defaultWriteTimeout
	}
	if c.DataTimeout <= 0 {
		c.DataTimeout = defaultDataTimeout
	}
	if c.MaxConnsPerIP <= 0 {
		c.MaxConnsPerIP = defaultMaxConnsPerIP
	}
	if c.MaxConns <= 0 {
		c.MaxConns = defaultMaxConns
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

type mode int

const (
	modeMX mode = iota
	modeSubmission
)

// Server is one SMTP listener (MX, submission or submissions).
type Server struct {
	cfg         Config
	mode        mode
	implicitTLS bool
	service     string // metrics label and log field
	log         *slog.Logger
	auth        Authenticator
	recipients  Recipients
	sink        Sink
	smtp        *gosmtp.Server

	// ctx is cancelled by a forced stop, aborting store and auth calls.
	ctx    context.Context
	cancel context.CancelFunc

	// limit holds the MaxConns and MaxConnsPerIP slots.
	limit *connlimit.Counter

	mu       sync.Mutex
	conns    map[*trackedConn]struct{}
	draining bool
	// listeners are closed by Shutdown itself too: go-smtp only closes
	// the ones its Serve has registered, and a Serve that starts just
	// after Shutdown would otherwise accept forever.
	listeners []net.Listener
}

// NewMX returns the port 25 server: mail for existing mailboxes of served
// domains, nothing else, no AUTH. cfg.TLS, when set, enables STARTTLS.
func NewMX(cfg Config, recipients Recipients, sink Sink) (*Server, error) {
	if recipients == nil || sink == nil {
		return nil, errors.New("smtp: mx: recipients and sink are required")
	}
	return newServer(cfg, modeMX, false, nil, recipients, sink)
}

// NewSubmission returns a submission server: 587 with STARTTLS when
// implicitTLS is false, 465 when it is true. AUTH (PLAIN, LOGIN) is offered
// only under TLS. recipients may be nil; when set, RCPT to a served domain
// is refused at once (550 5.1.1) if the mailbox does not exist, instead of
// accepting it and bouncing later.
func NewSubmission(cfg Config, auth Authenticator, recipients Recipients, sink Sink, implicitTLS bool) (*Server, error) {
	if auth == nil || sink == nil {
		return nil, errors.New("smtp: submission: authenticator and sink are required")
	}
	if cfg.TLS == nil {
		return nil, errors.New("smtp: submission: a TLS configuration is required (AUTH is only offered under TLS)")
	}
	return newServer(cfg, modeSubmission, implicitTLS, auth, recipients, sink)
}

func newServer(cfg Config, m mode, implicitTLS bool, auth Authenticator, recipients Recipients, sink Sink) (*Server, error) {
	if cfg.Hostname == "" {
		return nil, errors.New("smtp: Config.Hostname is required")
	}
	cfg = cfg.withDefaults()
	s := &Server{
		cfg:         cfg,
		mode:        m,
		implicitTLS: implicitTLS,
		auth:        auth,
		recipients:  recipients,
		sink:        sink,
		limit:       connlimit.NewCounter(cfg.MaxConns, cfg.MaxConnsPerIP),
		conns:       make(map[*trackedConn]struct{}),
	}
	switch {
	case m == modeMX:
		s.service = "smtp"
	case implicitTLS:
		s.service = "submissions"
	default:
		s.service = "submission"
	}
	s.log = cfg.Logger.With("service", s.service)
	s.ctx, s.cancel = context.WithCancel(context.Background())

	gs := gosmtp.NewServer(gosmtp.BackendFunc(s.newSession))
	gs.Domain = cfg.Hostname
	gs.TLSConfig = cfg.TLS
	gs.MaxMessageBytes = cfg.MaxMessageBytes
	gs.MaxRecipients = cfg.MaxRecipients
	gs.MaxLineLength = cfg.MaxLineLength
	gs.ReadTimeout = cfg.ReadTimeout
	gs.WriteTimeout = cfg.WriteTimeout
	gs.EnableSMTPUTF8 = true
	gs.AllowInsecureAuth = false
	// go-smtp's Debug would copy AUTH lines (passwords) to the log; it
	// stays nil.
	gs.ErrorLog = errorLog{s.log}
	s.smtp = gs
	return s, nil
}

// Serve accepts connections on ln until Shutdown. For a submissions server
// (465) ln is the plain TCP listener; TLS is added here, below go-smtp, so
// the handshake runs under the read/write timeouts.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.draining {
		s.mu.Unlock()
		return fmt.Errorf("smtp: %s: serve: %w", s.service, gosmtp.ErrServerClosed)
	}
	s.listeners = append(s.listeners, ln)
	s.mu.Unlock()
	var l net.Listener = &limitListener{Listener: ln, srv: s}
	if s.implicitTLS {
		l = tls.NewListener(l, s.cfg.TLS)
	}
	s.log.Info("smtp listening", "addr", ln.Addr().String())
	if err := s.smtp.Serve(l); err != nil {
		s.mu.Lock()
		draining := s.draining
		s.mu.Unlock()
		if draining {
			return nil
		}
		return fmt.Errorf("smtp: %s: serve: %w", s.service, err)
	}
	return nil
}

// Shutdown stops accepting, ends idle sessions (they get 421) and waits for
// running DATA transfers to be committed and answered. When ctx expires
// first, the remaining connections are closed and ctx's error returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.draining {
		s.mu.Unlock()
		return nil
	}
	s.draining = true
	conns := make([]*trackedConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.drain()
	}
	s.mu.Lock()
	for _, ln := range s.listeners {
		_ = ln.Close()
	}
	s.mu.Unlock()
	// go-smtp closes its listeners again and reports that as an error;
	// only the context running out matters here.
	_ = s.smtp.Shutdown(ctx)
	defer s.cancel()
	if err := ctx.Err(); err != nil {
		_ = s.smtp.Close()
		return fmt.Errorf("smtp: %s: shutdown: %w", s.service, err)
	}
	return nil
}

// errorLog routes go-smtp's internal error messages (failed TLS
// handshakes, recovered panics) to slog.
type errorLog struct{ log *slog.Logger }

func (e errorLog) Printf(format string, v ...any) {
	e.log.Warn("smtp library", "msg", fmt.Sprintf(format, v...))
}

func (e errorLog) Println(v ...any) {
	e.log.Warn("smtp library", "msg", fmt.Sprint(v...))
}
