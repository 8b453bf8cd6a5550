package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"
)

// RecipientStatus is the delivery state of one queued recipient.
type RecipientStatus string

// Recipient states. A deferred recipient stays pending with LastError set.
const (
	RcptPending   RecipientStatus = "pending"
	RcptDelivered RecipientStatus = "delivered"
	RcptFailed    RecipientStatus = "failed"
)

// QueueEntry is one queued message with its recipients.
type QueueEntry struct {
	ID          int64            `json:"id"`
	Sender      string           `json:"sender"`
	Size        int64            `json:"size"`
	Created     time.Time        `json:"created"`
	NextAttempt time.Time        `json:"next_attempt"`
	Attempts    int              `json:"attempts"`
	LastError   string           `json:"last_error,omitempty"`
	Recipients  []QueueRecipient `json:"recipients"`
}

// QueueRecipient is one recipient of a queued message.
type QueueRecipient struct {
	Address   string          `json:"address"`
	Status    RecipientStatus `json:"status"`
	LastError string          `json:"last_error,omitempty"`
	Updated   time.Time       `json:"updated"`
}

// Pending returns the recipients still to be delivered.
func (e QueueEntry) Pending() []string {
	var out []string
	for _, r := range e.Recipients {
		if r.Status == RcptPending {
			out = append(out, r.Address)
		}
	}
	return out
}

func (s *Store) enqueueTx(ctx context.Context, tx *sql.Tx, blob string, size int64, sender string, rcpts []string, next time.Time) (int64, error) {
	rc := slices.Clone(rcpts)
	slices.Sort(rc)
	rc = slices.Compact(rc)
	if len(rc) == 0 {
		return 0, errors.New("store: enqueue: no recipients")
	}
	now := s.now().UnixNano()
	res, err := tx.ExecContext(ctx, `INSERT INTO queue (blob, size, sender, created, next_attempt) VALUES (?, ?, ?, ?, ?)`,
		blob, size, sender, now, next.UnixNano())
	if err != nil {
		return 0, fmt.Errorf("store: enqueue: %w", err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return 0, fmt.Errorf("store: enqueue: %w", err)
	}
	for _, r := range rc {
		if _, err := tx.ExecContext(ctx, `INSERT INTO queue_rcpts (queue_id, rcpt, updated) VALUES (?, ?, ?)`, id, r, now); err != nil {
			return 0, fmt.Errorf("store: enqueue: %w", err)
		}
	}
	return id, nil
}

// Enqueue stores a message for relay to rcpts, first attempt at next
// (zero: now). It is durable when it returns.
func (s *Store) Enqueue(ctx context.Context, sender string, rcpts []string, raw io.Reader, next time.Time) (int64, error) {
	if next.IsZero() {
		next = s.now()
	}
	blob, size, err := s.writeBlob(raw)
	if err != nil {
		return 0, err
	}
	var id int64
	err = s.write(ctx, func(tx *sql.Tx) error {
		var err error
		id, err = s.enqueueTx(ctx, tx, blob, size, sender, rcpts, next)
		return err
	})
	if err != nil {
		s.removeBlob(blob)
		return 0, err
	}
	return id, nil
}

func (s *Store) queueEntries(ctx context.Context, where string, args ...any) ([]QueueEntry, error) {
	tx, err := s.r.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("store: queue: %w", err)
	}
	defer tx.Rollback()
	out, err := queryAll(ctx, tx, "queue", scanQueueEntry,
		`SELECT id, sender, size, created, next_attempt, attempts, last_error FROM queue `+where, args...)
	if err != nil {
		return nil, err
	}
	for i := range out {
		out[i].Recipients, err = queryAll(ctx, tx, "queue", scanQueueRecipient,
			`SELECT rcpt, status, last_error, updated FROM queue_rcpts WHERE queue_id = ? ORDER BY rcpt`, out[i].ID)
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

func scanQueueEntry(row rowScanner) (QueueEntry, error) {
	var e QueueEntry
	var created, next int64
	if err := row.Scan(&e.ID, &e.Sender, &e.Size, &created, &next, &e.Attempts, &e.LastError); err != nil {
		return QueueEntry{}, err
	}
	e.Created, e.NextAttempt = timeFromNano(created), timeFromNano(next)
	return e, nil
}

func scanQueueRecipient(row rowScanner) (QueueRecipient, error) {
	var r QueueRecipient
	var upd int64
	if err := row.Scan(&r.Address, &r.Status, &r.LastError, &upd); err != nil {
		return QueueRecipient{}, err
	}
	r.Updated = timeFromNano(upd)
	return r, nil
}

// QueueList returns every queued message, oldest first.
func (s *Store) QueueList(ctx context.Context) ([]QueueEntry, error) {
	return s.queueEntries(ctx, `ORDER BY id`)
}

// QueueEntry returns one queued message; ErrNotFound if it is gone.
func (s *Store) QueueEntry(ctx context.Context, id int64) (QueueEntry, error) {
	es, err := s.queueEntries(ctx, `WHERE id = ?`, id)
	if err != nil {
		return QueueEntry{}, err
	}
	if len(es) == 0 {
		return QueueEntry{}, fmt.Errorf("store: queue entry %d: %w", id, ErrNotFound)
	}
	return es[0], nil
}

// QueueDue returns up to limit messages whose next attempt is at or before
// now and that still have pending recipients, earliest first.
func (s *Store) QueueDue(ctx context.Context, now time.Time, limit int) ([]QueueEntry, error) {
	if limit <= 0 {
		limit = 100
	}
	return s.queueEntries(ctx, `WHERE next_attempt <= ? AND EXISTS (SELECT 1 FROM queue_rcpts r WHERE r.queue_id = queue.id AND r.status = 'pending')
		ORDER BY next_attempt, id LIMIT ?`, now.UnixNano(), limit)
}

// QueueSize returns the number of queued messages.
func (s *Store) QueueSize(ctx context.Context) (int, error) {
	var n int
	if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM queue`).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: queue size: %w", err)
	}
	return n, nil
}

// OpenQueued opens a queued message's body.
func (s *Store) OpenQueued(ctx context.Context, id int64) (*Body, error) {
	var blob string
	var size int64
	err := s.r.QueryRowContext(ctx, `SELECT blob, size FROM queue WHERE id = ?`, id).Scan(&blob, &size)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("store: queue entry %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: open queued: %w", err)
	}
	return s.openBody(blob, size)
}

// RecipientUpdate is one recipient's outcome for SetRecipientStatus.
type RecipientUpdate struct {
	Rcpt   string
	Status RecipientStatus
	Reason string
}

// SetRecipientStatus records outcomes of one queue entry's recipients in
// one transaction (one fsync for a message to many recipients):
// RcptDelivered after a 250 (committed before the relay moves on, so a
// crash never sends twice to that recipient), RcptFailed after a
// permanent error, RcptPending with a reason after a temporary one. An
// unknown recipient fails the whole call (ErrNotFound) and records nothing.
func (s *Store) SetRecipientStatus(ctx context.Context, id int64, updates ...RecipientUpdate) error {
	for _, u := range updates {
		switch u.Status {
		case RcptPending, RcptDelivered, RcptFailed:
		default:
			return fmt.Errorf("store: unknown recipient status %q", u.Status)
		}
	}
	if len(updates) == 0 {
		return nil
	}
	return s.write(ctx, func(tx *sql.Tx) error {
		now := s.now().UnixNano()
		for _, u := range updates {
			res, err := tx.ExecContext(ctx, `UPDATE queue_rcpts SET status = ?, last_error = ?, updated = ? WHERE queue_id = ? AND rcpt = ?`,
				string(u.Status), u.Reason, now, id, u.Rcpt)
			if err != nil {
				return fmt.Errorf("store: recipient status: %w", err)
			}
			if n, _ := res.RowsAffected(); n == 0 {
				return fmt.Errorf("store: queue entry %d recipient %s: %w", id, u.Rcpt, ErrNotFound)
			}
		}
		return nil
	})
}

// Reschedule records a finished attempt: attempts+1, the next attempt time
// and the last error.
func (s *Store) Reschedule(ctx context.Context, id int64, next time.Time, lastErr string) error {
	return s.queueUpdate(ctx, id, `UPDATE queue SET attempts = attempts + 1, next_attempt = ?, last_error = ? WHERE id = ?`, next.UnixNano(), lastErr, id)
}

// QueueRetry makes a queued message due now (operator's `queue retry`).
func (s *Store) QueueRetry(ctx context.Context, id int64) error {
	return s.queueUpdate(ctx, id, `UPDATE queue SET next_attempt = ? WHERE id = ?`, s.now().UnixNano(), id)
}

// QueueDelete removes a queued message; its body goes once unreferenced.
func (s *Store) QueueDelete(ctx context.Context, id int64) error {
	return s.queueUpdate(ctx, id, `DELETE FROM queue WHERE id = ?`, id)
}

func (s *Store) queueUpdate(ctx context.Context, id int64, q string, args ...any) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, q, args...)
		if err != nil {
			return fmt.Errorf("store: queue %d: %w", id, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("store: queue entry %d: %w", id, ErrNotFound)
		}
		return nil
	})
}
