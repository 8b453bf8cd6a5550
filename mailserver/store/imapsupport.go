package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// This file holds the small read helpers the IMAP server needs beyond the
// general API.

// FirstUnseen returns the lowest UID without \Seen in a mailbox, or 0 when
// every message is seen (IMAP4rev1 SELECT's UNSEEN code).
func (s *Store) FirstUnseen(ctx context.Context, mailboxID int64) (uint32, error) {
	var uid sql.NullInt64
	err := s.r.QueryRowContext(ctx, `SELECT min(uid) FROM messages WHERE mailbox_id = ? AND seen = 0`, mailboxID).Scan(&uid)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("store: first unseen: %w", err)
	}
	if !uid.Valid {
		return 0, nil
	}
	return uint32(uid.Int64), nil
}

// MessagesBetween lists the messages with first <= UID <= last in UID
// order: one range scan for the UIDs an IMAP command names.
func (s *Store) MessagesBetween(ctx context.Context, mailboxID int64, first, last uint32) ([]MessageInfo, error) {
	return s.queryMessages(ctx, `SELECT `+messageCols+` FROM messages WHERE mailbox_id = ? AND uid BETWEEN ? AND ? ORDER BY uid`,
		mailboxID, int64(first), int64(last))
}
