package accounts

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"mailconf/config"
	"mailconf/internal/metrics"
	"mailconf/internal/testutil"
	"mailconf/mailserver/store"
)

const testConfig = `
data_dir = "%s"
hostname = "mail.example.com"
[listen]
imaps = "127.0.0.1:2993"
submissions = "127.0.0.1:2465"
[[domain]]
name = "example.com"
[[domain]]
name = "lp.test"
username = "localpart"
[[domain]]
name = "lp2.test"
username = "localpart"
`

func setup(t *testing.T) (*store.Store, *config.Config, *Manager) {
	t.Helper()
	dir := t.TempDir()
	cfg, err := config.Parse("test.toml", []byte(strings.Replace(testConfig, "%s", dir, 1)))
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(context.Background(), dir, store.Options{MessageSize: cfg.Limits.MessageSize})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st, cfg, NewManager(st, cfg)
}

func TestPasswordHashes(t *testing.T) {
	h, err := HashPassword("correct horse", DefaultArgon2())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") || strings.Count(h, "$") != 5 {
		t.Fatalf("PHC string %q", h)
	}
	if h2, _ := HashPassword("correct horse", DefaultArgon2()); h2 == h {
		t.Fatal("two hashes of one password are equal: no salt")
	}
	for _, c := range []struct {
		pw   string
		want bool
	}{{"correct horse", true}, {"correct hors", false}, {"Correct horse", false}, {"", false}} {
		if ok, err := VerifyPassword(h, c.pw); ok != c.want || err != nil {
			t.Errorf("verify %q = %v, %v", c.pw, ok, err)
		}
	}
	bc, _ := bcrypt.GenerateFromPassword([]byte("legacy-pass"), bcrypt.MinCost)
	if ok, err := VerifyPassword(string(bc), "legacy-pass"); !ok || err != nil {
		t.Fatalf("bcrypt verify: %v %v", ok, err)
	}
	if ok, _ := VerifyPassword(string(bc), "legacy-pasS"); ok {
		t.Fatal("bcrypt accepted a wrong password")
	}
	for _, bad := range []string{"", "plain", "$argon2id$v=19$m=99999999,t=2,p=1$c2FsdHNhbHQ$" + strings.Repeat("A", 43),
		"$argon2id$v=18$m=19456,t=2,p=1$c2FsdHNhbHQ$" + strings.Repeat("A", 43), "$argon2i$v=19$m=1,t=1,p=1$x$y"} {
		if ok, err := VerifyPassword(bad, "x"); ok || err == nil {
			t.Errorf("hash %q: %v %v, want an error", bad, ok, err)
		}
	}
	if _, err := HashPassword("short", DefaultArgon2()); !errors.Is(err, ErrWeakPassword) {
		t.Fatalf("short password: %v", err)
	}
}

func TestManager(t *testing.T) {
	ctx := context.Background()
	st, _, m := setup(t)
	acct, err := m.Add(ctx, "Alice@Example.COM", "password-1")
	if err != nil {
		t.Fatal(err)
	}
	if acct.Address != "alice@example.com" {
		t.Fatalf("address %q", acct.Address)
	}
	if strings.Contains(acct.PasswordHash, "password-1") || !strings.HasPrefix(acct.PasswordHash, "$argon2id$") {
		t.Fatalf("stored hash %q", acct.PasswordHash)
	}
	boxes, _ := st.Mailboxes(ctx, acct.ID)
	var got []string
	for _, b := range boxes {
		got = append(got, b.Name+b.SpecialUse)
	}
	want := []string{`Archive\Archive`, `Drafts\Drafts`, "INBOX", `Junk\Junk`, `Sent\Sent`, `Trash\Trash`}
	if !slices.Equal(got, want) {
		t.Fatalf("mailboxes %v want %v", got, want)
	}
	if _, err := m.Add(ctx, "alice@example.com", "password-2"); !errors.Is(err, store.ErrExists) {
		t.Fatalf("duplicate: %v", err)
	}
	if _, err := m.Add(ctx, "bob@other.org", "password-2"); !errors.Is(err, ErrNotServed) {
		t.Fatalf("foreign domain: %v", err)
	}
	if _, err := m.Add(ctx, "not an address", "password-2"); err == nil {
		t.Fatal("bad address accepted")
	}
	if _, err := m.Add(ctx, "x@lp.test", "password-2"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Add(ctx, "X@lp2.test", "password-2"); !errors.Is(err, ErrAmbiguousLocalpart) {
		t.Fatalf("same local part in two localpart domains: %v", err)
	}
	if _, err := m.Add(ctx, "x@example.com", "password-2"); err != nil {
		t.Fatalf("same local part in an address-login domain: %v", err)
	}
	if err := m.SetPassword(ctx, "ALICE@example.com", "password-3"); err != nil {
		t.Fatal(err)
	}
	a2, _ := st.AccountByAddress(ctx, "alice@example.com")
	if ok, _ := VerifyPassword(a2.PasswordHash, "password-3"); !ok {
		t.Fatal("passwd did not take")
	}
	if err := m.SetPassword(ctx, "nobody@example.com", "password-3"); !errors.Is(err, store.ErrNoAccount) {
		t.Fatalf("passwd unknown: %v", err)
	}
	in, _ := st.Mailbox(ctx, acct.ID, "INBOX")
	st.Deliver(ctx, acct.ID, "INBOX", []byte("hi\r\n"), time.Now())
	if err := m.Delete(ctx, "alice@example.com"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.ReadMessage(ctx, in.ID, 1); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("mail of deleted account still readable: %v", err)
	}
	if err := m.Delete(ctx, "alice@example.com"); !errors.Is(err, store.ErrNoAccount) {
		t.Fatalf("second delete: %v", err)
	}
	l, _ := m.List(ctx)
	if len(l) != 2 || l[0].Address != "x@example.com" || l[1].Address != "x@lp.test" {
		t.Fatalf("list %+v", l)
	}
}

func TestEnsureDemoAccount(t *testing.T) {
	ctx := context.Background()
	st, cfg, m := setup(t)
	pw, created, err := EnsureDemoAccount(ctx, m)
	if err != nil || !created || len(pw) != 20 {
		t.Fatalf("first run: %q %v %v", pw, created, err)
	}
	a := NewAuthenticator(st, cfg, AuthOptions{Sleep: noSleep})
	if acct, err := a.Authenticate(ctx, "imap", netip.MustParseAddr("127.0.0.1"), "demo@example.com", pw); err != nil || acct.Address != "demo@example.com" {
		t.Fatalf("demo login: %v", err)
	}
	pw2, created, err := EnsureDemoAccount(ctx, m)
	if err != nil || created || pw2 != "" {
		t.Fatalf("second run: %q %v %v", pw2, created, err)
	}
}

func cheapParams() Argon2Params {
	return Argon2Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}
}

func noSleep(context.Context, time.Duration) error { return nil }

// fakeClock is the injectable clock: Sleep records the waits instead of
// waiting, Advance moves time.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps []time.Duration
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(_ context.Context, d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sleeps = append(c.sleeps, d)
	return nil
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func (c *fakeClock) take() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.sleeps
	c.sleeps = nil
	return s
}

func TestAuthenticateNames(t *testing.T) {
	ctx := context.Background()
	st, cfg, m := setup(t)
	for _, addr := range []string{"alice@example.com", "lp@lp.test", "other@lp2.test"} {
		if _, err := m.Add(ctx, addr, "secret-"+addr); err != nil {
			t.Fatal(err)
		}
	}
	met := metrics.New()
	clk := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	a := NewAuthenticator(st, cfg, AuthOptions{Metrics: met, Now: clk.Now, Sleep: clk.Sleep})
	ip := netip.MustParseAddr("192.0.2.1")
	ok := []struct{ user, pw, want string }{
		{"alice@example.com", "secret-alice@example.com", "alice@example.com"},
		{"ALICE@Example.Com", "secret-alice@example.com", "alice@example.com"},
		{"lp@lp.test", "secret-lp@lp.test", "lp@lp.test"},
		{"lp", "secret-lp@lp.test", "lp@lp.test"},
		{"other", "secret-other@lp2.test", "other@lp2.test"},
	}
	for _, c := range ok {
		acct, err := a.Authenticate(ctx, "imap", ip, c.user, c.pw)
		if err != nil || acct.Address != c.want {
			t.Errorf("login %q: %+v %v", c.user, acct.Address, err)
		}
	}
	if s := clk.take(); len(s) != 0 {
		t.Fatalf("successful logins were delayed: %v", s)
	}
	bad := []struct{ user, pw string }{
		{"alice@example.com", "wrong-password"}, // wrong password
		{"nobody@example.com", "wrong-password"},
		{"alice", "secret-alice@example.com"}, // example.com logs in with the address
		{"alice@other.org", "secret-alice@example.com"},
		{"", "x"},
		{"@@", "x"},
		{strings.Repeat("a", 5000), "x"},
	}
	var msgs []string
	for _, c := range bad {
		_, err := a.Authenticate(ctx, "smtp", netip.MustParseAddr("198.51.100.7"), c.user, c.pw)
		if !errors.Is(err, ErrAuthFailed) {
			t.Errorf("login %q: %v, want ErrAuthFailed", c.user, err)
			continue
		}
		if strings.Contains(err.Error(), c.pw) {
			t.Errorf("error %q contains the password", err)
		}
		msgs = append(msgs, err.Error())
	}
	// Unknown user and wrong password: the same error text, the same delay.
	if msgs[0] != msgs[1] {
		t.Fatalf("unknown user %q vs wrong password %q", msgs[1], msgs[0])
	}
	if got := counterValue(t, met, "imap", "ok"); got != float64(len(ok)) {
		t.Fatalf("metric ok = %v", got)
	}
	if got := counterValue(t, met, "smtp", "failed"); got != float64(len(bad)) {
		t.Fatalf("metric failed = %v", got)
	}

	// Ambiguity: the same local part in two localpart domains (only
	// reachable by changing the config after the accounts exist) fails.
	if _, err := st.CreateAccount(ctx, "lp@lp2.test", mustHash(t, "secret-lp@lp.test"), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(ctx, "imap", ip, "lp", "secret-lp@lp.test"); !errors.Is(err, ErrAuthFailed) {
		t.Fatalf("ambiguous local part: %v", err)
	}
	if _, err := a.Authenticate(ctx, "imap", ip, "lp@lp2.test", "secret-lp@lp.test"); err != nil {
		t.Fatalf("full address still works: %v", err)
	}
}

func mustHash(t *testing.T, pw string) string {
	h, err := HashPassword(pw, DefaultArgon2())
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestUnknownUserAndWrongPasswordSameDelay checks the delay sequence is the
// same whether the account exists, so timing of the answer tells nothing.
func TestUnknownUserAndWrongPasswordSameDelay(t *testing.T) {
	ctx := context.Background()
	st, cfg, m := setup(t)
	m.Add(ctx, "real@example.com", "real-password")
	run := func(user string) []time.Duration {
		clk := &fakeClock{now: time.Unix(1_700_000_000, 0)}
		a := NewAuthenticator(st, cfg, AuthOptions{Now: clk.Now, Sleep: clk.Sleep})
		for i := 0; i < 5; i++ {
			a.Authenticate(ctx, "pop3", netip.MustParseAddr("203.0.113.9"), user, "guess-guess")
		}
		return clk.take()
	}
	known, unknown := run("real@example.com"), run("ghost@example.com")
	if !slices.Equal(known, unknown) {
		t.Fatalf("delays differ: existing %v, unknown %v", known, unknown)
	}
	if want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 15 * time.Second}; !slices.Equal(known, want) {
		t.Fatalf("delays %v want %v", known, want)
	}
}

func TestThrottling(t *testing.T) {
	ctx := context.Background()
	st, cfg, m := setup(t)
	m.Add(ctx, "victim@example.com", "victim-password")
	m.Add(ctx, "bystander@example.com", "bystander-password")
	clk := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	a := NewAuthenticator(st, cfg, AuthOptions{Now: clk.Now, Sleep: clk.Sleep})
	attacker := netip.MustParseAddr("127.0.0.1")

	// A 30-guess run from one address: 10 real checks with growing delays,
	// then the address is blocked and nothing more is checked.
	var results []error
	for i := 0; i < 30; i++ {
		_, err := a.Authenticate(ctx, "imap", attacker, "victim@example.com", "guess-"+string(rune('a'+i)))
		results = append(results, err)
		clk.Advance(100 * time.Millisecond)
	}
	for i, err := range results {
		want := ErrAuthFailed
		if i >= 10 {
			want = ErrThrottled
		}
		if !errors.Is(err, want) {
			t.Fatalf("guess %d: %v, want %v", i+1, err, want)
		}
	}
	delays := clk.take()
	var total time.Duration
	for _, d := range delays {
		total += d
	}
	if delays[0] != time.Second || delays[9] != 15*time.Second || total < 2*time.Minute {
		t.Fatalf("delays %v (total %v)", delays, total)
	}
	// Even the right password is refused from the blocked address.
	if _, err := a.Authenticate(ctx, "imap", attacker, "victim@example.com", "victim-password"); !errors.Is(err, ErrThrottled) {
		t.Fatalf("blocked address with the right password: %v", err)
	}
	clk.take()
	// Others are not hurt: another user from another address, and the
	// victim from its own address.
	if _, err := a.Authenticate(ctx, "imap", netip.MustParseAddr("127.0.0.2"), "bystander@example.com", "bystander-password"); err != nil {
		t.Fatalf("bystander: %v", err)
	}
	if _, err := a.Authenticate(ctx, "smtp", netip.MustParseAddr("127.0.0.3"), "victim@example.com", "victim-password"); err != nil {
		t.Fatalf("victim from its own address: %v", err)
	}
	if d := clk.take(); len(d) != 0 {
		t.Fatalf("successful logins delayed: %v", d)
	}
	// IPv6: the whole /64 is one client.
	v6 := netip.MustParseAddr("2001:db8:1:2::1")
	for i := 0; i < 10; i++ {
		a.Authenticate(ctx, "imap", v6, "bystander@example.com", "nope-nope")
	}
	if _, err := a.Authenticate(ctx, "imap", netip.MustParseAddr("2001:db8:1:2:ffff::9"), "bystander@example.com", "bystander-password"); !errors.Is(err, ErrThrottled) {
		t.Fatalf("same /64: %v", err)
	}
	if _, err := a.Authenticate(ctx, "imap", netip.MustParseAddr("2001:db8:1:3::1"), "bystander@example.com", "bystander-password"); err != nil {
		t.Fatalf("next /64: %v", err)
	}

	// The block ends after 15 minutes; a second block lasts twice as long.
	clk.Advance(15 * time.Minute)
	if _, err := a.Authenticate(ctx, "imap", attacker, "victim@example.com", "victim-password"); err != nil {
		t.Fatalf("after the block: %v", err)
	}
	for i := 0; i < 10; i++ {
		a.Authenticate(ctx, "imap", attacker, "victim@example.com", "again-again")
	}
	clk.Advance(20 * time.Minute)
	if _, err := a.Authenticate(ctx, "imap", attacker, "victim@example.com", "victim-password"); !errors.Is(err, ErrThrottled) {
		t.Fatalf("second block shorter than 30 minutes: %v", err)
	}
	clk.Advance(11 * time.Minute)
	if _, err := a.Authenticate(ctx, "imap", attacker, "victim@example.com", "victim-password"); err != nil {
		t.Fatalf("after the second block: %v", err)
	}
}

func TestThrottlingDistributed(t *testing.T) {
	ctx := context.Background()
	st, cfg, m := setup(t)
	m.Add(ctx, "target@example.com", "target-password")
	clk := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	a := NewAuthenticator(st, cfg, AuthOptions{Now: clk.Now, Sleep: clk.Sleep})
	home := netip.MustParseAddr("192.0.2.50")
	if _, err := a.Authenticate(ctx, "imap", home, "target@example.com", "target-password"); err != nil {
		t.Fatal(err)
	}
	// 30 guesses from 30 addresses, 2 each (below the per-address limit);
	// the name is blocked after 30 failures. Mixed spellings count together.
	for i := 0; i < 15; i++ {
		ip := netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)})
		a.Authenticate(ctx, "imap", ip, "target@example.com", "guess-one")
		a.Authenticate(ctx, "imap", ip, "TARGET@EXAMPLE.COM", "guess-two")
	}
	if _, err := a.Authenticate(ctx, "imap", netip.MustParseAddr("10.0.1.1"), "target@example.com", "target-password"); !errors.Is(err, ErrThrottled) {
		t.Fatalf("new address after 30 failures: %v", err)
	}
	// The owner's known address is exempt.
	if _, err := a.Authenticate(ctx, "imap", home, "target@example.com", "target-password"); err != nil {
		t.Fatalf("known-good address: %v", err)
	}
}

func TestTrackingMemoryBounded(t *testing.T) {
	ctx := context.Background()
	st, cfg, _ := setup(t)
	clk := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	a := NewAuthenticator(st, cfg, AuthOptions{Now: clk.Now, Sleep: clk.Sleep, Limits: Limits{MaxEntries: 50}})
	a.params = cheapParams() // 500 unknown-user checks; the cost is not under test here
	for i := 0; i < 500; i++ {
		ip := netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
		a.Authenticate(ctx, "imap", ip, "u"+string(rune('a'+i%26))+"@example.com"+strings.Repeat("x", i%3), "pw-pw-pw-pw")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.ips) > 50 || len(a.names) > 50 {
		t.Fatalf("tables grew to %d / %d entries", len(a.ips), len(a.names))
	}
}

func TestHashingSlotsAndCancel(t *testing.T) {
	st, cfg, m := setup(t)
	m.Add(context.Background(), "c@example.com", "c-password")
	a := NewAuthenticator(st, cfg, AuthOptions{Sleep: noSleep, Limits: Limits{Hashing: 1}})
	a.slots <- struct{}{} // every slot busy
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := a.Authenticate(ctx, "imap", netip.MustParseAddr("192.0.2.1"), "c@example.com", "c-password"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled wait for a hashing slot: %v", err)
	}
	<-a.slots
	// Store trouble is ErrTemporary, not a failed login.
	st.Close()
	if _, err := a.Authenticate(context.Background(), "imap", netip.MustParseAddr("192.0.2.1"), "c@example.com", "c-password"); !errors.Is(err, ErrTemporary) {
		t.Fatalf("closed store: %v", err)
	}
}

func counterValue(t *testing.T, met *metrics.Metrics, protocol, result string) float64 {
	t.Helper()
	return testutil.MetricValue(t, met.Logins.WithLabelValues(protocol, result))
}
