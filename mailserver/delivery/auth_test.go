package delivery

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"mailconf/mailserver/accounts"
	mailsmtp "mailconf/mailserver/smtp"
)

func TestAuthMapsAccountsToSMTP(t *testing.T) {
	f := newFixture(t)
	a := Auth{accounts.NewAuthenticator(f.st, f.cfg, accounts.AuthOptions{Sleep: func(context.Context, time.Duration) error { return nil }})}
	ip := netip.MustParseAddr("127.0.0.9")
	addr, err := a.Authenticate(context.Background(), "smtp", ip, "ALICE@example.test", alicePass)
	if err != nil || addr != "alice@example.test" {
		t.Errorf("right password: %q, %v; want the canonical address", addr, err)
	}
	if _, err := a.Authenticate(context.Background(), "smtp", ip, "alice@example.test", "wrong password"); !errors.Is(err, mailsmtp.ErrAuthFailed) {
		t.Errorf("wrong password: %v, want smtp.ErrAuthFailed (535)", err)
	}
}
