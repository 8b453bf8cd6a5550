// Package queue is the outbound relay of the built-in mail server: it takes
// the messages the store queued for remote recipients and hands them to
// each recipient domain's MX (or to a configured smarthost), with
// opportunistic STARTTLS, per-recipient status, retries with back-off for up
// to five days and a DSN (RFC 3464) to the sender on permanent failure.
//
// All state lives in the store's queue tables, so a restart resumes where
// the last process stopped. A recipient is marked delivered right after the
// remote server's 250 to DATA, before anything else happens, so a crash
// never sends the same message twice to a recipient whose 250 was recorded.
package queue

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"mailconf/config"
	"mailconf/internal/metrics"
	"mailconf/mailserver/store"
)

// Defaults for Config fields left zero.
const (
	DefaultPort         = 25
	DefaultConcurrency  = 4
	DefaultMaxAge       = 5 * 24 * time.Hour
	DefaultPollInterval = 30 * time.Second
	DefaultConnTimeout  = 10 * time.Minute
	dnsTimeout          = 5 * time.Second
	dialTimeout         = 30 * time.Second
)

// Config configures a Queue. Zero values take the defaults named per field.
type Config struct {
	// Hostname is the EHLO name and the DSN's Reporting-MTA; required.
	Hostname string
	// Resolver is the DNS server (HOST:PORT) for MX and address lookups;
	// "" uses the nameservers of /etc/resolv.conf.
	Resolver string
	// Port is the TCP port of MX hosts; default 25. Tests use another.
	Port int
	// Smarthost (HOST:PORT) receives all mail instead of the MX hosts.
	// Port 465 means implicit TLS, any other port requires STARTTLS; the
	// certificate is always verified.
	Smarthost string
	// SmarthostImplicitTLS forces implicit TLS whatever the port.
	SmarthostImplicitTLS bool
	// Username and PasswordFile enable AUTH (PLAIN, else LOGIN) at the
	// smarthost. The file's first line is the password.
	Username     string
	PasswordFile string
	// RootCAs verifies certificates; nil means the system roots. MX hosts
	// get opportunistic TLS: an unverifiable certificate is still used
	// (and logged as such) since the alternative is plaintext.
	RootCAs *x509.CertPool
	// Concurrency bounds simultaneous deliveries; default 4.
	Concurrency int
	// MaxAge is how long a temporarily failing recipient is retried
	// before it bounces; default 5 days.
	MaxAge time.Duration
	// Backoff is the wait after the n-th failed attempt (n >= 1); default
	// 1m, 5m, 15m, 30m, 1h, 2h, then every 4h.
	Backoff func(attempt int) time.Duration
	// PollInterval is how often the queue looks for due entries without
	// a Wake; default 30s.
	PollInterval time.Duration
	// ConnTimeout bounds one SMTP session; default 10 min.
	ConnTimeout time.Duration
	// Now is the clock; nil means time.Now.
	Now     func() time.Time
	Logger  *slog.Logger
	Metrics *metrics.Metrics
}

// FromConfig takes the relay settings of a loaded configuration.
func FromConfig(c *config.Config) Config {
	return Config{
		Hostname:     c.Hostname,
		Resolver:     c.DNS.Resolver,
		Smarthost:    c.Relay.Smarthost,
		Username:     c.Relay.Username,
		PasswordFile: c.Relay.PasswordFile,
	}
}

// DefaultBackoff is the retry schedule used when Config.Backoff is nil.
func DefaultBackoff(attempt int) time.Duration {
	steps := []time.Duration{time.Minute, 5 * time.Minute, 15 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour}
	if attempt >= 1 && attempt <= len(steps) {
		return steps[attempt-1]
	}
	if attempt < 1 {
		return steps[0]
	}
	return 4 * time.Hour
}

// Queue is the relay worker.
type Queue struct {
	cfg      Config
	st       *store.Store
	log      *slog.Logger
	password string
	servers  []string // DNS servers, HOST:PORT

	wake     chan struct{}
	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
	runOnce  sync.Once

	workCtx    context.Context
	workCancel context.CancelFunc
	wg         sync.WaitGroup

	mu       sync.Mutex
	inflight map[int64]bool
}

// New checks cfg and prepares a Queue on st; Run starts it.
func New(cfg Config, st *store.Store) (*Queue, error) {
	if cfg.Hostname == "" {
		return nil, errors.New("queue: Config.Hostname is required")
	}
	if st == nil {
		return nil, errors.New("queue: a store is required")
	}
	if cfg.Port <= 0 {
		cfg.Port = DefaultPort
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	if cfg.Backoff == nil {
		cfg.Backoff = DefaultBackoff
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.ConnTimeout <= 0 {
		cfg.ConnTimeout = DefaultConnTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	q := &Queue{
		cfg:      cfg,
		st:       st,
		log:      cfg.Logger.With("component", "queue"),
		wake:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		inflight: make(map[int64]bool),
	}
	q.workCtx, q.workCancel = context.WithCancel(context.Background())
	if cfg.Smarthost != "" {
		if _, _, err := net.SplitHostPort(cfg.Smarthost); err != nil {
			return nil, fmt.Errorf("queue: smarthost %q: %w", cfg.Smarthost, err)
		}
	}
	if (cfg.Username == "") != (cfg.PasswordFile == "") {
		return nil, errors.New("queue: smarthost AUTH needs both a username and a password file")
	}
	if cfg.PasswordFile != "" {
		data, err := os.ReadFile(cfg.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("queue: relay password file: %w", err)
		}
		q.password, _, _ = strings.Cut(string(data), "\n")
		q.password = strings.TrimSuffix(q.password, "\r")
		if q.password == "" {
			return nil, fmt.Errorf("queue: relay password file %s: first line is empty", cfg.PasswordFile)
		}
	}
	if cfg.Resolver != "" {
		q.servers = []string{cfg.Resolver}
	} else {
		servers, err := systemResolvers("/etc/resolv.conf")
		if err != nil {
			return nil, fmt.Errorf("queue: %w", err)
		}
		q.servers = servers
	}
	return q, nil
}

// Wake makes the worker look for due messages now.
func (q *Queue) Wake() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// Run delivers due messages until ctx is cancelled (attempts in progress
// are aborted) or Shutdown is called (they are allowed to finish).
func (q *Queue) Run(ctx context.Context) error {
	first := false
	q.runOnce.Do(func() { first = true })
	if !first {
		return errors.New("queue: Run called twice or after Shutdown")
	}
	defer close(q.done)
	stopWork := context.AfterFunc(ctx, q.workCancel)
	defer stopWork()
	sem := make(chan struct{}, q.cfg.Concurrency)
	timer := time.NewTimer(0)
	defer timer.Stop()
	q.log.Info("queue started", "smarthost", q.cfg.Smarthost, "concurrency", q.cfg.Concurrency)
	for {
		select {
		case <-ctx.Done():
			q.wg.Wait()
			return nil
		case <-q.stop:
			q.wg.Wait()
			return nil
		case <-q.wake:
		case <-timer.C:
		}
		q.dispatch(ctx, sem)
		q.updateGauge(ctx)
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(q.cfg.PollInterval)
	}
}

// dispatch starts an attempt for every due entry not already in progress.
func (q *Queue) dispatch(ctx context.Context, sem chan struct{}) {
	due, err := q.st.QueueDue(ctx, q.cfg.Now(), q.cfg.Concurrency*8)
	if err != nil {
		if ctx.Err() == nil {
			q.log.Error("queue scan", "err", err)
		}
		return
	}
	for _, e := range due {
		q.mu.Lock()
		busy := q.inflight[e.ID]
		if !busy {
			q.inflight[e.ID] = true
		}
		q.mu.Unlock()
		if busy {
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			q.release(e.ID)
			return
		case <-q.stop:
			q.release(e.ID)
			return
		}
		q.wg.Add(1)
		go func(e store.QueueEntry) {
			defer q.wg.Done()
			defer func() { <-sem }()
			defer q.release(e.ID)
			q.attempt(q.workCtx, e)
			// Another due entry may have waited for this slot.
			q.Wake()
		}(e)
	}
}

func (q *Queue) release(id int64) {
	q.mu.Lock()
	delete(q.inflight, id)
	q.mu.Unlock()
}

func (q *Queue) updateGauge(ctx context.Context) {
	if q.cfg.Metrics == nil {
		return
	}
	if n, err := q.st.QueueSize(ctx); err == nil {
		q.cfg.Metrics.QueueSize.Set(float64(n))
	}
}

// Shutdown stops taking new work and waits for attempts in progress; when
// ctx expires first they are aborted (their recipients stay pending) and
// ctx's error is returned. Run returns once this is done.
func (q *Queue) Shutdown(ctx context.Context) error {
	q.stopOnce.Do(func() { close(q.stop) })
	started := true
	q.runOnce.Do(func() { started = false; close(q.done) })
	if !started {
		return nil
	}
	select {
	case <-q.done:
		return nil
	case <-ctx.Done():
		q.workCancel()
		<-q.done
		return fmt.Errorf("queue: shutdown: %w", ctx.Err())
	}
}

// List returns every queued message (operator's `mailconf queue list`).
func List(ctx context.Context, st *store.Store) ([]store.QueueEntry, error) {
	es, err := st.QueueList(ctx)
	if err != nil {
		return nil, fmt.Errorf("queue: list: %w", err)
	}
	return es, nil
}

// Retry makes a queued message due now. A running server notices within
// its poll interval; Queue.Retry also wakes it.
func Retry(ctx context.Context, st *store.Store, id int64) error {
	if err := st.QueueRetry(ctx, id); err != nil {
		return fmt.Errorf("queue: retry: %w", err)
	}
	return nil
}

// Delete removes a queued message without a bounce.
func Delete(ctx context.Context, st *store.Store, id int64) error {
	if err := st.QueueDelete(ctx, id); err != nil {
		return fmt.Errorf("queue: delete: %w", err)
	}
	return nil
}

// List returns every queued message.
func (q *Queue) List(ctx context.Context) ([]store.QueueEntry, error) { return List(ctx, q.st) }

// Retry makes a queued message due now and wakes the worker.
func (q *Queue) Retry(ctx context.Context, id int64) error {
	if err := Retry(ctx, q.st, id); err != nil {
		return err
	}
	q.Wake()
	return nil
}

// Delete removes a queued message without a bounce.
func (q *Queue) Delete(ctx context.Context, id int64) error {
	err := Delete(ctx, q.st, id)
	q.updateGauge(ctx)
	return err
}
