package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Delimiter separates the levels of a mailbox name.
const Delimiter = "/"

// Inbox is the canonical name of the mailbox every account has.
const Inbox = "INBOX"

// Special-use attributes (RFC 6154) a mailbox may carry.
const (
	SpecialAll     = `\All`
	SpecialArchive = `\Archive`
	SpecialDrafts  = `\Drafts`
	SpecialFlagged = `\Flagged`
	SpecialJunk    = `\Junk`
	SpecialSent    = `\Sent`
	SpecialTrash   = `\Trash`
)

// childOf matches names below a parent; its two arguments are
// len(parent)+1 and parent+Delimiter. SQLite's substr counts characters on
// TEXT but bytes on BLOB, and Go's len counts bytes.
const childOf = `substr(CAST(name AS BLOB), 1, ?) = CAST(? AS BLOB)`

// maxNameLen bounds a mailbox name in bytes.
const maxNameLen = 512

// Mailbox is one folder of an account.
type Mailbox struct {
	ID            int64
	AccountID     int64
	Name          string
	UIDValidity   uint32
	UIDNext       uint32
	HighestModSeq uint64
	Subscribed    bool
	SpecialUse    string // "" or one of the Special* constants
}

// Status holds a mailbox's counters (IMAP STATUS, SELECT, POP3 STAT).
type Status struct {
	Mailbox
	Messages int
	Unseen   int
	Deleted  int
	Size     int64
}

// NormalizeName checks a mailbox name and returns its canonical form: INBOX
// in any letter case (also as the first level) becomes "INBOX". Names are
// UTF-8; empty levels, control characters and the IMAP wildcards * and % are
// refused.
func NormalizeName(name string) (string, error) {
	if name == "" || len(name) > maxNameLen || !utf8.ValidString(name) {
		return "", fmt.Errorf("store: %w: %q", ErrBadName, name)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || r == '*' || r == '%' || (r >= 0x80 && r < 0xa0) {
			return "", fmt.Errorf("store: %w: %q", ErrBadName, name)
		}
	}
	for _, part := range strings.Split(name, Delimiter) {
		if part == "" {
			return "", fmt.Errorf("store: %w: %q has an empty level", ErrBadName, name)
		}
	}
	first, rest, hasRest := strings.Cut(name, Delimiter)
	if strings.EqualFold(first, Inbox) {
		if hasRest {
			return Inbox + Delimiter + rest, nil
		}
		return Inbox, nil
	}
	return name, nil
}

func validSpecialUse(su string) bool {
	switch su {
	case "", SpecialAll, SpecialArchive, SpecialDrafts, SpecialFlagged, SpecialJunk, SpecialSent, SpecialTrash:
		return true
	}
	return false
}

const mailboxCols = `id, account_id, name, uidvalidity, uidnext, highest_modseq, subscribed, special_use`

func scanMailbox(row rowScanner) (Mailbox, error) {
	var m Mailbox
	var uidv, uidn int64
	var hms int64
	if err := row.Scan(&m.ID, &m.AccountID, &m.Name, &uidv, &uidn, &hms, &m.Subscribed, &m.SpecialUse); err != nil {
		return Mailbox{}, err
	}
	m.UIDValidity, m.UIDNext, m.HighestModSeq = uint32(uidv), uint32(uidn), uint64(hms)
	return m, nil
}

// allocUIDValidity returns a UIDVALIDITY never handed out before in this
// store: one more than the last, or the current time if that is larger, so a
// restored or recreated database still moves forward.
func (s *Store) allocUIDValidity(ctx context.Context, tx *sql.Tx) (uint32, error) {
	var last int64
	if err := tx.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'last_uidvalidity'`).Scan(&last); err != nil {
		return 0, fmt.Errorf("store: uidvalidity: %w", err)
	}
	next := last + 1
	if now := s.now().Unix(); now > next && now <= 0xFFFFFFFF {
		next = now
	}
	if next > 0xFFFFFFFF {
		next = 1
	}
	if _, err := tx.ExecContext(ctx, `UPDATE meta SET value = ? WHERE key = 'last_uidvalidity'`, next); err != nil {
		return 0, fmt.Errorf("store: uidvalidity: %w", err)
	}
	return uint32(next), nil
}

// createMailbox inserts name and any missing parent levels. It fails with
// ErrExists if name itself exists.
func (s *Store) createMailbox(ctx context.Context, tx *sql.Tx, accountID int64, name, specialUse string, subscribed bool) (Mailbox, error) {
	name, err := NormalizeName(name)
	if err != nil {
		return Mailbox{}, err
	}
	if !validSpecialUse(specialUse) {
		return Mailbox{}, fmt.Errorf("store: unknown special-use attribute %q", specialUse)
	}
	if _, err := mailboxTx(ctx, tx, accountID, name); err == nil {
		return Mailbox{}, fmt.Errorf("store: mailbox %q: %w", name, ErrExists)
	} else if !errors.Is(err, ErrNoMailbox) {
		return Mailbox{}, err
	}
	levels := strings.Split(name, Delimiter)
	for i := 1; i < len(levels); i++ {
		parent := strings.Join(levels[:i], Delimiter)
		if _, err := mailboxTx(ctx, tx, accountID, parent); errors.Is(err, ErrNoMailbox) {
			if _, err := s.insertMailbox(ctx, tx, accountID, parent, "", subscribed); err != nil {
				return Mailbox{}, err
			}
		} else if err != nil {
			return Mailbox{}, err
		}
	}
	return s.insertMailbox(ctx, tx, accountID, name, specialUse, subscribed)
}

func (s *Store) insertMailbox(ctx context.Context, tx *sql.Tx, accountID int64, name, specialUse string, subscribed bool) (Mailbox, error) {
	uidv, err := s.allocUIDValidity(ctx, tx)
	if err != nil {
		return Mailbox{}, err
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO mailboxes (account_id, name, uidvalidity, subscribed, special_use, created) VALUES (?, ?, ?, ?, ?, ?)`,
		accountID, name, int64(uidv), subscribed, specialUse, s.now().UnixNano())
	if err != nil {
		return Mailbox{}, fmt.Errorf("store: create mailbox %q: %w", name, err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return Mailbox{}, fmt.Errorf("store: create mailbox %q: %w", name, err)
	}
	return Mailbox{ID: id, AccountID: accountID, Name: name, UIDValidity: uidv, UIDNext: 1, HighestModSeq: 1, Subscribed: subscribed, SpecialUse: specialUse}, nil
}

func mailboxTx(ctx context.Context, tx *sql.Tx, accountID int64, name string) (Mailbox, error) {
	m, err := scanMailbox(tx.QueryRowContext(ctx, `SELECT `+mailboxCols+` FROM mailboxes WHERE account_id = ? AND name = ?`, accountID, name))
	if errors.Is(err, sql.ErrNoRows) {
		return Mailbox{}, fmt.Errorf("store: mailbox %q: %w", name, ErrNoMailbox)
	}
	if err != nil {
		return Mailbox{}, fmt.Errorf("store: mailbox: %w", err)
	}
	return m, nil
}

// CreateMailbox creates a mailbox, and any missing parent levels, with a
// fresh UIDVALIDITY. specialUse is "" or one of the Special* constants.
func (s *Store) CreateMailbox(ctx context.Context, accountID int64, name, specialUse string) (Mailbox, error) {
	var m Mailbox
	err := s.write(ctx, func(tx *sql.Tx) error {
		var err error
		m, err = s.createMailbox(ctx, tx, accountID, name, specialUse, false)
		return err
	})
	return m, err
}

// Mailbox returns an account's mailbox by name (INBOX case-insensitive).
func (s *Store) Mailbox(ctx context.Context, accountID int64, name string) (Mailbox, error) {
	name, err := NormalizeName(name)
	if err != nil {
		return Mailbox{}, fmt.Errorf("store: mailbox: %w", ErrNoMailbox)
	}
	m, err := scanMailbox(s.r.QueryRowContext(ctx, `SELECT `+mailboxCols+` FROM mailboxes WHERE account_id = ? AND name = ?`, accountID, name))
	if errors.Is(err, sql.ErrNoRows) {
		return Mailbox{}, fmt.Errorf("store: mailbox %q: %w", name, ErrNoMailbox)
	}
	if err != nil {
		return Mailbox{}, fmt.Errorf("store: mailbox: %w", err)
	}
	return m, nil
}

// MailboxByID returns a mailbox by its ID.
func (s *Store) MailboxByID(ctx context.Context, id int64) (Mailbox, error) {
	m, err := scanMailbox(s.r.QueryRowContext(ctx, `SELECT `+mailboxCols+` FROM mailboxes WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Mailbox{}, fmt.Errorf("store: mailbox %d: %w", id, ErrNoMailbox)
	}
	if err != nil {
		return Mailbox{}, fmt.Errorf("store: mailbox: %w", err)
	}
	return m, nil
}

// Mailboxes lists an account's mailboxes ordered by name; a parent sorts
// before its children.
func (s *Store) Mailboxes(ctx context.Context, accountID int64) ([]Mailbox, error) {
	return queryAll(ctx, s.r, "list mailboxes", scanMailbox, `SELECT `+mailboxCols+` FROM mailboxes WHERE account_id = ? ORDER BY name`, accountID)
}

// DeleteMailbox deletes a mailbox and its messages. INBOX cannot be
// deleted; a mailbox with children is refused (ErrHasChildren), as Dovecot
// does, rather than left behind as a \Noselect placeholder.
func (s *Store) DeleteMailbox(ctx context.Context, accountID int64, name string) error {
	name, err := NormalizeName(name)
	if err != nil {
		return err
	}
	if name == Inbox {
		return fmt.Errorf("store: delete %s: %w", name, ErrInboxReserved)
	}
	var id int64
	err = s.write(ctx, func(tx *sql.Tx) error {
		m, err := mailboxTx(ctx, tx, accountID, name)
		if err != nil {
			return err
		}
		id = m.ID
		var kids int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM mailboxes WHERE account_id = ? AND `+childOf,
			accountID, len(name)+1, name+Delimiter).Scan(&kids); err != nil {
			return fmt.Errorf("store: delete mailbox: %w", err)
		}
		if kids > 0 {
			return fmt.Errorf("store: delete mailbox %q: %w", name, ErrHasChildren)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM mailboxes WHERE id = ?`, m.ID); err != nil {
			return fmt.Errorf("store: delete mailbox: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.notify(id)
	return nil
}

// RenameMailbox renames a mailbox together with its children, keeping
// their UIDVALIDITY and UIDs. Missing parents of the new name are created.
// Renaming INBOX is special (RFC 9051 §6.3.6): its messages move into a new
// mailbox with the new name (fresh UIDVALIDITY and UIDs), INBOX stays,
// empty, and INBOX's children are not moved.
func (s *Store) RenameMailbox(ctx context.Context, accountID int64, oldName, newName string) error {
	oldName, err := NormalizeName(oldName)
	if err != nil {
		return err
	}
	newName, err = NormalizeName(newName)
	if err != nil {
		return err
	}
	if newName == Inbox {
		return fmt.Errorf("store: rename to %s: %w", Inbox, ErrInboxReserved)
	}
	if strings.HasPrefix(newName, oldName+Delimiter) {
		return fmt.Errorf("store: %w: cannot rename %q into its own child %q", ErrBadName, oldName, newName)
	}
	var touched []int64
	err = s.write(ctx, func(tx *sql.Tx) error {
		src, err := mailboxTx(ctx, tx, accountID, oldName)
		if err != nil {
			return err
		}
		if _, err := mailboxTx(ctx, tx, accountID, newName); err == nil {
			return fmt.Errorf("store: rename to %q: %w", newName, ErrExists)
		} else if !errors.Is(err, ErrNoMailbox) {
			return err
		}
		touched = append(touched, src.ID)
		if oldName == Inbox {
			dst, err := s.createMailbox(ctx, tx, accountID, newName, "", src.Subscribed)
			if err != nil {
				return err
			}
			uids, err := uidsIn(ctx, tx, src.ID)
			if err != nil {
				return err
			}
			if len(uids) > 0 {
				if _, err := s.copyTx(ctx, tx, src.ID, uids, dst.ID); err != nil {
					return err
				}
				if err := s.deleteTx(ctx, tx, src.ID, uids); err != nil {
					return err
				}
			}
			touched = append(touched, dst.ID)
			return nil
		}
		// Parents first, while the old names still hold their places.
		levels := strings.Split(newName, Delimiter)
		for i := 1; i < len(levels); i++ {
			parent := strings.Join(levels[:i], Delimiter)
			if _, err := mailboxTx(ctx, tx, accountID, parent); errors.Is(err, ErrNoMailbox) {
				if _, err := s.insertMailbox(ctx, tx, accountID, parent, "", false); err != nil {
					return err
				}
			} else if err != nil {
				return err
			}
		}
		kids, err := queryAll(ctx, tx, "rename", scanInt64, `SELECT id FROM mailboxes WHERE account_id = ? AND `+childOf,
			accountID, len(oldName)+1, oldName+Delimiter)
		if err != nil {
			return err
		}
		touched = append(touched, kids...)
		// substr counts characters, len counts bytes: compare and cut on
		// bytes via CAST AS BLOB so non-ASCII names rename correctly.
		_, err = tx.ExecContext(ctx, `UPDATE mailboxes SET name = ?1 || CAST(substr(CAST(name AS BLOB), ?2) AS TEXT)
			WHERE account_id = ?3 AND (name = ?4 OR substr(CAST(name AS BLOB), 1, ?5) = CAST(?6 AS BLOB))`,
			newName, len(oldName)+1, accountID, oldName, len(oldName)+1, oldName+Delimiter)
		if err != nil {
			return fmt.Errorf("store: rename: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.notify(touched...)
	return nil
}

// SetSubscribed subscribes or unsubscribes an existing mailbox.
func (s *Store) SetSubscribed(ctx context.Context, accountID int64, name string, subscribed bool) error {
	name, err := NormalizeName(name)
	if err != nil {
		return err
	}
	return s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE mailboxes SET subscribed = ? WHERE account_id = ? AND name = ?`, subscribed, accountID, name)
		if err != nil {
			return fmt.Errorf("store: subscribe: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("store: mailbox %q: %w", name, ErrNoMailbox)
		}
		return nil
	})
}

// Status returns a mailbox's counters in one consistent read.
func (s *Store) Status(ctx context.Context, mailboxID int64) (Status, error) {
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return Status{}, fmt.Errorf("store: status: %w", err)
	}
	defer tx.Rollback()
	m, err := scanMailbox(tx.QueryRowContext(ctx, `SELECT `+mailboxCols+` FROM mailboxes WHERE id = ?`, mailboxID))
	if errors.Is(err, sql.ErrNoRows) {
		return Status{}, fmt.Errorf("store: mailbox %d: %w", mailboxID, ErrNoMailbox)
	}
	if err != nil {
		return Status{}, fmt.Errorf("store: status: %w", err)
	}
	st := Status{Mailbox: m}
	err = tx.QueryRowContext(ctx, `SELECT count(*), coalesce(sum(1 - seen), 0), coalesce(sum(deleted), 0), coalesce(sum(size), 0)
		FROM messages WHERE mailbox_id = ?`, mailboxID).Scan(&st.Messages, &st.Unseen, &st.Deleted, &st.Size)
	if err != nil {
		return Status{}, fmt.Errorf("store: status: %w", err)
	}
	return st, nil
}

func timeFromNano(n int64) time.Time { return time.Unix(0, n).UTC() }
