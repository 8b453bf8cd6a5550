package accounts

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"
)

func TestMemTrimmer(t *testing.T) {
	var mu sync.Mutex
	var released []time.Time
	tr := newMemTrimmer()
	tr.release = func() {
		mu.Lock()
		released = append(released, time.Now())
		mu.Unlock()
	}
	start := time.Now()
	var lastLogin time.Time
	for i := 0; i < 5; i++ {
		tr.loginDone()
		lastLogin = time.Now()
		time.Sleep(200 * time.Millisecond)
	}
	mu.Lock()
	early := len(released)
	mu.Unlock()
	if early != 0 {
		t.Fatalf("released during the burst (%d times)", early)
	}
	time.Sleep(trimQuiet + 700*time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if len(released) != 1 {
		t.Fatalf("released %d times after one burst, want 1", len(released))
	}
	if released[0].Before(lastLogin.Add(trimQuiet)) || released[0].Sub(start) > trimMaxDelay {
		t.Fatalf("released %v after the burst started, last login at %v", released[0].Sub(start), lastLogin.Sub(start))
	}
	tr.loginDone()
	tr.stop()
	time.Sleep(trimQuiet + 200*time.Millisecond)
	if len(released) != 1 {
		t.Fatal("a stopped trimmer released")
	}
}

// Every protocol's password checks go through the Authenticator, so it is
// the one place that must start the trim: a login, good or bad, leads to
// one release once logins pause.
func TestAuthenticatorTrimsAfterLogins(t *testing.T) {
	ctx := context.Background()
	st, cfg, m := setup(t)
	m.Add(ctx, "t@example.com", "t-password")
	a := NewAuthenticator(st, cfg, AuthOptions{Sleep: noSleep})
	a.params = cheapParams()
	released := make(chan struct{}, 4)
	a.trim.release = func() { released <- struct{}{} }
	a.Authenticate(ctx, "imap", netip.MustParseAddr("192.0.2.7"), "t@example.com", "t-password")
	a.Authenticate(ctx, "imap", netip.MustParseAddr("192.0.2.7"), "ghost@example.com", "wrong-password")
	select {
	case <-released:
	case <-time.After(trimQuiet + 5*time.Second):
		t.Fatal("no memory release after a login burst")
	}
	select {
	case <-released:
		t.Fatal("one burst released twice")
	case <-time.After(trimQuiet + 200*time.Millisecond):
	}
}
