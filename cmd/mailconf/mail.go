package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"

	"mailconf/config"
	"mailconf/internal/certs"
	"mailconf/internal/metrics"
	"mailconf/mailserver/accounts"
	"mailconf/mailserver/delivery"
	"mailconf/mailserver/dkim"
	"mailconf/mailserver/imap"
	"mailconf/mailserver/pop3"
	"mailconf/mailserver/queue"
	mailsmtp "mailconf/mailserver/smtp"
	"mailconf/mailserver/store"
)

// mail is the built-in mail server: the store, the shared authenticator, the
// relay queue and one unit per enabled mail listener.
type mail struct {
	st    *store.Store
	auth  *accounts.Authenticator
	queue *queue.Queue
	units []unit
}

// newMail opens the store and builds every mail service the config enables.
// The queue worker runs from start until stop.
func newMail(ctx context.Context, cfg *config.Config, cm *certs.Manager, m *metrics.Metrics, log *slog.Logger) (*mail, error) {
	st, err := store.Open(ctx, cfg.DataDir, store.Options{MessageSize: cfg.Limits.MessageSize, Logger: log.With("component", "store")})
	if err != nil {
		return nil, err
	}
	ms := &mail{st: st}
	ok := false
	defer func() {
		if !ok {
			st.Close()
		}
	}()
	ms.auth = accounts.NewAuthenticator(st, cfg, accounts.AuthOptions{Metrics: m, Logger: log.With("component", "auth")})

	keys, err := dkim.Load(cfg)
	if err != nil {
		return nil, err
	}
	qcfg := queue.FromConfig(cfg)
	qcfg.Logger = log
	qcfg.Metrics = m
	if ms.queue, err = queue.New(qcfg, st); err != nil {
		return nil, err
	}
	d := delivery.New(st, cfg, delivery.Options{DKIM: keys, Wake: ms.queue.Wake, Logger: log})

	tlsConfig := cm.ServerConfig()
	smtpCfg := func() mailsmtp.Config {
		return mailsmtp.Config{
			Hostname:        cfg.Hostname,
			MaxMessageBytes: cfg.Limits.MessageSize,
			TLS:             tlsConfig,
			Logger:          log,
			Metrics:         m,
		}
	}
	auth := delivery.Auth{Authenticator: ms.auth}
	if cfg.Listen.SMTP != "" {
		srv, err := mailsmtp.NewMX(smtpCfg(), d, d)
		if err != nil {
			return nil, err
		}
		ms.units = append(ms.units, unit{name: "smtp", addr: cfg.Listen.SMTP, serve: srv.Serve, stop: srv.Shutdown})
	}
	for _, l := range []struct {
		name, addr string
		implicit   bool
	}{{"submission", cfg.Listen.Submission, false}, {"submissions", cfg.Listen.Submissions, true}} {
		if l.addr == "" {
			continue
		}
		srv, err := mailsmtp.NewSubmission(smtpCfg(), auth, d, d, l.implicit)
		if err != nil {
			return nil, err
		}
		ms.units = append(ms.units, unit{name: l.name, addr: l.addr, serve: srv.Serve, stop: srv.Shutdown})
	}
	if cfg.Listen.IMAP != "" || cfg.Listen.IMAPS != "" {
		srv, err := imap.New(imap.Config{Hostname: cfg.Hostname, TLS: tlsConfig, Logger: log.With("service", "imap"),
			Metrics: m, AppendLimit: cfg.Limits.MessageSize}, st, ms.auth)
		if err != nil {
			return nil, err
		}
		ms.addPair(srv, "imap", cfg.Listen.IMAP, "imaps", cfg.Listen.IMAPS)
	}
	if cfg.Listen.POP3 != "" || cfg.Listen.POP3S != "" {
		// One server for both ports, so that one maildrop lock covers them.
		srv, err := pop3.New(pop3.Config{Hostname: cfg.Hostname, TLS: tlsConfig, Logger: log.With("service", "pop3"), Metrics: m}, st, ms.auth)
		if err != nil {
			return nil, err
		}
		ms.addPair(srv, "pop3", cfg.Listen.POP3, "pop3s", cfg.Listen.POP3S)
	}
	ok = true
	return ms, nil
}

// pairServer is a server with a plain (STARTTLS) and an implicit-TLS port.
type pairServer interface {
	Serve(net.Listener) error
	ServeTLS(net.Listener) error
	Shutdown(context.Context) error
}

// addPair adds the units of the enabled ports of one server, which both
// share (and stop once).
func (ms *mail) addPair(srv pairServer, plain, plainAddr, implicit, implicitAddr string) {
	stop := once(srv.Shutdown)
	if plainAddr != "" {
		ms.units = append(ms.units, unit{name: plain, addr: plainAddr, serve: srv.Serve, stop: stop})
	}
	if implicitAddr != "" {
		ms.units = append(ms.units, unit{name: implicit, addr: implicitAddr, serve: srv.ServeTLS, stop: stop})
	}
}

// once makes a shared server's Shutdown safe to call from each of its
// listeners' units.
func once(stop func(context.Context) error) func(context.Context) error {
	var o sync.Once
	var err error
	return func(ctx context.Context) error {
		o.Do(func() { err = stop(ctx) })
		return err
	}
}

// ensureDemo creates demo@<first domain> with a random password when the
// store holds no account, and prints the password once (SPEC §3).
func (ms *mail) ensureDemo(ctx context.Context, cfg *config.Config, w io.Writer) error {
	pw, created, err := accounts.EnsureDemoAccount(ctx, accounts.NewManager(ms.st, cfg))
	if err != nil {
		return fmt.Errorf("demo account: %w", err)
	}
	if created {
		fmt.Fprintf(w, "Created the account demo@%s with the password %s\n(shown once; change it with: mailconf user passwd demo@%s)\n",
			cfg.Domains[0].Name, pw, cfg.Domains[0].Name)
	}
	return nil
}
