package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
)

// This file holds what the IMAP server's in-memory mailbox index needs: the
// change log with body references, so FETCH and SEARCH open body files
// without asking the index again, and a flag update that tells the caller
// whether anyone else wrote in between, so it can apply its own change
// without re-reading it.

// IndexEntry is one message as the IMAP server's mailbox index holds it:
// its metadata and a reference to its body file. Entries with the same flags
// may share one Flags slice: treat it as read-only.
type IndexEntry struct {
	MessageInfo
	blob string
}

// BodyKey identifies the entry's body. Bodies are immutable and a key is
// never reused for other content, so it is a safe cache key for anything
// derived from the bytes (parsed headers); copies of a message share it.
func (e IndexEntry) BodyKey() string { return e.blob }

// IndexDelta is what changed in a mailbox after a modseq.
type IndexDelta struct {
	// Changed are the messages added or with changed flags, in UID order.
	Changed []IndexEntry
	// Vanished are the UIDs expunged, in ascending order.
	Vanished []uint32
	// HighestModSeq, UIDValidity and UIDNext are the mailbox's at the time
	// of the read.
	HighestModSeq uint64
	UIDValidity   uint32
	UIDNext       uint32
}

// IndexChanges is Changes with body references and the mailbox's UID
// counters, all from one consistent read. ErrNoMailbox if the mailbox is
// gone.
func (s *Store) IndexChanges(ctx context.Context, mailboxID int64, since uint64) (IndexDelta, error) {
	tx, err := s.r.BeginTx(ctx, nil)
	if err != nil {
		return IndexDelta{}, fmt.Errorf("store: index changes: %w", err)
	}
	defer tx.Rollback()
	var d IndexDelta
	var hms, uidv, uidnext int64
	err = tx.QueryRowContext(ctx, `SELECT highest_modseq, uidvalidity, uidnext FROM mailboxes WHERE id = ?`, mailboxID).Scan(&hms, &uidv, &uidnext)
	if errors.Is(err, sql.ErrNoRows) {
		return IndexDelta{}, fmt.Errorf("store: mailbox %d: %w", mailboxID, ErrNoMailbox)
	}
	if err != nil {
		return IndexDelta{}, fmt.Errorf("store: index changes: %w", err)
	}
	d.HighestModSeq, d.UIDValidity, d.UIDNext = uint64(hms), uint32(uidv), uint32(uidnext)
	rows, err := tx.QueryContext(ctx, `SELECT uid, flags, size, internal_date, modseq, blob FROM messages
		WHERE mailbox_id = ? AND modseq > ? ORDER BY uid`, mailboxID, int64(since))
	if err != nil {
		return IndexDelta{}, fmt.Errorf("store: index changes: %w", err)
	}
	// Most messages of a mailbox share a few flag combinations; one
	// decoded list per distinct column value keeps a large index small.
	lists := map[string][]string{}
	for rows.Next() {
		var e IndexEntry
		var uid, modseq, date int64
		var flags string
		if err := rows.Scan(&uid, &flags, &e.Size, &date, &modseq, &e.blob); err != nil {
			rows.Close()
			return IndexDelta{}, fmt.Errorf("store: index changes: %w", err)
		}
		if !validBlobName(e.blob) {
			rows.Close()
			return IndexDelta{}, fmt.Errorf("store: index changes: corrupt body reference %q", e.blob)
		}
		e.UID, e.ModSeq, e.InternalDate = uint32(uid), uint64(modseq), timeFromNano(date)
		l, ok := lists[flags]
		if !ok {
			l = decodeFlags(flags).list()
			lists[flags] = l
		}
		e.Flags = l
		d.Changed = append(d.Changed, e)
	}
	if err := rows.Err(); err != nil {
		rows.Close()
		return IndexDelta{}, fmt.Errorf("store: index changes: %w", err)
	}
	rows.Close()
	if d.Vanished, err = queryUIDs(ctx, tx, `SELECT uid FROM tombstones WHERE mailbox_id = ? AND modseq > ? ORDER BY uid`, mailboxID, int64(since)); err != nil {
		return IndexDelta{}, fmt.Errorf("store: index changes: %w", err)
	}
	return d, nil
}

// OpenEntry opens the body an entry names without consulting the index.
// ErrNotFound if the body file is gone (expunged, and no copy shares it).
// A body shared with a copy elsewhere stays readable after its expunge
// here; the IMAP server only opens entries of its current view.
func (s *Store) OpenEntry(e IndexEntry) (*Body, error) {
	return s.openBody(e.blob, e.Size)
}

// ReadEntry reads the whole body an entry names into buf (grown when too
// small) and returns it; ErrNotFound as OpenEntry. It is the way to read
// many small bodies: no file object per body.
func (s *Store) ReadEntry(e IndexEntry, buf []byte) ([]byte, error) {
	if !validBlobName(e.blob) {
		return buf[:0], fmt.Errorf("store: read entry: corrupt body reference %q", e.blob)
	}
	return s.msgFD.readBlob(e.blob, e.Size, buf[:0])
}

// FlagUpdate is the result of UpdateFlags.
type FlagUpdate struct {
	// Messages holds the resulting metadata of every existing target, in
	// UID order; those whose flags changed carry ModSeq == After.
	Messages []MessageInfo
	// Before is the mailbox's HIGHESTMODSEQ when the transaction began,
	// After when it committed (equal when no flag changed). A caller whose
	// view was current at Before can apply Messages and be current at
	// After without reading the change log.
	Before, After uint64
}

// UpdateFlags is StoreFlags for the IMAP server: the same change in one
// transaction (one UPDATE per resulting flag combination), reporting the
// modseq before and after.
func (s *Store) UpdateFlags(ctx context.Context, mailboxID int64, uids []uint32, op FlagOp, flags []string) (FlagUpdate, error) {
	arg, err := parseFlagList(flags)
	if err != nil {
		return FlagUpdate{}, err
	}
	var res FlagUpdate
	err = s.write(ctx, func(tx *sql.Tx) error {
		res = FlagUpdate{}
		var hms int64
		err := tx.QueryRowContext(ctx, `SELECT highest_modseq FROM mailboxes WHERE id = ?`, mailboxID).Scan(&hms)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("store: mailbox %d: %w", mailboxID, ErrNoMailbox)
		}
		if err != nil {
			return fmt.Errorf("store: update flags: %w", err)
		}
		res.Before, res.After = uint64(hms), uint64(hms)
		rows, complete, err := scanRows(ctx, tx, mailboxID, uids, false)
		if err != nil {
			return err
		}
		// Changed rows are grouped by their new flags and each group is
		// written by one UPDATE over a JSON list of UIDs: a STORE on a
		// whole mailbox mostly yields one or two groups. A group that is
		// every message from its first UID to its last (the usual STORE
		// 1:*) is written by a range instead.
		groups := map[string][]uint32{}
		span := map[string][2]int{} // first and last index in rows
		var order []string
		lists := map[string][]string{}
		for i, r := range rows {
			old := decodeFlags(r.flags)
			nf := old.apply(op, arg)
			if len(nf) > maxFlags {
				return fmt.Errorf("store: %w: more than %d flags", ErrBadFlag, maxFlags)
			}
			enc := nf.encode()
			l, ok := lists[enc]
			if !ok {
				l = nf.list()
				lists[enc] = l
			}
			modseq := uint64(r.modseq)
			if enc != r.flags && enc != old.encode() {
				if res.After == res.Before {
					ms, err := bumpModSeq(ctx, tx, mailboxID)
					if err != nil {
						return err
					}
					res.After = ms
				}
				if _, ok := groups[enc]; !ok {
					order = append(order, enc)
					span[enc] = [2]int{i, i}
				}
				groups[enc] = append(groups[enc], r.uid)
				span[enc] = [2]int{span[enc][0], i}
				modseq = res.After
			}
			res.Messages = append(res.Messages, MessageInfo{UID: r.uid, Flags: l, Size: r.size, InternalDate: timeFromNano(r.date), ModSeq: modseq})
		}
		for _, enc := range order {
			nf := decodeFlags(enc)
			g, sp := groups[enc], span[enc]
			if complete && sp[1]-sp[0]+1 == len(g) {
				// Within this write transaction nothing else adds rows, so
				// the range is exactly the group.
				if _, err := tx.ExecContext(ctx, `UPDATE messages SET flags = ?, seen = ?, deleted = ?, modseq = ?
					WHERE mailbox_id = ? AND uid BETWEEN ? AND ?`,
					enc, nf.has(FlagSeen), nf.has(FlagDeleted), int64(res.After), mailboxID, int64(g[0]), int64(g[len(g)-1])); err != nil {
					return fmt.Errorf("store: update flags: %w", err)
				}
				continue
			}
			uidList, err := json.Marshal(g)
			if err != nil {
				return fmt.Errorf("store: update flags: %w", err)
			}
			if _, err := tx.ExecContext(ctx, `UPDATE messages SET flags = ?, seen = ?, deleted = ?, modseq = ?
				WHERE mailbox_id = ? AND uid IN (SELECT value FROM json_each(?))`,
				enc, nf.has(FlagSeen), nf.has(FlagDeleted), int64(res.After), mailboxID, string(uidList)); err != nil {
				return fmt.Errorf("store: update flags: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return FlagUpdate{}, err
	}
	if res.After != res.Before {
		s.notify(mailboxID)
	}
	return res, nil
}
