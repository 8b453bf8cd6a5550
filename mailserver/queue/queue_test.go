package queue

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"mime"
	"mime/multipart"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"

	"mailconf/internal/testutil"
	"mailconf/mailserver/store"
)

func TestDeliverOverVerifiedSTARTTLSToPreferredLiveMX(t *testing.T) {
	w := newWorld(t, worldOpts{starttls: true})
	w.start(w.config())
	id := w.enqueue("alice@example.test", []string{"bob@remote.test", "carol@remote.test"}, testMsg)
	waitFor(t, "delivery", func() bool { return len(w.rx.messages()) == 1 })
	waitFor(t, "queue drained", func() bool { _, ok := w.entry(id); return !ok })
	m := w.rx.messages()[0]
	if !bytes.Equal(m.data, []byte(testMsg)) {
		t.Errorf("received bytes differ:\n%q\nwant\n%q", m.data, testMsg)
	}
	if m.from != "alice@example.test" || strings.Join(m.to, ",") != "bob@remote.test,carol@remote.test" {
		t.Errorf("envelope: from %q to %v", m.from, m.to)
	}
	if !m.tls {
		t.Error("message was not sent over TLS")
	}
	if !strings.Contains(w.log(), "tls=verified") {
		t.Errorf("log does not record verified TLS:\n%s", w.log())
	}
	if got := metricValue(t, w.metrics.Messages.WithLabelValues("out")); got != 1 {
		t.Errorf("messages out = %v, want 1", got)
	}
	// The gauge follows the queue once the worker has looked again.
	waitFor(t, "queue size gauge 0", func() bool { return metricValue(t, w.metrics.QueueSize) == 0 })
	if len(w.inbox()) != 0 {
		t.Error("a DSN was sent for a delivered message")
	}
}

func TestOpportunisticTLSWithUntrustedCertificate(t *testing.T) {
	w := newWorld(t, worldOpts{starttls: true})
	cfg := w.config()
	cfg.RootCAs = nil // the test CA is unknown: encrypt anyway, note it
	w.start(cfg)
	w.enqueue("alice@example.test", []string{"bob@remote.test"}, testMsg)
	waitFor(t, "delivery", func() bool { return len(w.rx.messages()) == 1 })
	if !w.rx.messages()[0].tls {
		t.Error("opportunistic TLS was not used")
	}
	waitFor(t, "log", func() bool { return strings.Contains(w.log(), "tls=unverified") })
}

// TestSTARTTLSFailureFallsBackToPlaintext: opportunistic TLS that cannot
// be negotiated (here the receiver offers only TLS 1.1, below the queue's
// minimum) is retried in plaintext on a new connection, as other MTAs do,
// rather than never delivering.
func TestSTARTTLSFailureFallsBackToPlaintext(t *testing.T) {
	rx := &receiver{tlsMaxVersion: tls.VersionTLS11}
	w := newWorld(t, worldOpts{rx: rx, starttls: true})
	w.start(w.config())
	id := w.enqueue("alice@example.test", []string{"bob@remote.test"}, testMsg)
	waitFor(t, "delivery", func() bool { return len(rx.messages()) == 1 })
	waitFor(t, "queue drained", func() bool { _, ok := w.entry(id); return !ok })
	if rx.messages()[0].tls {
		t.Error("delivered over TLS although the handshake cannot succeed")
	}
	if n := rx.conns.Load(); n != 2 {
		t.Errorf("receiver saw %d connections, want 2 (TLS attempt, then plaintext)", n)
	}
	if !strings.Contains(w.log(), "retrying without TLS") {
		t.Errorf("log does not record the fallback:\n%s", w.log())
	}
}

func TestPlaintextWhenNoSTARTTLS(t *testing.T) {
	w := newWorld(t, worldOpts{})
	w.start(w.config())
	w.enqueue("alice@example.test", []string{"bob@remote.test"}, testMsg)
	waitFor(t, "delivery", func() bool { return len(w.rx.messages()) == 1 })
	if w.rx.messages()[0].tls {
		t.Error("TLS reported without STARTTLS")
	}
}

func TestTemporaryFailureThenSuccess(t *testing.T) {
	rx := &receiver{dataErr: func(n int) error {
		if n == 1 {
			return &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 3, 0}, Message: "try later"}
		}
		return nil
	}}
	w := newWorld(t, worldOpts{rx: rx})
	q, _ := w.start(w.config())
	id := w.enqueue("alice@example.test", []string{"bob@remote.test"}, testMsg)
	waitFor(t, "first attempt", func() bool {
		e, ok := w.entry(id)
		return ok && e.Attempts == 1
	})
	e, _ := w.entry(id)
	if !strings.Contains(e.LastError, "451") || e.Recipients[0].Status != store.RcptPending {
		t.Fatalf("after 451: %+v", e)
	}
	if want := w.clock.Now().Add(time.Minute); !e.NextAttempt.Equal(want) {
		t.Errorf("next attempt %v, want %v (back-off)", e.NextAttempt, want)
	}
	// Not due yet: nothing happens on a wake.
	q.Wake()
	time.Sleep(100 * time.Millisecond)
	if rx.dataCalls.Load() != 1 {
		t.Fatalf("retried before the back-off elapsed (%d DATA)", rx.dataCalls.Load())
	}
	w.clock.Advance(time.Minute)
	q.Wake()
	waitFor(t, "retry delivered", func() bool { return len(rx.messages()) == 1 })
	waitFor(t, "queue drained", func() bool { _, ok := w.entry(id); return !ok })
	if len(w.inbox()) != 0 {
		t.Error("a DSN was sent for a message delivered on retry")
	}
}

// dsnReport parses a DSN and returns its delivery-status blocks.
func dsnReport(t *testing.T, raw []byte) (hdr textproto.MIMEHeader, blocks []textproto.MIMEHeader, parts []string) {
	t.Helper()
	tr := textproto.NewReader(bufio.NewReader(bytes.NewReader(raw)))
	hdr, err := tr.ReadMIMEHeader()
	if err != nil {
		t.Fatalf("DSN header: %v", err)
	}
	mt, params, err := mime.ParseMediaType(hdr.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("DSN content type %q (%v)", hdr.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(tr.R, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		ct := p.Header.Get("Content-Type")
		parts = append(parts, strings.SplitN(ct, ";", 2)[0])
		if ct == "message/delivery-status" {
			br := textproto.NewReader(bufio.NewReader(p))
			for {
				b, err := br.ReadMIMEHeader()
				if len(b) > 0 {
					blocks = append(blocks, b)
				}
				if err != nil {
					break
				}
			}
		}
	}
	return hdr, blocks, parts
}

func TestPermanentFailureBouncesWithDSN(t *testing.T) {
	rx := &receiver{rcptErr: func(r string) error {
		if strings.HasPrefix(r, "nobody@") {
			return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		}
		return nil
	}}
	w := newWorld(t, worldOpts{rx: rx})
	w.start(w.config())
	id := w.enqueue("alice@example.test", []string{"bob@remote.test", "nobody@remote.test"}, testMsg)
	waitFor(t, "DSN in the sender's INBOX", func() bool { return len(w.inbox()) == 1 })
	waitFor(t, "queue drained", func() bool { _, ok := w.entry(id); return !ok })
	if m := rx.messages(); len(m) != 1 || strings.Join(m[0].to, ",") != "bob@remote.test" {
		t.Fatalf("received: %+v", m)
	}
	hdr, blocks, parts := dsnReport(t, w.inbox()[0])
	if hdr.Get("To") != "<alice@example.test>" || hdr.Get("Auto-Submitted") != "auto-replied" {
		t.Errorf("DSN header: %v", hdr)
	}
	if strings.Join(parts, ",") != "text/plain,message/delivery-status,text/rfc822-headers" {
		t.Errorf("DSN parts: %v", parts)
	}
	if len(blocks) != 2 {
		t.Fatalf("delivery-status blocks: %v", blocks)
	}
	if blocks[0].Get("Reporting-MTA") != "dns; mail.example.test" {
		t.Errorf("per-message fields: %v", blocks[0])
	}
	r := blocks[1]
	for k, want := range map[string]string{
		"Final-Recipient": "rfc822; nobody@remote.test",
		"Action":          "failed",
		"Status":          "5.1.1",
		"Remote-MTA":      "dns; mx1.remote.test",
		"Diagnostic-Code": "smtp; 550 5.1.1 no such user",
	} {
		if got := r.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
}

func TestNullMXBouncesAtOnce(t *testing.T) {
	w := newWorld(t, worldOpts{})
	w.start(w.config())
	w.enqueue("alice@example.test", []string{"x@nullmx.test"}, testMsg)
	waitFor(t, "DSN", func() bool { return len(w.inbox()) == 1 })
	_, blocks, _ := dsnReport(t, w.inbox()[0])
	if len(blocks) != 2 || blocks[1].Get("Status") != "5.1.10" || blocks[1].Get("Action") != "failed" {
		t.Fatalf("null MX DSN: %v", blocks)
	}
	if w.rx.conns.Load() != 0 {
		t.Error("a connection was made for a null-MX domain")
	}
}

func TestNoMXFallsBackToAddress(t *testing.T) {
	w := newWorld(t, worldOpts{})
	w.start(w.config())
	w.enqueue("alice@example.test", []string{"x@amx.test"}, testMsg)
	waitFor(t, "delivery via the A record", func() bool { return len(w.rx.messages()) == 1 })
}

func TestUnknownDomainBounces(t *testing.T) {
	w := newWorld(t, worldOpts{})
	w.start(w.config())
	w.enqueue("alice@example.test", []string{"x@nxdomain.test"}, testMsg)
	waitFor(t, "DSN", func() bool { return len(w.inbox()) == 1 })
	_, blocks, _ := dsnReport(t, w.inbox()[0])
	if blocks[1].Get("Status") != "5.1.2" {
		t.Fatalf("NXDOMAIN DSN: %v", blocks)
	}
}

func TestNeverBounceToNullSender(t *testing.T) {
	rx := &receiver{rcptErr: func(string) error {
		return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "no"}
	}}
	w := newWorld(t, worldOpts{rx: rx})
	w.start(w.config())
	id := w.enqueue("", []string{"bob@remote.test"}, testMsg)
	waitFor(t, "entry finished", func() bool { _, ok := w.entry(id); return !ok })
	time.Sleep(100 * time.Millisecond)
	if w.queueLen() != 0 || len(w.inbox()) != 0 {
		t.Fatalf("a bounce was generated for the null sender (queue %d, inbox %d)", w.queueLen(), len(w.inbox()))
	}
}

func TestBounceToRemoteSenderUsesNullSender(t *testing.T) {
	rx := &receiver{rcptErr: func(r string) error {
		if r == "nobody@remote.test" {
			return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "no"}
		}
		return nil
	}}
	w := newWorld(t, worldOpts{rx: rx})
	w.start(w.config())
	w.enqueue("sender@remote.test", []string{"nobody@remote.test"}, testMsg)
	waitFor(t, "DSN relayed", func() bool { return len(rx.messages()) == 1 })
	m := rx.messages()[0]
	if m.from != "" || strings.Join(m.to, ",") != "sender@remote.test" || !bytes.Contains(m.data, []byte("multipart/report")) {
		t.Fatalf("relayed DSN: from %q to %v", m.from, m.to)
	}
}

func TestGiveUpAfterMaxAge(t *testing.T) {
	rx := &receiver{dataErr: func(int) error {
		return &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 3, 0}, Message: "busy"}
	}}
	w := newWorld(t, worldOpts{rx: rx})
	q, _ := w.start(w.config())
	id := w.enqueue("alice@example.test", []string{"bob@remote.test"}, testMsg)
	waitFor(t, "first attempt", func() bool { e, ok := w.entry(id); return ok && e.Attempts == 1 })
	if len(w.inbox()) != 0 {
		t.Fatal("DSN after one temporary failure")
	}
	w.clock.Advance(DefaultMaxAge)
	q.Wake()
	waitFor(t, "DSN after five days", func() bool { return len(w.inbox()) == 1 })
	_, blocks, _ := dsnReport(t, w.inbox()[0])
	r := blocks[1]
	if r.Get("Action") != "failed" || r.Get("Status") != "4.3.0" || r.Get("Diagnostic-Code") != "smtp; 451 4.3.0 busy" {
		t.Fatalf("expiry DSN: %v", r)
	}
	waitFor(t, "queue drained", func() bool { _, ok := w.entry(id); return !ok })
}

func TestSmarthostAuth(t *testing.T) {
	for _, tc := range []struct {
		name     string
		implicit bool
		password string
		want     bool
		mechs    []string
	}{
		{"starttls", false, "relay-secret", true, nil},
		{"login-only", false, "relay-secret", true, []string{"LOGIN"}},
		{"implicit-tls", true, "relay-secret", true, nil},
		{"wrong-password", false, "not-it", false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rx := &receiver{user: "relay-user", pass: "relay-secret", mechs: tc.mechs}
			w := newWorld(t, worldOpts{rx: rx, starttls: !tc.implicit, implicit: tc.implicit})
			cfg := w.config()
			cfg.Smarthost = "relay.test:" + w.port
			cfg.SmarthostImplicitTLS = tc.implicit
			pwFile := filepath.Join(t.TempDir(), "pw")
			if err := os.WriteFile(pwFile, []byte(tc.password+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg.Username, cfg.PasswordFile = "relay-user", pwFile
			w.start(cfg)
			// nullmx.test would bounce via DNS: the smarthost takes it.
			id := w.enqueue("alice@example.test", []string{"x@nullmx.test"}, testMsg)
			if tc.want {
				waitFor(t, "relay", func() bool { return len(rx.messages()) == 1 })
				m := rx.messages()[0]
				if m.authed != "relay-user" || !m.tls {
					t.Errorf("smarthost message: authed %q tls %v", m.authed, m.tls)
				}
				return
			}
			waitFor(t, "deferral", func() bool { e, ok := w.entry(id); return ok && e.Attempts == 1 })
			e, _ := w.entry(id)
			if !strings.Contains(e.LastError, "535") || e.Recipients[0].Status != store.RcptPending {
				t.Errorf("after a rejected login: %+v", e)
			}
			if len(w.inbox()) != 0 || len(rx.messages()) != 0 {
				t.Error("wrong smarthost password bounced or delivered")
			}
			if strings.Contains(w.log(), "not-it") {
				t.Error("the relay password appears in the log")
			}
		})
	}
}

// TestSmarthostRefusesPlaintext: the smarthost carries every message and
// the relay login, so without STARTTLS nothing is sent; the recipient is
// deferred (the operator's problem), never bounced.
func TestSmarthostRefusesPlaintext(t *testing.T) {
	w := newWorld(t, worldOpts{})
	cfg := w.config()
	cfg.Smarthost = "relay.test:" + w.port
	w.start(cfg)
	id := w.enqueue("alice@example.test", []string{"bob@remote.test"}, testMsg)
	waitFor(t, "deferral", func() bool { e, ok := w.entry(id); return ok && e.Attempts == 1 })
	e, _ := w.entry(id)
	if !strings.Contains(e.LastError, "does not offer STARTTLS") || e.Recipients[0].Status != store.RcptPending {
		t.Errorf("after a smarthost without STARTTLS: %+v", e)
	}
	if len(w.rx.messages()) != 0 || len(w.inbox()) != 0 {
		t.Error("a message went to a smarthost in plaintext, or bounced")
	}
}

func TestRestartResumesPendingEntries(t *testing.T) {
	var fail atomic.Bool
	fail.Store(true)
	rx := &receiver{}
	rx.dataErr = func(int) error {
		if fail.Load() {
			return &gosmtp.SMTPError{Code: 421, EnhancedCode: gosmtp.EnhancedCode{4, 4, 2}, Message: "closing"}
		}
		return nil
	}
	w := newWorld(t, worldOpts{rx: rx})
	_, stop := w.start(w.config())
	id := w.enqueue("alice@example.test", []string{"bob@remote.test"}, testMsg)
	waitFor(t, "deferral", func() bool { e, ok := w.entry(id); return ok && e.Attempts == 1 })
	stop()
	if err := w.st.Close(); err != nil {
		t.Fatal(err)
	}
	fail.Store(false)
	w.openStore()
	w.clock.Advance(time.Minute)
	w.start(w.config())
	waitFor(t, "delivery after restart", func() bool { return len(rx.messages()) == 1 })
	waitFor(t, "queue drained", func() bool { _, ok := w.entry(id); return !ok })
}

func TestDeliveredRecipientIsNeverSentAgain(t *testing.T) {
	var busy atomic.Bool
	busy.Store(true)
	rx := &receiver{rcptErr: func(r string) error {
		if r == "later@remote.test" && busy.Load() {
			return &gosmtp.SMTPError{Code: 450, EnhancedCode: gosmtp.EnhancedCode{4, 2, 0}, Message: "mailbox busy"}
		}
		return nil
	}}
	w := newWorld(t, worldOpts{rx: rx})
	// A recipient whose 250 was recorded before a crash.
	id := w.enqueue("alice@example.test", []string{"done@remote.test", "now@remote.test", "later@remote.test"}, testMsg)
	if err := w.st.SetRecipientStatus(context.Background(), id, store.RecipientUpdate{Rcpt: "done@remote.test", Status: store.RcptDelivered}); err != nil {
		t.Fatal(err)
	}
	q, _ := w.start(w.config())
	waitFor(t, "first attempt", func() bool { e, ok := w.entry(id); return ok && e.Attempts == 1 })
	e, _ := w.entry(id)
	status := map[string]store.RecipientStatus{}
	for _, r := range e.Recipients {
		status[r.Address] = r.Status
	}
	if status["now@remote.test"] != store.RcptDelivered || status["later@remote.test"] != store.RcptPending {
		t.Fatalf("statuses after the first attempt: %v", status)
	}
	busy.Store(false)
	w.clock.Advance(time.Minute)
	q.Wake()
	waitFor(t, "second delivery", func() bool { return len(rx.messages()) == 2 })
	waitFor(t, "queue drained", func() bool { _, ok := w.entry(id); return !ok })
	m := rx.messages()
	if strings.Join(m[0].to, ",") != "now@remote.test" || strings.Join(m[1].to, ",") != "later@remote.test" {
		t.Fatalf("recipients per transaction: %v / %v", m[0].to, m[1].to)
	}
}

func TestOperatorFunctions(t *testing.T) {
	w := newWorld(t, worldOpts{})
	ctx := context.Background()
	id := w.enqueue("alice@example.test", []string{"bob@remote.test"}, testMsg)
	if err := w.st.Reschedule(ctx, id, w.clock.Now().Add(time.Hour), "451 later"); err != nil {
		t.Fatal(err)
	}
	es, err := List(ctx, w.st)
	if err != nil || len(es) != 1 || es[0].ID != id {
		t.Fatalf("List: %v %+v", err, es)
	}
	if err := Retry(ctx, w.st, id); err != nil {
		t.Fatal(err)
	}
	if e, _ := w.entry(id); e.NextAttempt.After(w.clock.Now()) {
		t.Errorf("Retry left next attempt at %v", e.NextAttempt)
	}
	if err := Delete(ctx, w.st, id); err != nil {
		t.Fatal(err)
	}
	if err := Delete(ctx, w.st, id); err == nil {
		t.Error("deleting a missing entry succeeded")
	}
	if err := Retry(ctx, w.st, 999); err == nil {
		t.Error("retrying a missing entry succeeded")
	}
}

func TestNewValidates(t *testing.T) {
	w := newWorld(t, worldOpts{})
	cfg := w.config()
	cfg.Hostname = ""
	if _, err := New(cfg, w.st); err == nil {
		t.Error("New without a hostname succeeded")
	}
	cfg = w.config()
	cfg.Smarthost, cfg.Username, cfg.PasswordFile = "relay.test:587", "u", filepath.Join(t.TempDir(), "missing")
	if _, err := New(cfg, w.st); err == nil {
		t.Error("New with a missing password file succeeded")
	}
}

func TestShutdownBeforeRun(t *testing.T) {
	w := newWorld(t, worldOpts{})
	q, err := New(w.config(), w.st)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := q.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := q.Run(ctx); err == nil {
		t.Error("Run after Shutdown succeeded")
	}
}

func metricValue(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	return testutil.MetricValue(t, m)
}
