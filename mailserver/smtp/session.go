package smtp

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"

	"mailconf/internal/connlimit"
	"mailconf/mailserver/smtp/sasllogin"
)

// Replies. go-smtp writes an *SMTPError returned by a session verbatim.
var (
	errAuthRequired = &gosmtp.SMTPError{Code: 530, EnhancedCode: gosmtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	errAuthInvalid  = &gosmtp.SMTPError{Code: 535, EnhancedCode: gosmtp.EnhancedCode{5, 7, 8}, Message: "Authentication credentials invalid"}
	errAuthTemp     = &gosmtp.SMTPError{Code: 454, EnhancedCode: gosmtp.EnhancedCode{4, 7, 0}, Message: "Temporary authentication failure"}
	errAuthTooMany  = &gosmtp.SMTPError{Code: 421, EnhancedCode: gosmtp.EnhancedCode{4, 7, 0}, Message: "Too many failed authentications, closing connection"}
	errNoAuthHere   = &gosmtp.SMTPError{Code: 502, EnhancedCode: gosmtp.EnhancedCode{5, 5, 1}, Message: "AUTH is not offered on this port; use submission (587/465)"}
	errNullSender   = &gosmtp.SMTPError{Code: 553, EnhancedCode: gosmtp.EnhancedCode{5, 7, 1}, Message: "Null sender is not allowed for submission"}
	errNotYours     = &gosmtp.SMTPError{Code: 553, EnhancedCode: gosmtp.EnhancedCode{5, 7, 1}, Message: "Sender address is not owned by the logged-in user"}
	errBadSender    = &gosmtp.SMTPError{Code: 553, EnhancedCode: gosmtp.EnhancedCode{5, 1, 7}, Message: "Bad sender address syntax"}
	errNeedUTF8     = &gosmtp.SMTPError{Code: 553, EnhancedCode: gosmtp.EnhancedCode{5, 6, 7}, Message: "Non-ASCII address needs SMTPUTF8"}
	errRelayDenied  = &gosmtp.SMTPError{Code: 554, EnhancedCode: gosmtp.EnhancedCode{5, 7, 1}, Message: "Relay access denied"}
	errNoSuchUser   = &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "No such user here"}
	errBadRcpt      = &gosmtp.SMTPError{Code: 553, EnhancedCode: gosmtp.EnhancedCode{5, 1, 3}, Message: "Bad destination mailbox address syntax"}
	errTempLookup   = &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 3, 0}, Message: "Temporary lookup failure, try again later"}
	errTempStore    = &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 3, 0}, Message: "Temporary local problem, try again later"}
	errAborted      = &gosmtp.SMTPError{Code: 421, EnhancedCode: gosmtp.EnhancedCode{4, 7, 0}, Message: "Connection is being closed"}
)

// session serves one client between EHLO and STARTTLS/QUIT. go-smtp makes
// a new one after STARTTLS, so TLS state and login never leak across.
type session struct {
	srv  *Server
	conn *gosmtp.Conn
	tc   *trackedConn
	ip   netip.Addr
	helo string
	tls  *tls.ConnectionState

	authUser     string
	authAddr     address
	authFailures int
	aborted      bool

	from string
	utf8 bool
	to   []string
	seen map[string]bool
}

func (s *Server) newSession(c *gosmtp.Conn) (gosmtp.Session, error) {
	sess := &session{srv: s, conn: c, tc: underlying(c.Conn()), helo: c.Hostname()}
	if sess.tc != nil {
		sess.ip = sess.tc.ip
	} else {
		sess.ip = connlimit.ClientAddr(c.Conn().RemoteAddr())
	}
	if st, ok := c.TLSConnectionState(); ok {
		sess.tls = &st
	}
	return sess, nil
}

func (s *session) submission() bool { return s.srv.mode == modeSubmission }

func (s *session) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(s.srv.ctx, backendTimeout)
}

// AuthMechanisms implements gosmtp.AuthSession. go-smtp offers them only
// under TLS (AllowInsecureAuth is false); the MX offers none.
func (s *session) AuthMechanisms() []string {
	if !s.submission() {
		return nil
	}
	return []string{sasl.Plain, sasllogin.Mechanism}
}

// Auth implements gosmtp.AuthSession.
func (s *session) Auth(mech string) (sasl.Server, error) {
	if !s.submission() {
		return nil, errNoAuthHere
	}
	if s.authFailures >= maxAuthFailures {
		s.abortReads()
		return nil, errAuthTooMany
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, username, password string) error {
			if identity != "" && identity != username {
				// Logging in as one user to act as another is not offered.
				return s.loginFailed(username, "authorization identity differs")
			}
			return s.login(username, password)
		}), nil
	case sasllogin.Mechanism:
		return sasllogin.NewServer(s.login), nil
	default:
		return nil, gosmtp.ErrAuthUnknownMechanism
	}
}

func (s *session) login(username, password string) error {
	if username == "" {
		return s.loginFailed(username, "empty username")
	}
	ctx, cancel := s.ctx()
	defer cancel()
	addr, err := s.srv.auth.Authenticate(ctx, "smtp", s.ip, username, password)
	switch {
	case errors.Is(err, ErrAuthFailed):
		return s.loginFailed(username, "invalid credentials")
	case err != nil:
		s.srv.log.Error("smtp auth error", "remote", s.ip, "user", username, "err", err)
		return errAuthTemp
	}
	a, err := parseAddress(addr)
	if err != nil {
		s.srv.log.Error("smtp auth: authenticator returned a bad address", "remote", s.ip, "user", username, "address", addr)
		return errAuthTemp
	}
	s.authUser, s.authAddr = a.String(), a
	s.srv.log.Info("smtp login", "remote", s.ip, "user", s.authUser)
	return nil
}

// loginFailed counts a failure; the last allowed one closes the connection
// right after its 535 is written.
func (s *session) loginFailed(username, reason string) error {
	s.authFailures++
	s.srv.log.Warn("smtp auth failed", "remote", s.ip, "user", username, "reason", reason, "failures", s.authFailures)
	if s.authFailures >= maxAuthFailures {
		s.abortReads()
	}
	return errAuthInvalid
}

// abortReads makes go-smtp's next read fail, so it closes the connection
// after its pending reply, and refuses any transaction still buffered.
func (s *session) abortReads() {
	s.aborted = true
	if s.tc != nil {
		s.tc.kill()
	}
}

// Mail implements gosmtp.Session.
func (s *session) Mail(from string, opts *gosmtp.MailOptions) error {
	if s.aborted {
		return errAborted
	}
	if !opts.UTF8 && !isASCII(from) {
		return errNeedUTF8
	}
	if strings.ContainsFunc(from, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return errBadSender
	}
	if s.submission() {
		if s.authUser == "" {
			return errAuthRequired
		}
		if from == "" {
			return errNullSender
		}
		a, err := parseAddress(from)
		if err != nil || !sameMailbox(a, s.authAddr) {
			s.srv.log.Warn("smtp sender refused", "remote", s.ip, "user", s.authUser, "from", from)
			return errNotYours
		}
		// The account's own spelling, so the queue and DSNs see one form.
		from = s.authUser
	}
	s.from, s.utf8 = from, opts.UTF8
	return nil
}

// Rcpt implements gosmtp.Session.
func (s *session) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	if s.aborted {
		return errAborted
	}
	if s.submission() && s.authUser == "" {
		return errAuthRequired
	}
	if !s.utf8 && !isASCII(to) {
		return errNeedUTF8
	}
	a, err := parseAddress(to)
	if s.submission() {
		if err != nil || checkLocalPart(a.local, s.utf8) != nil {
			return errBadRcpt
		}
	} else if err != nil {
		// IP literals, trailing dots and malformed domains are never
		// one of ours, so on the MX they are relay attempts.
		s.srv.log.Info("smtp relay denied", "remote", s.ip, "rcpt", to, "reason", err.Error())
		return errRelayDenied
	}
	if s.recipientsKnown() {
		ctx, cancel := s.ctx()
		served, exists, lerr := s.srv.recipients.Lookup(ctx, a.String())
		cancel()
		switch {
		case lerr != nil:
			s.srv.log.Error("smtp recipient lookup", "remote", s.ip, "rcpt", a.String(), "err", lerr)
			return errTempLookup
		case !served && !s.submission():
			s.srv.log.Info("smtp relay denied", "remote", s.ip, "rcpt", to, "reason", "domain not served")
			return errRelayDenied
		case served && (!exists || checkLocalPart(a.local, s.utf8) != nil):
			s.srv.log.Info("smtp unknown recipient", "remote", s.ip, "rcpt", to)
			return errNoSuchUser
		}
	}
	key := strings.ToLower(a.String())
	if s.seen == nil {
		s.seen = make(map[string]bool)
	}
	if !s.seen[key] {
		s.seen[key] = true
		s.to = append(s.to, a.String())
	}
	return nil
}

func (s *session) recipientsKnown() bool { return s.srv.recipients != nil }

// Reset implements gosmtp.Session.
func (s *session) Reset() {
	s.from, s.utf8, s.to, s.seen = "", false, nil, nil
}

// Logout implements gosmtp.Session.
func (s *session) Logout() error { return nil }

// dataInitialCap fits the Received header and a typical message in one
// allocation; dataMinRead is the least room offered to one Read, so that a
// large message grows the buffer (by doubling) rather than read in slivers.
const (
	dataInitialCap = 8 << 10
	dataMinRead    = 4 << 10
)

// Data implements gosmtp.Session. It reads the message itself instead of
// handing r to the store, for three reasons go-smtp leaves to us: the read
// deadline is re-armed per read (go-smtp's ReadTimeout would otherwise cap
// the whole transfer), bare CR and bare LF are refused as they arrive, and
// any read failure ends the connection so that the rest of a half-read
// message can never be parsed as commands.
func (s *session) Data(r io.Reader) error {
	if s.aborted {
		return errAborted
	}
	end := time.Now().Add(s.srv.cfg.DataTimeout)
	if s.tc != nil {
		s.tc.beginData(s.srv.cfg.ReadTimeout, end)
		defer s.tc.endData()
	}
	env := Envelope{
		ID:         newID(),
		From:       s.from,
		To:         append([]string(nil), s.to...),
		AuthUser:   s.authUser,
		RemoteIP:   s.ip,
		Helo:       s.helo,
		Submission: s.submission(),
		TLS:        s.tls != nil,
		UTF8:       s.utf8,
	}
	// The message is read straight in behind its Received header, so its
	// bytes are copied once, not into a read chunk, a buffer and then the
	// stored message. The header's time is thus the start of DATA.
	msg := s.appendReceived(make([]byte, 0, dataInitialCap), env, time.Now())
	hdrLen := len(msg)
	var nl newlineCheck
	for {
		msg = slices.Grow(msg, dataMinRead)
		n, err := r.Read(msg[len(msg):cap(msg)])
		if n > 0 {
			if !nl.ok(msg[len(msg) : len(msg)+n]) {
				s.srv.log.Warn("smtp bare CR or LF in DATA", "remote", s.ip, "user", s.authUser, "from", s.from)
				return s.abort(550, "5.5.2", "Bare CR or LF in message text is not allowed (RFC 5321 2.3.8), closing connection")
			}
			msg = msg[:len(msg)+n]
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			var ne net.Error
			switch {
			case errors.Is(err, gosmtp.ErrDataTooLarge):
				// go-smtp drains the rest up to the terminator and
				// keeps the connection in step.
				s.srv.log.Info("smtp message too large", "remote", s.ip, "from", s.from, "limit", s.srv.cfg.MaxMessageBytes)
				return gosmtp.ErrDataTooLarge
			case errors.Is(err, gosmtp.ErrTooLongLine):
				s.srv.log.Info("smtp line too long in DATA", "remote", s.ip, "from", s.from, "limit", s.srv.cfg.MaxLineLength)
				return s.abort(500, "5.5.2", fmt.Sprintf("Line too long (limit %d bytes), closing connection", s.srv.cfg.MaxLineLength))
			case errors.As(err, &ne) && ne.Timeout():
				s.srv.log.Info("smtp timeout in DATA", "remote", s.ip, "from", s.from)
				return s.abort(421, "4.4.2", "Timeout during DATA, closing connection")
			default:
				s.srv.log.Info("smtp connection lost in DATA", "remote", s.ip, "from", s.from, "err", err)
				return s.abort(421, "4.4.0", "Connection error during DATA")
			}
		}
	}
	// Reject an unterminated last line rather than let the store append
	// one: the bytes must stay exactly as received.
	if !nl.endsWithCRLF(msg[hdrLen:]) {
		return s.abort(550, "5.5.2", "Message does not end with CRLF, closing connection")
	}

	ctx, cancel := s.ctx()
	defer cancel()
	if err := s.srv.sink.Accept(ctx, env, msg); err != nil {
		s.srv.log.Error("smtp store message", "remote", s.ip, "id", env.ID, "from", env.From, "err", err)
		return errTempStore
	}
	if m := s.srv.cfg.Metrics; m != nil {
		m.Messages.WithLabelValues("in").Inc()
	}
	s.srv.log.Info("smtp message accepted", "remote", s.ip, "id", env.ID, "from", env.From,
		"rcpts", len(env.To), "size", len(msg), "user", env.AuthUser, "tls", env.TLS)
	// A 250 "error" lets the reply name the id, which the client's log and
	// ours then share.
	return &gosmtp.SMTPError{Code: 250, EnhancedCode: gosmtp.EnhancedCode{2, 0, 0}, Message: "OK: queued as " + env.ID}
}

// abort answers the DATA command itself and closes the connection: after a
// broken DATA phase nobody can say where the message ended, and the bytes
// that follow (a smuggled transaction, the rest of a stalled message) must
// never be read as commands.
func (s *session) abort(code int, enhanced, text string) error {
	s.abortReads()
	raw := s.conn.Conn()
	_ = raw.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, _ = fmt.Fprintf(raw, "%d %s %s\r\n", code, enhanced, text)
	if s.tc != nil {
		s.tc.lingerClose()
	}
	return errAborted
}

// newlineCheck finds a CR not followed by LF or an LF not preceded by CR,
// across chunk boundaries.
type newlineCheck struct {
	prev    byte
	started bool
}

func (c *newlineCheck) ok(b []byte) bool {
	prev := c.prev
	if !c.started {
		prev, c.started = '\n', true
	}
	for _, ch := range b {
		if prev == '\r' && ch != '\n' {
			return false
		}
		if ch == '\n' && prev != '\r' {
			return false
		}
		prev = ch
	}
	c.prev = prev
	return true
}

func (c *newlineCheck) endsWithCRLF(b []byte) bool {
	return len(b) == 0 || bytes.HasSuffix(b, []byte("\r\n"))
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return strings.ToUpper(hex.EncodeToString(b[:]))
}
