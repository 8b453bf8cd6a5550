// Package accounts manages mail accounts (add, passwd, del, list) and holds
// the one Authenticator that SMTP, IMAP, POP3 and the probe use to check a
// login. Account data itself lives in mailserver/store.
package accounts

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"

	"mailconf/autoconfig"
	"mailconf/config"
	"mailconf/mailserver/store"
)

// Errors of account management.
var (
	// ErrNotServed: the address's domain is not a [[domain]] of the config.
	ErrNotServed = errors.New("domain is not served by this server")
	// ErrAmbiguousLocalpart: a second "localpart"-login domain already has
	// an account with this local part, so a bare local part could no longer
	// name one account.
	ErrAmbiguousLocalpart = errors.New("local part already used in another domain with username = \"localpart\"")
)

// DefaultMailboxes are created for every new account.
func DefaultMailboxes() []store.MailboxSpec {
	return []store.MailboxSpec{
		{Name: store.Inbox},
		{Name: "Sent", SpecialUse: store.SpecialSent},
		{Name: "Drafts", SpecialUse: store.SpecialDrafts},
		{Name: "Trash", SpecialUse: store.SpecialTrash},
		{Name: "Junk", SpecialUse: store.SpecialJunk},
		{Name: "Archive", SpecialUse: store.SpecialArchive},
	}
}

// Manager adds, changes, deletes and lists accounts.
type Manager struct {
	st     *store.Store
	cfg    *config.Config
	params Argon2Params
}

// NewManager returns a Manager for the store and config.
func NewManager(st *store.Store, cfg *config.Config) *Manager {
	return &Manager{st: st, cfg: cfg, params: DefaultArgon2()}
}

// canonical returns the lower-case A-label form of an address.
func canonical(address string) (autoconfig.Address, error) {
	a, err := autoconfig.ParseAddress(address)
	if err != nil {
		return autoconfig.Address{}, err
	}
	a.Local = strings.ToLower(a.Local)
	return a, nil
}

// Add creates an account for address (which must be in a served domain)
// with its default mailboxes.
func (m *Manager) Add(ctx context.Context, address, password string) (store.Account, error) {
	a, err := canonical(address)
	if err != nil {
		return store.Account{}, fmt.Errorf("accounts: %w", err)
	}
	dom, ok := m.cfg.Domain(a.Domain)
	if !ok {
		return store.Account{}, fmt.Errorf("accounts: %s: %w", a.Domain, ErrNotServed)
	}
	if dom.Username == config.UsernameLocalpart {
		others, err := m.st.AccountsByLocalpart(ctx, a.Local)
		if err != nil {
			return store.Account{}, fmt.Errorf("accounts: %w", err)
		}
		for _, o := range others {
			if od, ok := m.cfg.Domain(o.Domain); ok && od.Username == config.UsernameLocalpart && o.Domain != a.Domain {
				return store.Account{}, fmt.Errorf("accounts: %s: %w (%s)", a, ErrAmbiguousLocalpart, o.Address)
			}
		}
	}
	hash, err := HashPassword(password, m.params)
	if err != nil {
		return store.Account{}, fmt.Errorf("accounts: %w", err)
	}
	acct, err := m.st.CreateAccount(ctx, a.String(), hash, DefaultMailboxes())
	if err != nil {
		return store.Account{}, fmt.Errorf("accounts: add %s: %w", a, err)
	}
	return acct, nil
}

// lookup finds an existing account by address; the domain need not be
// served any more, so an operator can clean up after removing a domain.
func (m *Manager) lookup(ctx context.Context, address string) (store.Account, error) {
	key := strings.ToLower(strings.TrimSpace(address))
	if a, err := canonical(address); err == nil {
		key = a.String()
	}
	acct, err := m.st.AccountByAddress(ctx, key)
	if err != nil {
		return store.Account{}, fmt.Errorf("accounts: %w", err)
	}
	return acct, nil
}

// SetPassword replaces the password of an existing account.
func (m *Manager) SetPassword(ctx context.Context, address, password string) error {
	acct, err := m.lookup(ctx, address)
	if err != nil {
		return err
	}
	hash, err := HashPassword(password, m.params)
	if err != nil {
		return fmt.Errorf("accounts: %w", err)
	}
	if err := m.st.SetPasswordHash(ctx, acct.ID, hash); err != nil {
		return fmt.Errorf("accounts: passwd %s: %w", acct.Address, err)
	}
	return nil
}

// Delete removes an account and all its mail.
func (m *Manager) Delete(ctx context.Context, address string) error {
	acct, err := m.lookup(ctx, address)
	if err != nil {
		return err
	}
	if err := m.st.DeleteAccount(ctx, acct.ID); err != nil {
		return fmt.Errorf("accounts: del %s: %w", acct.Address, err)
	}
	return nil
}

// List returns every account ordered by address.
func (m *Manager) List(ctx context.Context) ([]store.Account, error) {
	l, err := m.st.Accounts(ctx)
	if err != nil {
		return nil, fmt.Errorf("accounts: %w", err)
	}
	return l, nil
}

// EnsureDemoAccount creates demo@<first domain> with a random password when
// the store holds no account at all (SPEC §3) and returns that password for
// printing once. With any account present it does nothing.
func EnsureDemoAccount(ctx context.Context, m *Manager) (password string, created bool, err error) {
	n, err := m.st.AccountCount(ctx)
	if err != nil {
		return "", false, fmt.Errorf("accounts: demo account: %w", err)
	}
	if n > 0 {
		return "", false, nil
	}
	if len(m.cfg.Domains) == 0 {
		return "", false, errors.New("accounts: demo account: the config serves no domain")
	}
	password = RandomPassword()
	if _, err := m.Add(ctx, "demo@"+m.cfg.Domains[0].Name, password); err != nil {
		return "", false, fmt.Errorf("accounts: demo account: %w", err)
	}
	return password, true, nil
}

// RandomPassword returns a 20-character password from an alphabet without
// look-alike characters (about 115 bits).
func RandomPassword() string {
	const alphabet = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	return randomFrom(alphabet, 20)
}

func randomFrom(alphabet string, n int) string {
	b := make([]byte, n)
	buf := make([]byte, 1)
	for i := 0; i < n; {
		rand.Read(buf)
		// Rejection sampling keeps the distribution uniform.
		if int(buf[0]) >= 256-256%len(alphabet) {
			continue
		}
		b[i] = alphabet[int(buf[0])%len(alphabet)]
		i++
	}
	return string(b)
}
