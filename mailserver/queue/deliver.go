package queue

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/smtp"
	"net/textproto"
	"strings"
	"time"

	"mailconf/mailserver/store"
)

// attempt makes one delivery attempt for every pending recipient of e and
// records the outcome.
func (q *Queue) attempt(ctx context.Context, e store.QueueEntry) {
	log := q.log.With("queue_id", e.ID, "from", e.Sender)
	pending := e.Pending()
	if len(pending) == 0 {
		q.finish(ctx, e.ID)
		return
	}
	body, err := q.readBody(ctx, e.ID)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return // deleted by the operator meanwhile
		}
		log.Error("queue read body", "err", err)
		q.reschedule(ctx, e, err.Error())
		return
	}
	// Group recipients by domain: one session per destination.
	var order []string
	groups := map[string][]string{}
	for _, r := range pending {
		d := ""
		if q.cfg.Smarthost == "" {
			d = domainOf(r)
		}
		if _, ok := groups[d]; !ok {
			order = append(order, d)
		}
		groups[d] = append(groups[d], r)
	}
	failures := map[string]*failure{}
	for _, d := range order {
		for r, f := range q.deliverGroup(ctx, e, d, groups[d], body) {
			failures[r] = f
		}
		if ctx.Err() != nil {
			break
		}
	}
	if ctx.Err() != nil {
		// Shut down mid-attempt: leave the rest pending, unscheduled.
		return
	}
	recordCtx := context.WithoutCancel(ctx)
	expired := q.cfg.Now().Sub(e.Created) >= q.cfg.MaxAge
	var bounced []bounce
	var deferred []store.RecipientUpdate
	var lastErr string
	for _, r := range pending {
		f, ok := failures[r]
		if !ok {
			continue // delivered, already recorded
		}
		lastErr = r + ": " + f.String()
		if !f.perm && expired {
			g := *f
			g.perm, g.note = true, "gave up after "+q.cfg.MaxAge.String()
			f = &g
			if !strings.HasPrefix(f.status, "4.") && !strings.HasPrefix(f.status, "5.") {
				f.status = "4.4.7"
			}
		}
		if f.perm {
			bounced = append(bounced, bounce{rcpt: r, f: f})
			log.Warn("queue recipient failed", "rcpt", r, "status", f.status, "reason", f.String())
			continue
		}
		log.Info("queue recipient deferred", "rcpt", r, "reason", f.text)
		deferred = append(deferred, store.RecipientUpdate{Rcpt: r, Status: store.RcptPending, Reason: f.String()})
	}
	if err := q.st.SetRecipientStatus(recordCtx, e.ID, deferred...); err != nil {
		log.Error("queue record deferrals", "rcpts", len(deferred), "err", err)
	}
	if len(bounced) > 0 {
		// The DSN is queued before the recipients are marked failed: after
		// a crash in between the sender may get it twice, never not at all.
		if e.Sender != "" {
			if err := q.sendDSN(recordCtx, e, bounced, body); err != nil {
				log.Error("queue DSN", "err", err)
			}
		}
		failed := make([]store.RecipientUpdate, 0, len(bounced))
		for _, b := range bounced {
			failed = append(failed, store.RecipientUpdate{Rcpt: b.rcpt, Status: store.RcptFailed, Reason: b.f.String()})
		}
		if err := q.st.SetRecipientStatus(recordCtx, e.ID, failed...); err != nil {
			log.Error("queue record failures", "rcpts", len(failed), "err", err)
		}
	}
	left, err := q.st.QueueEntry(recordCtx, e.ID)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			log.Error("queue reload", "err", err)
		}
		return
	}
	if len(left.Pending()) == 0 {
		q.finish(recordCtx, e.ID)
		return
	}
	q.reschedule(recordCtx, left, lastErr)
}

func (q *Queue) reschedule(ctx context.Context, e store.QueueEntry, lastErr string) {
	next := q.cfg.Now().Add(q.cfg.Backoff(e.Attempts + 1))
	if err := q.st.Reschedule(ctx, e.ID, next, lastErr); err != nil && !errors.Is(err, store.ErrNotFound) {
		q.log.Error("queue reschedule", "queue_id", e.ID, "err", err)
	}
}

// finish removes an entry whose every recipient is delivered or failed.
func (q *Queue) finish(ctx context.Context, id int64) {
	if err := q.st.QueueDelete(ctx, id); err != nil && !errors.Is(err, store.ErrNotFound) {
		q.log.Error("queue remove finished entry", "queue_id", id, "err", err)
		return
	}
	q.log.Info("queue entry done", "queue_id", id)
	q.updateGauge(ctx)
}

func (q *Queue) readBody(ctx context.Context, id int64) ([]byte, error) {
	b, err := q.st.OpenQueued(ctx, id)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	data, err := io.ReadAll(b)
	if err != nil {
		return nil, fmt.Errorf("queue: read body %d: %w", id, err)
	}
	return data, nil
}

func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return strings.ToLower(addr[i+1:])
	}
	return ""
}

// deliverGroup tries the targets for one destination in order until one
// session gets as far as the recipients. It returns the failures; every
// recipient not in the map was delivered (and recorded).
func (q *Queue) deliverGroup(ctx context.Context, e store.QueueEntry, domain string, rcpts []string, body []byte) map[string]*failure {
	all := func(f *failure) map[string]*failure {
		m := make(map[string]*failure, len(rcpts))
		for _, r := range rcpts {
			m[r] = f
		}
		return m
	}
	targets, f := q.route(ctx, domain)
	if f != nil {
		return all(f)
	}
	var last *failure
	for _, t := range targets {
		res, err := q.session(ctx, t, e, rcpts, body, true)
		if errors.Is(err, errTLSHandshake) && !t.smarthost && !t.implicit {
			// Opportunistic TLS that cannot be negotiated falls back to
			// plaintext, as other MTAs do, rather than never delivering.
			q.log.Warn("queue STARTTLS failed, retrying without TLS", "queue_id", e.ID, "host", t.name, "addr", t.addr)
			res, err = q.session(ctx, t, e, rcpts, body, false)
		}
		if err == nil {
			return res
		}
		if ctx.Err() != nil {
			return all(tempf("4.4.2", "shutting down"))
		}
		if errors.As(err, &f) {
			last = f
		} else {
			last = tempf("4.4.1", "%s (%s): %v", t.name, t.addr, err)
		}
		q.log.Info("queue host failed", "queue_id", e.ID, "host", t.name, "addr", t.addr, "err", err)
	}
	if last == nil {
		last = tempf("4.4.1", "no host to try for %s", domain)
	}
	return all(last)
}

var errTLSHandshake = errors.New("STARTTLS handshake failed")

// session runs one SMTP transaction at t. An error means "try the next
// host"; recipients the session got to have their outcome in the map.
func (q *Queue) session(ctx context.Context, t target, e store.QueueEntry, rcpts []string, body []byte, useTLS bool) (map[string]*failure, error) {
	ctx, cancel := context.WithTimeout(ctx, q.cfg.ConnTimeout)
	defer cancel()
	d := net.Dialer{Timeout: dialTimeout}
	conn, err := d.DialContext(ctx, "tcp", t.addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stopClose := context.AfterFunc(ctx, func() { conn.Close() })
	defer stopClose()

	tlsMode := "none"
	if t.implicit {
		tc := tls.Client(conn, q.verifiedTLS(t.name))
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, fmt.Errorf("TLS: %w", err)
		}
		conn, tlsMode = tc, "verified"
	}
	c, err := smtp.NewClient(conn, t.name)
	if err != nil {
		return nil, replyFailure(err, t.name)
	}
	defer c.Close()
	if err := c.Hello(q.cfg.Hostname); err != nil {
		return nil, replyFailure(err, t.name)
	}
	if !t.implicit && useTLS {
		if ok, _ := c.Extension("STARTTLS"); ok {
			var cfg *tls.Config
			verified := new(bool)
			if t.smarthost {
				cfg = q.verifiedTLS(t.name)
			} else {
				cfg = q.opportunisticTLS(t.name, verified)
			}
			if err := c.StartTLS(cfg); err != nil {
				var te *textproto.Error
				if errors.As(err, &te) {
					return nil, replyFailure(err, t.name)
				}
				if t.smarthost {
					return nil, fmt.Errorf("TLS with smarthost: %w", err)
				}
				return nil, fmt.Errorf("%w: %v", errTLSHandshake, err)
			}
			tlsMode = "unverified"
			if t.smarthost || *verified {
				tlsMode = "verified"
			}
		}
	}
	if t.smarthost && tlsMode == "none" {
		return nil, tempf("4.7.10", "smarthost %s does not offer STARTTLS; refusing to send in plaintext", t.name)
	}
	if t.smarthost && q.cfg.Username != "" {
		if err := c.Auth(q.saslFor(c, t.name)); err != nil {
			f := replyFailure(err, t.name)
			// A rejected login is the operator's to fix: defer, never bounce.
			f.perm = false
			if strings.HasPrefix(f.status, "5.") {
				f.status = "4" + f.status[1:]
			}
			return nil, f
		}
	}
	if err := c.Mail(e.Sender); err != nil {
		f := replyFailure(err, t.name)
		if f.perm {
			out := map[string]*failure{}
			for _, r := range rcpts {
				out[r] = f
			}
			return out, nil
		}
		return nil, f
	}
	out := map[string]*failure{}
	var accepted []string
	for _, r := range rcpts {
		if err := c.Rcpt(r); err != nil {
			var te *textproto.Error
			if !errors.As(err, &te) {
				return nil, err
			}
			out[r] = replyFailure(err, t.name)
			continue
		}
		accepted = append(accepted, r)
	}
	if len(accepted) == 0 {
		_ = c.Quit()
		return out, nil
	}
	w, err := c.Data()
	if err == nil {
		if _, err = w.Write(body); err == nil {
			err = w.Close()
		}
	}
	if err != nil {
		var te *textproto.Error
		if !errors.As(err, &te) {
			// Connection lost mid-DATA: whether the message arrived is
			// unknown; retry later (a possible duplicate beats a loss).
			for _, r := range accepted {
				out[r] = tempf("4.4.2", "%s: connection lost during DATA: %v", t.name, err)
			}
			return out, nil
		}
		f := replyFailure(err, t.name)
		for _, r := range accepted {
			out[r] = f
		}
		_ = c.Quit()
		return out, nil
	}
	// The 250 is recorded before anything else, QUIT included.
	recordCtx := context.WithoutCancel(ctx)
	delivered := make([]store.RecipientUpdate, 0, len(accepted))
	for _, r := range accepted {
		delivered = append(delivered, store.RecipientUpdate{Rcpt: r, Status: store.RcptDelivered})
	}
	if err := q.st.SetRecipientStatus(recordCtx, e.ID, delivered...); err != nil {
		q.log.Error("queue record delivery", "queue_id", e.ID, "rcpts", len(accepted), "err", err)
	}
	if m := q.cfg.Metrics; m != nil {
		m.Messages.WithLabelValues("out").Inc()
	}
	q.log.Info("queue delivered", "queue_id", e.ID, "host", t.name, "addr", t.addr, "rcpts", len(accepted), "tls", tlsMode)
	_ = c.Quit()
	return out, nil
}

// replyFailure turns a client error into a failure; only an SMTP reply
// with a 5xx code is permanent.
func replyFailure(err error, host string) *failure {
	var te *textproto.Error
	if !errors.As(err, &te) {
		return tempf("4.4.1", "%s: %v", host, err)
	}
	msg := strings.Join(strings.Fields(te.Msg), " ")
	status := ""
	if code, rest, ok := strings.Cut(msg, " "); ok && isEnhanced(code) {
		status = code
		_ = rest
	}
	perm := te.Code >= 500 && te.Code < 600
	if status == "" || (perm != strings.HasPrefix(status, "5.")) {
		if perm {
			status = "5.0.0"
		} else {
			status = "4.0.0"
		}
	}
	return &failure{perm: perm, status: status, text: fmt.Sprintf("%d %s", te.Code, msg), smtpReply: true, remoteMTA: host}
}

func isEnhanced(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || (parts[0] != "2" && parts[0] != "4" && parts[0] != "5") {
		return false
	}
	for _, p := range parts[1:] {
		if p == "" || len(p) > 3 || strings.Trim(p, "0123456789") != "" {
			return false
		}
	}
	return true
}

func (q *Queue) verifiedTLS(name string) *tls.Config {
	return &tls.Config{ServerName: name, RootCAs: q.cfg.RootCAs, MinVersion: tls.VersionTLS12}
}

// opportunisticTLS encrypts even when the certificate cannot be verified
// (RFC 7435: better than plaintext), and notes whether it could.
func (q *Queue) opportunisticTLS(name string, verified *bool) *tls.Config {
	roots := q.cfg.RootCAs
	return &tls.Config{
		ServerName:         name,
		InsecureSkipVerify: true,
		MinVersion:         tls.VersionTLS12,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return nil
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
				DNSName: name, Roots: roots, Intermediates: inter, CurrentTime: time.Now(),
			})
			*verified = err == nil
			return nil
		},
	}
}

// saslFor picks PLAIN when offered, else LOGIN.
func (q *Queue) saslFor(c *smtp.Client, host string) smtp.Auth {
	_, mechs := c.Extension("AUTH")
	for _, m := range strings.Fields(strings.ToUpper(mechs)) {
		if m == "PLAIN" {
			return &clientAuth{mech: "PLAIN", user: q.cfg.Username, pass: q.password}
		}
	}
	return &clientAuth{mech: "LOGIN", user: q.cfg.Username, pass: q.password}
}

// clientAuth is SASL PLAIN (RFC 4616) or LOGIN for net/smtp, refusing to
// send the password unless the connection is encrypted.
type clientAuth struct {
	mech, user, pass string
	step             int
}

func (a *clientAuth) Start(server *smtp.ServerInfo) (string, []byte, error) {
	if !server.TLS {
		return "", nil, errors.New("queue: refusing AUTH without TLS")
	}
	if a.mech == "PLAIN" {
		resp := make([]byte, 0, len(a.user)+len(a.pass)+2)
		resp = append(append(append(append(resp, 0), a.user...), 0), a.pass...)
		return "PLAIN", resp, nil
	}
	return "LOGIN", nil, nil
}

func (a *clientAuth) Next(fromServer []byte, more bool) ([]byte, error) {
	if !more {
		return nil, nil
	}
	if a.mech != "LOGIN" {
		return nil, errors.New("queue: unexpected AUTH PLAIN challenge")
	}
	a.step++
	switch {
	case a.step == 1 && !bytes.Contains(bytes.ToLower(fromServer), []byte("password")):
		return []byte(a.user), nil
	case a.step <= 2:
		return []byte(a.pass), nil
	default:
		return nil, errors.New("queue: unexpected AUTH LOGIN challenge")
	}
}
