package delivery

import (
	"context"
	"errors"
	"net/netip"

	"mailconf/mailserver/accounts"
	"mailconf/mailserver/smtp"
)

// Auth lets the SMTP listeners log in through the shared authenticator:
// they want the account's canonical address, against which MAIL FROM is
// checked, and their own error for a failed login (535 5.7.8).
type Auth struct{ *accounts.Authenticator }

var _ smtp.Authenticator = Auth{}

// Authenticate implements smtp.Authenticator.
func (a Auth) Authenticate(ctx context.Context, protocol string, remote netip.Addr, user, pass string) (string, error) {
	acct, err := a.Authenticator.Authenticate(ctx, protocol, remote, user, pass)
	if errors.Is(err, accounts.ErrAuthFailed) {
		return "", smtp.ErrAuthFailed
	}
	if err != nil {
		return "", err
	}
	return acct.Address, nil
}
