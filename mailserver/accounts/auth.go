package accounts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"mailconf/config"
	"mailconf/internal/metrics"
	"mailconf/mailserver/store"
)

// Authentication outcomes other than success. Protocols map them to their
// replies: ErrAuthFailed to IMAP NO [AUTHENTICATIONFAILED], SMTP 535 5.7.8,
// POP3 -ERR [AUTH]; ErrThrottled to IMAP NO [AUTHENTICATIONFAILED] (with
// its own text), SMTP 454 4.7.0, POP3 -ERR [LOGIN-DELAY]; ErrTemporary to IMAP NO [UNAVAILABLE], SMTP
// 454 4.7.0, POP3 -ERR [SYS/TEMP].
var (
	// ErrAuthFailed is the one answer for an unknown user, a wrong password
	// and an unusable login name alike.
	ErrAuthFailed = errors.New("authentication failed")
	// ErrThrottled means too many recent failures from this client address
	// or against this login name; the password was not checked.
	ErrThrottled = errors.New("too many failed logins, try again later")
	// ErrTemporary means the account store could not be read.
	ErrTemporary = errors.New("authentication temporarily unavailable")
)

// Limits tune the failed-login throttling. Zero fields take the defaults
// shown.
type Limits struct {
	// BaseDelay is the wait after the first failure; each further failure
	// (per client prefix or login name, whichever has more) doubles it up
	// to MaxDelay. Defaults 1s and 15s, Dovecot's auth penalty shape.
	BaseDelay, MaxDelay time.Duration
	// IPFailures failures from one client prefix (IPv4 /32, IPv6 /64)
	// within Window block that prefix for Block. Default 10.
	IPFailures int
	// NameFailures failures against one login name within Window, from any
	// number of addresses, block that name for Block, except from client
	// prefixes where it logged in successfully before. Default 30.
	NameFailures int
	// Window: failures older than this (counted from the last one) are
	// forgotten. Default 15 minutes.
	Window time.Duration
	// Block is the first blocking period; each repeated block within a day
	// doubles it, up to 24 hours. Default 15 minutes.
	Block time.Duration
	// MaxEntries bounds each tracking table (prefixes, names, known-good
	// pairs). Default 100,000.
	MaxEntries int
	// Hashing bounds concurrent password hash checks; each argon2id check
	// holds 19 MiB. Default 4.
	Hashing int
}

func (l Limits) withDefaults() Limits {
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	defInt := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.BaseDelay, time.Second)
	def(&l.MaxDelay, 15*time.Second)
	def(&l.Window, 15*time.Minute)
	def(&l.Block, 15*time.Minute)
	defInt(&l.IPFailures, 10)
	defInt(&l.NameFailures, 30)
	defInt(&l.MaxEntries, 100_000)
	defInt(&l.Hashing, 4)
	return l
}

// AuthOptions configure an Authenticator. All fields are optional.
type AuthOptions struct {
	Limits  Limits
	Metrics *metrics.Metrics
	Logger  *slog.Logger
	// Now and Sleep are the clock; tests inject fakes.
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
}

// Authenticator checks logins for every protocol. It holds the throttling
// state, so one value must be shared by all listeners of a process.
type Authenticator struct {
	st     *store.Store
	cfg    *config.Config
	lim    Limits
	met    *metrics.Metrics
	log    *slog.Logger
	now    func() time.Time
	sleep  func(ctx context.Context, d time.Duration) error
	slots  chan struct{}
	trim   *memTrimmer // returns argon2 work areas to the OS after a burst
	params Argon2Params

	dummyOnce sync.Once
	dummy     string

	mu    sync.Mutex
	ips   map[netip.Prefix]*counter
	names map[string]*counter
	good  map[goodKey]time.Time
}

type counter struct {
	fails        int
	last         time.Time
	blockedUntil time.Time
	blocks       int // blocks imposed within the last day
	lastBlock    time.Time
}

type goodKey struct {
	name   string
	prefix netip.Prefix
}

// goodFor is how long a successful login exempts its client prefix from
// the login-name block.
const goodFor = 30 * 24 * time.Hour

// maxNameKey bounds the login names kept as map keys.
const maxNameKey = 320

// NewAuthenticator returns an Authenticator over the store's accounts.
func NewAuthenticator(st *store.Store, cfg *config.Config, opts AuthOptions) *Authenticator {
	a := &Authenticator{
		st: st, cfg: cfg, lim: opts.Limits.withDefaults(), met: opts.Metrics, log: opts.Logger,
		now: opts.Now, sleep: opts.Sleep, params: DefaultArgon2(),
		ips: map[netip.Prefix]*counter{}, names: map[string]*counter{}, good: map[goodKey]time.Time{},
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.now == nil {
		a.now = time.Now
	}
	if a.sleep == nil {
		a.sleep = sleepCtx
	}
	a.slots = make(chan struct{}, a.lim.Hashing)
	a.trim = newMemTrimmer()
	return a
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// clientPrefix groups addresses one client controls: an IPv4 address, an
// IPv6 /64.
func clientPrefix(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap()
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	if !ip.IsValid() {
		return netip.Prefix{}
	}
	p, _ := ip.Prefix(bits)
	return p
}

// Authenticate checks username and password for a login over protocol
// ("smtp", "imap", "pop3", "probe") from remote. username is the full
// address, or the bare local part for domains with username = "localpart".
//
// An unknown user and a wrong password give the same ErrAuthFailed after the
// same work (a hash check against a dummy hash) and the same delay. A bare
// local part that exists in two "localpart" domains fails as unknown:
// checking the password against each would let one guess test several
// accounts (Manager.Add refuses to create such a pair).
func (a *Authenticator) Authenticate(ctx context.Context, protocol string, remote netip.Addr, username, password string) (store.Account, error) {
	prefix := clientPrefix(remote)
	name := strings.ToLower(username)
	if len(name) > maxNameKey {
		name = name[:maxNameKey]
	}
	// The client prefix first: a blocked client costs not even a lookup.
	if a.blocked(prefix, "") {
		return a.throttled(ctx, protocol, remote, name)
	}
	acct, found, err := a.resolve(ctx, username)
	if err != nil {
		if ctx.Err() != nil {
			return store.Account{}, fmt.Errorf("accounts: %w", ctx.Err())
		}
		a.count(protocol, "error")
		a.log.Error("auth: account lookup", "protocol", protocol, "ip", remote.String(), "err", err)
		return store.Account{}, fmt.Errorf("accounts: %w", ErrTemporary)
	}
	hash := a.dummyHash()
	if found {
		// Every spelling of one account (local part, address in any
		// letter case) shares one failure counter.
		name = acct.Address
		hash = acct.PasswordHash
	}
	if a.blocked(prefix, name) {
		return a.throttled(ctx, protocol, remote, name)
	}

	select {
	case a.slots <- struct{}{}:
	case <-ctx.Done():
		return store.Account{}, fmt.Errorf("accounts: %w", ctx.Err())
	}
	// Re-check: parallel guesses queued for a slot while earlier ones
	// failed and blocked this client.
	if a.blocked(prefix, name) {
		<-a.slots
		return a.throttled(ctx, protocol, remote, name)
	}
	ok, verr := VerifyPassword(hash, password)
	<-a.slots
	a.trim.loginDone()
	if verr != nil && found {
		a.log.Error("auth: stored password hash unusable", "account", acct.Address, "err", verr)
	}

	if ok && found && verr == nil {
		a.success(prefix, name)
		a.count(protocol, "ok")
		a.log.Info("auth: login", "protocol", protocol, "ip", remote.String(), "user", acct.Address)
		return acct, nil
	}
	delay := a.failure(prefix, name)
	a.count(protocol, "failed")
	// One line per failure with the client address, for fail2ban.
	a.log.Warn("auth: authentication failed", "protocol", protocol, "ip", remote.String(), "user", name, "delay", delay)
	// A cancelled wait (client gone) changes nothing about the answer.
	_ = a.sleep(ctx, delay)
	return store.Account{}, fmt.Errorf("accounts: %w", ErrAuthFailed)
}

func (a *Authenticator) throttled(ctx context.Context, protocol string, remote netip.Addr, name string) (store.Account, error) {
	a.count(protocol, "throttled")
	a.log.Warn("auth: login refused, too many failures", "protocol", protocol, "ip", remote.String(), "user", name)
	// A short wait still slows a client that ignores the answer.
	a.sleep(ctx, a.lim.BaseDelay)
	return store.Account{}, fmt.Errorf("accounts: %w", ErrThrottled)
}

func (a *Authenticator) count(protocol, result string) {
	if a.met != nil {
		a.met.Logins.WithLabelValues(protocol, result).Inc()
	}
}

// dummyHash is a real argon2id hash of a random password with the current
// parameters, so checking an unknown user costs what checking a real one
// does. It is computed once per Authenticator and matches nothing anyone
// knows.
func (a *Authenticator) dummyHash() string {
	a.dummyOnce.Do(func() {
		h, err := HashPassword(RandomPassword(), a.params)
		if err != nil {
			// Only a failing system random source gets here; a hash
			// that never verifies keeps the answer "failed".
			h = "$argon2id$v=19$m=19456,t=2,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
		}
		a.dummy = h
	})
	return a.dummy
}

// resolve maps a login name to an account. found=false for any name that
// names no account; err only for store trouble.
func (a *Authenticator) resolve(ctx context.Context, username string) (store.Account, bool, error) {
	if username == "" || len(username) > 320 {
		return store.Account{}, false, nil
	}
	if strings.Contains(username, "@") {
		addr, err := canonical(username)
		if err != nil {
			return store.Account{}, false, nil
		}
		if _, ok := a.cfg.Domain(addr.Domain); !ok {
			return store.Account{}, false, nil
		}
		return a.lookup(ctx, addr.String())
	}
	var hits []store.Account
	for _, d := range a.cfg.Domains {
		if d.Username != config.UsernameLocalpart {
			continue
		}
		addr, err := canonical(username + "@" + d.Name)
		if err != nil {
			return store.Account{}, false, nil
		}
		acct, ok, err := a.lookup(ctx, addr.String())
		if err != nil {
			return store.Account{}, false, err
		}
		if ok {
			hits = append(hits, acct)
		}
	}
	if len(hits) != 1 {
		return store.Account{}, false, nil
	}
	return hits[0], true, nil
}

func (a *Authenticator) lookup(ctx context.Context, address string) (store.Account, bool, error) {
	acct, err := a.st.AccountByAddress(ctx, address)
	if errors.Is(err, store.ErrNoAccount) {
		return store.Account{}, false, nil
	}
	if err != nil {
		return store.Account{}, false, err
	}
	return acct, true, nil
}

// blocked reports whether the client prefix is blocked, or the login name
// is blocked and this prefix has no earlier success with it.
func (a *Authenticator) blocked(prefix netip.Prefix, name string) bool {
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if c := a.ips[prefix]; c != nil && now.Before(c.blockedUntil) {
		return true
	}
	if c := a.names[name]; name != "" && c != nil && now.Before(c.blockedUntil) {
		if t, ok := a.good[goodKey{name, prefix}]; ok && now.Sub(t) < goodFor {
			return false
		}
		return true
	}
	return false
}

// failure records a failed attempt and returns how long to hold the
// answer back.
func (a *Authenticator) failure(prefix netip.Prefix, name string) time.Duration {
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	ipc := getCounter(a.ips, prefix, a.lim.MaxEntries, now, a.lim.Window)
	nc := getCounter(a.names, name, a.lim.MaxEntries, now, a.lim.Window)
	n := max(a.bump(ipc, now, a.lim.IPFailures), a.bump(nc, now, a.lim.NameFailures))
	d := a.lim.BaseDelay
	for i := 1; i < n && d < a.lim.MaxDelay; i++ {
		d *= 2
	}
	return min(d, a.lim.MaxDelay)
}

// bump counts one failure and imposes a block at the threshold; it
// returns the failure count.
func (a *Authenticator) bump(c *counter, now time.Time, threshold int) int {
	if now.Sub(c.last) > a.lim.Window {
		c.fails = 0
	}
	if now.Sub(c.lastBlock) > 24*time.Hour {
		c.blocks = 0
	}
	c.fails++
	c.last = now
	if c.fails >= threshold {
		d := a.lim.Block
		for i := 0; i < c.blocks && d < 24*time.Hour; i++ {
			d *= 2
		}
		c.blockedUntil = now.Add(min(d, 24*time.Hour))
		c.blocks++
		c.lastBlock = now
		c.fails = 0
	}
	return c.fails + c.blocks*threshold
}

func (a *Authenticator) success(prefix netip.Prefix, name string) {
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	k := goodKey{name, prefix}
	if _, ok := a.good[k]; !ok && len(a.good) >= a.lim.MaxEntries {
		for gk, t := range a.good {
			if now.Sub(t) >= goodFor {
				delete(a.good, gk)
			}
		}
		evictSome(a.good, a.lim.MaxEntries)
	}
	a.good[k] = now
}

// getCounter returns the counter for k, making room when the table is
// full: first expired entries go, then an arbitrary tenth (Go's random map
// order), so memory stays bounded even under a flood of new prefixes.
func getCounter[K comparable](m map[K]*counter, k K, maxEntries int, now time.Time, window time.Duration) *counter {
	if c := m[k]; c != nil {
		return c
	}
	if len(m) >= maxEntries {
		for key, c := range m {
			if now.Sub(c.last) > window && !now.Before(c.blockedUntil) && now.Sub(c.lastBlock) > 24*time.Hour {
				delete(m, key)
			}
		}
		evictSome(m, maxEntries)
	}
	c := &counter{}
	m[k] = c
	return c
}

func evictSome[K comparable, V any](m map[K]V, maxEntries int) {
	if len(m) < maxEntries {
		return
	}
	n := len(m)/10 + 1
	for k := range m {
		if n == 0 {
			break
		}
		delete(m, k)
		n--
	}
}
