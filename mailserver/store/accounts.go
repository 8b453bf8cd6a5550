package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Account is a mailbox owner. Address, Localpart and Domain are lower-case.
type Account struct {
	ID        int64     `json:"id"`
	Address   string    `json:"address"`
	Localpart string    `json:"-"`
	Domain    string    `json:"domain"`
	Created   time.Time `json:"created"`
	// PasswordHash is a PHC string (argon2id) or a bcrypt hash; it never
	// leaves the process.
	PasswordHash string `json:"-"`
}

// MailboxSpec names a mailbox to create with a new account.
type MailboxSpec struct {
	Name       string
	SpecialUse string
}

const accountCols = `id, address, localpart, domain, password_hash, created`

func scanAccount(row rowScanner) (Account, error) {
	var a Account
	var created int64
	if err := row.Scan(&a.ID, &a.Address, &a.Localpart, &a.Domain, &a.PasswordHash, &created); err != nil {
		return Account{}, err
	}
	a.Created = time.Unix(0, created).UTC()
	return a, nil
}

// CreateAccount adds an account with the given password hash and creates
// its mailboxes (subscribed, with their special-use attributes) in the same
// transaction. An existing address gives ErrExists.
func (s *Store) CreateAccount(ctx context.Context, address, passwordHash string, mailboxes []MailboxSpec) (Account, error) {
	address = strings.ToLower(address)
	at := strings.LastIndexByte(address, '@')
	if at <= 0 || at == len(address)-1 {
		return Account{}, fmt.Errorf("store: create account: address %q has no domain", address)
	}
	a := Account{Address: address, Localpart: address[:at], Domain: address[at+1:], PasswordHash: passwordHash, Created: s.now().UTC()}
	err := s.write(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM accounts WHERE address = ?`, address).Scan(&n); err != nil {
			return fmt.Errorf("store: create account: %w", err)
		}
		if n > 0 {
			return fmt.Errorf("store: account %s: %w", address, ErrExists)
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO accounts (address, localpart, domain, password_hash, created) VALUES (?, ?, ?, ?, ?)`,
			a.Address, a.Localpart, a.Domain, a.PasswordHash, a.Created.UnixNano())
		if err != nil {
			return fmt.Errorf("store: create account: %w", err)
		}
		if a.ID, err = res.LastInsertId(); err != nil {
			return fmt.Errorf("store: create account: %w", err)
		}
		for _, mb := range mailboxes {
			if _, err := s.createMailbox(ctx, tx, a.ID, mb.Name, mb.SpecialUse, true); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return Account{}, err
	}
	return a, nil
}

// Account returns the account with the given ID.
func (s *Store) Account(ctx context.Context, id int64) (Account, error) {
	a, err := scanAccount(s.r.QueryRowContext(ctx, `SELECT `+accountCols+` FROM accounts WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Account{}, fmt.Errorf("store: account %d: %w", id, ErrNoAccount)
	}
	if err != nil {
		return Account{}, fmt.Errorf("store: account: %w", err)
	}
	return a, nil
}

// AccountByAddress looks an account up by its address (case-insensitive).
func (s *Store) AccountByAddress(ctx context.Context, address string) (Account, error) {
	a, err := scanAccount(s.r.QueryRowContext(ctx, `SELECT `+accountCols+` FROM accounts WHERE address = ?`, strings.ToLower(address)))
	if errors.Is(err, sql.ErrNoRows) {
		return Account{}, fmt.Errorf("store: account %s: %w", address, ErrNoAccount)
	}
	if err != nil {
		return Account{}, fmt.Errorf("store: account: %w", err)
	}
	return a, nil
}

// AccountsByLocalpart returns every account with the given local part, in
// any domain.
func (s *Store) AccountsByLocalpart(ctx context.Context, localpart string) ([]Account, error) {
	return s.queryAccounts(ctx, `SELECT `+accountCols+` FROM accounts WHERE localpart = ? ORDER BY address`, strings.ToLower(localpart))
}

// Accounts lists every account ordered by address.
func (s *Store) Accounts(ctx context.Context) ([]Account, error) {
	return s.queryAccounts(ctx, `SELECT `+accountCols+` FROM accounts ORDER BY address`)
}

func (s *Store) queryAccounts(ctx context.Context, q string, args ...any) ([]Account, error) {
	return queryAll(ctx, s.r, "accounts", scanAccount, q, args...)
}

// AccountCount returns the number of accounts.
func (s *Store) AccountCount(ctx context.Context) (int, error) {
	var n int
	if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM accounts`).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: count accounts: %w", err)
	}
	return n, nil
}

// SetPasswordHash replaces an account's password hash.
func (s *Store) SetPasswordHash(ctx context.Context, id int64, hash string) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE accounts SET password_hash = ? WHERE id = ?`, hash, id)
		if err != nil {
			return fmt.Errorf("store: set password: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("store: account %d: %w", id, ErrNoAccount)
		}
		return nil
	})
}

// DeleteAccount removes an account with all its mailboxes and messages.
// Message bodies no longer referenced (by another account's copy or the
// outbound queue) are unlinked after the commit.
func (s *Store) DeleteAccount(ctx context.Context, id int64) error {
	var boxes []int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		var err error
		if boxes, err = queryAll(ctx, tx, "delete account", scanInt64, `SELECT id FROM mailboxes WHERE account_id = ?`, id); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM accounts WHERE id = ?`, id)
		if err != nil {
			return fmt.Errorf("store: delete account: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("store: account %d: %w", id, ErrNoAccount)
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.notify(boxes...)
	return nil
}
