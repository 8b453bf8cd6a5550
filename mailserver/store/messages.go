package store

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"
)

// MessageInfo is a message's metadata, everything FETCH needs without
// opening the body.
type MessageInfo struct {
	UID          uint32
	Flags        []string // canonical spelling, sorted
	Size         int64
	InternalDate time.Time
	ModSeq       uint64
}

// AppendOptions are the optional parts of an APPEND.
type AppendOptions struct {
	Flags []string
	// Date is the internal date; zero means now.
	Date time.Time
}

// AppendResult identifies a stored message (APPENDUID).
type AppendResult struct {
	MailboxID   int64
	UID         uint32
	UIDValidity uint32
	ModSeq      uint64
	Size        int64
}

// CopyResult maps source UIDs to the new UIDs in the destination (COPYUID).
// SrcUIDs[i] became DstUIDs[i]; UIDs that did not exist are left out.
type CopyResult struct {
	UIDValidity uint32 // of the destination
	SrcUIDs     []uint32
	DstUIDs     []uint32
}

// Body is an open message body: byte-exact, readable at any offset. Close
// it when done; a body stays readable even if the message is expunged
// meanwhile.
type Body struct {
	*io.SectionReader
	f *os.File
}

// Close releases the body's file.
func (b *Body) Close() error { return b.f.Close() }

const messageCols = `uid, flags, size, internal_date, modseq`

func scanMessage(row rowScanner) (MessageInfo, error) {
	var m MessageInfo
	var uid, modseq, date int64
	var flags string
	if err := row.Scan(&uid, &flags, &m.Size, &date, &modseq); err != nil {
		return MessageInfo{}, err
	}
	m.UID, m.ModSeq, m.InternalDate = uint32(uid), uint64(modseq), timeFromNano(date)
	m.Flags = decodeFlags(flags).list()
	return m, nil
}

// bumpModSeq advances a mailbox's HIGHESTMODSEQ by one and returns the new
// value, which tags every change of the current transaction.
func bumpModSeq(ctx context.Context, tx *sql.Tx, mailboxID int64) (uint64, error) {
	var ms int64
	err := tx.QueryRowContext(ctx, `UPDATE mailboxes SET highest_modseq = highest_modseq + 1 WHERE id = ? RETURNING highest_modseq`, mailboxID).Scan(&ms)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("store: mailbox %d: %w", mailboxID, ErrNoMailbox)
	}
	if err != nil {
		return 0, fmt.Errorf("store: modseq: %w", err)
	}
	return uint64(ms), nil
}

// allocUIDs reserves n consecutive UIDs and one modseq in a mailbox.
func allocUIDs(ctx context.Context, tx *sql.Tx, mailboxID int64, n int) (first, uidvalidity uint32, modseq uint64, err error) {
	var next, uidv, ms int64
	err = tx.QueryRowContext(ctx, `UPDATE mailboxes SET uidnext = uidnext + ?, highest_modseq = highest_modseq + 1 WHERE id = ?
		RETURNING uidnext, uidvalidity, highest_modseq`, n, mailboxID).Scan(&next, &uidv, &ms)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, 0, 0, fmt.Errorf("store: mailbox %d: %w", mailboxID, ErrNoMailbox)
	}
	if err != nil {
		return 0, 0, 0, fmt.Errorf("store: allocate uid: %w", err)
	}
	// UIDs are 32-bit; a mailbox that used them up needs a new UIDVALIDITY
	// (delete and recreate), which RFC 9051 allows but we never do silently.
	if next-1 > 0xFFFFFFFF {
		return 0, 0, 0, fmt.Errorf("store: mailbox %d has used up its UIDs", mailboxID)
	}
	return uint32(next - int64(n)), uint32(uidv), uint64(ms), nil
}

func (s *Store) insertBlob(ctx context.Context, tx *sql.Tx, mailboxID int64, blob string, size int64, date time.Time, flags flagSet) (AppendResult, error) {
	uid, uidv, ms, err := allocUIDs(ctx, tx, mailboxID, 1)
	if err != nil {
		return AppendResult{}, err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO messages (mailbox_id, uid, blob, size, internal_date, flags, seen, deleted, modseq)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		mailboxID, int64(uid), blob, size, date.UnixNano(), flags.encode(), flags.has(FlagSeen), flags.has(FlagDeleted), int64(ms))
	if err != nil {
		return AppendResult{}, fmt.Errorf("store: insert message: %w", err)
	}
	return AppendResult{MailboxID: mailboxID, UID: uid, UIDValidity: uidv, ModSeq: ms, Size: size}, nil
}

// Append stores a message read from r in a mailbox. The body is durable
// (fsynced, committed) when Append returns; a body larger than the size
// limit gives ErrTooBig and stores nothing.
func (s *Store) Append(ctx context.Context, mailboxID int64, r io.Reader, opts AppendOptions) (AppendResult, error) {
	flags, err := parseFlagList(opts.Flags)
	if err != nil {
		return AppendResult{}, err
	}
	date := opts.Date
	if date.IsZero() {
		date = s.now()
	}
	blob, size, err := s.writeBlob(r)
	if err != nil {
		return AppendResult{}, err
	}
	var res AppendResult
	err = s.write(ctx, func(tx *sql.Tx) error {
		res, err = s.insertBlob(ctx, tx, mailboxID, blob, size, date, flags)
		return err
	})
	if err != nil {
		s.removeBlob(blob)
		return AppendResult{}, err
	}
	s.notify(mailboxID)
	return res, nil
}

// Deliver stores raw in the named mailbox of an account (SMTP local
// delivery; mailbox is normally INBOX). It is durable when it returns.
func (s *Store) Deliver(ctx context.Context, accountID int64, mailbox string, raw []byte, date time.Time) (AppendResult, error) {
	m, err := s.Mailbox(ctx, accountID, mailbox)
	if err != nil {
		return AppendResult{}, err
	}
	return s.Append(ctx, m.ID, bytes.NewReader(raw), AppendOptions{Date: date})
}

// Incoming is one message accepted by SMTP for several recipients at once:
// local accounts (their INBOX) and remote addresses (the outbound queue).
type Incoming struct {
	Raw  io.Reader
	Date time.Time
	// Local lists account IDs whose INBOX receives the message.
	Local []int64
	// Sender is the envelope sender for the queue ("" is the null sender).
	Sender string
	// Remote lists recipients to relay; none means nothing is queued.
	Remote []string
	// NextAttempt is when the queue should first try; zero means now.
	NextAttempt time.Time
}

// AcceptResult reports where an Incoming message went.
type AcceptResult struct {
	Delivered []AppendResult
	QueueID   int64 // 0 when nothing was queued
	Size      int64
}

// Accept stores one body once and, in a single transaction, delivers it
// to every local INBOX and queues it for every remote recipient. When it
// returns nil the message is durable for all of them, so SMTP may say 250.
func (s *Store) Accept(ctx context.Context, in Incoming) (AcceptResult, error) {
	if len(in.Local) == 0 && len(in.Remote) == 0 {
		return AcceptResult{}, errors.New("store: accept: no recipients")
	}
	date := in.Date
	if date.IsZero() {
		date = s.now()
	}
	blob, size, err := s.writeBlob(in.Raw)
	if err != nil {
		return AcceptResult{}, err
	}
	res := AcceptResult{Size: size}
	var boxes []int64
	err = s.write(ctx, func(tx *sql.Tx) error {
		res.Delivered, boxes = nil, nil
		for _, acct := range dedupIDs(in.Local) {
			var mbox int64
			err := tx.QueryRowContext(ctx, `SELECT id FROM mailboxes WHERE account_id = ? AND name = ?`, acct, Inbox).Scan(&mbox)
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("store: account %d INBOX: %w", acct, ErrNoMailbox)
			}
			if err != nil {
				return fmt.Errorf("store: accept: %w", err)
			}
			r, err := s.insertBlob(ctx, tx, mbox, blob, size, date, flagSet{})
			if err != nil {
				return err
			}
			res.Delivered = append(res.Delivered, r)
			boxes = append(boxes, mbox)
		}
		if len(in.Remote) > 0 {
			next := in.NextAttempt
			if next.IsZero() {
				next = s.now()
			}
			res.QueueID, err = s.enqueueTx(ctx, tx, blob, size, in.Sender, in.Remote, next)
			return err
		}
		return nil
	})
	if err != nil {
		s.removeBlob(blob)
		return AcceptResult{}, err
	}
	s.notify(boxes...)
	return res, nil
}

func dedupIDs(ids []int64) []int64 {
	out := slices.Clone(ids)
	slices.Sort(out)
	return slices.Compact(out)
}

// Messages lists a mailbox's messages in UID order.
func (s *Store) Messages(ctx context.Context, mailboxID int64) ([]MessageInfo, error) {
	return s.queryMessages(ctx, `SELECT `+messageCols+` FROM messages WHERE mailbox_id = ? ORDER BY uid`, mailboxID)
}

// Message returns one message's metadata.
func (s *Store) Message(ctx context.Context, mailboxID int64, uid uint32) (MessageInfo, error) {
	m, err := scanMessage(s.r.QueryRowContext(ctx, `SELECT `+messageCols+` FROM messages WHERE mailbox_id = ? AND uid = ?`, mailboxID, int64(uid)))
	if errors.Is(err, sql.ErrNoRows) {
		return MessageInfo{}, fmt.Errorf("store: message %d/%d: %w", mailboxID, uid, ErrNotFound)
	}
	if err != nil {
		return MessageInfo{}, fmt.Errorf("store: message: %w", err)
	}
	return m, nil
}

// Changes returns what happened in a mailbox after modseq since: messages
// added or with changed flags (UID order) and UIDs expunged (tombstones),
// plus the mailbox's HIGHESTMODSEQ at the time of the read. It is
// IndexChanges without the body references; messages with equal flags may
// share one Flags slice.
func (s *Store) Changes(ctx context.Context, mailboxID int64, since uint64) (changed []MessageInfo, vanished []uint32, highest uint64, err error) {
	d, err := s.IndexChanges(ctx, mailboxID, since)
	if err != nil {
		return nil, nil, 0, err
	}
	if len(d.Changed) > 0 {
		changed = make([]MessageInfo, len(d.Changed))
		for i, e := range d.Changed {
			changed[i] = e.MessageInfo
		}
	}
	return changed, d.Vanished, d.HighestModSeq, nil
}

func (s *Store) queryMessages(ctx context.Context, q string, args ...any) ([]MessageInfo, error) {
	return queryAll(ctx, s.r, "messages", scanMessage, q, args...)
}

// OpenMessage opens a message body for reading (IMAP BODY[] with partial
// ranges, POP3 RETR). ErrNotFound if the UID does not exist.
func (s *Store) OpenMessage(ctx context.Context, mailboxID int64, uid uint32) (*Body, error) {
	var blob string
	var size int64
	err := s.r.QueryRowContext(ctx, `SELECT blob, size FROM messages WHERE mailbox_id = ? AND uid = ?`, mailboxID, int64(uid)).Scan(&blob, &size)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("store: message %d/%d: %w", mailboxID, uid, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: open message: %w", err)
	}
	return s.openBody(blob, size)
}

// openBody opens a body file by name. The size is the index's: a body file
// never changes after its row commits, so no fstat is needed. ErrNotFound
// if the file is gone (its last row was deleted after the caller read the
// reference).
func (s *Store) openBody(blob string, size int64) (*Body, error) {
	if !validBlobName(blob) {
		return nil, fmt.Errorf("store: corrupt body reference %q", blob)
	}
	f, err := os.Open(s.blobPath(blob))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("store: body %s: %w", blob, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: open body: %w", err)
	}
	return &Body{SectionReader: io.NewSectionReader(f, 0, size), f: f}, nil
}

// ReadMessage returns a message body in full.
func (s *Store) ReadMessage(ctx context.Context, mailboxID int64, uid uint32) ([]byte, error) {
	b, err := s.OpenMessage(ctx, mailboxID, uid)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	buf := make([]byte, b.Size())
	if _, err := b.ReadAt(buf, 0); err != nil && !(errors.Is(err, io.EOF) && len(buf) == 0) {
		return nil, fmt.Errorf("store: read message: %w", err)
	}
	return buf, nil
}

// msgRow is one message row as the write paths need it.
type msgRow struct {
	uid    uint32
	blob   string
	size   int64
	date   int64
	flags  string
	modseq int64
}

// selectRows returns the existing rows among uids (any order, duplicates
// allowed) in UID order.
func selectRows(ctx context.Context, tx *sql.Tx, mailboxID int64, uids []uint32) ([]msgRow, error) {
	rows, _, err := scanRows(ctx, tx, mailboxID, uids, true)
	return rows, err
}

// scanRows is selectRows with a choice: without the blob column (flag
// changes do not need it), and reporting whether every message in the
// scanned UID range was wanted (then a range stands for the set).
func scanRows(ctx context.Context, tx *sql.Tx, mailboxID int64, uids []uint32, withBlob bool) (out []msgRow, complete bool, err error) {
	if len(uids) == 0 {
		return nil, true, nil
	}
	want := slices.Clone(uids)
	slices.Sort(want)
	want = slices.Compact(want)
	cols := `uid, '', size, internal_date, flags, modseq`
	if withBlob {
		cols = `uid, blob, size, internal_date, flags, modseq`
	}
	// One range scan, filtered here: IMAP sets are mostly ranges, and this
	// keeps the SQL free of huge IN lists.
	rows, err := tx.QueryContext(ctx, `SELECT `+cols+` FROM messages
		WHERE mailbox_id = ? AND uid BETWEEN ? AND ? ORDER BY uid`, mailboxID, int64(want[0]), int64(want[len(want)-1]))
	if err != nil {
		return nil, false, fmt.Errorf("store: select messages: %w", err)
	}
	defer rows.Close()
	complete = true
	for rows.Next() {
		var r msgRow
		var uid int64
		if err := rows.Scan(&uid, &r.blob, &r.size, &r.date, &r.flags, &r.modseq); err != nil {
			return nil, false, fmt.Errorf("store: select messages: %w", err)
		}
		r.uid = uint32(uid)
		if _, ok := slices.BinarySearch(want, r.uid); ok {
			out = append(out, r)
		} else {
			complete = false
		}
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("store: select messages: %w", err)
	}
	return out, complete, nil
}

func uidsIn(ctx context.Context, tx *sql.Tx, mailboxID int64) ([]uint32, error) {
	return queryUIDs(ctx, tx, `SELECT uid FROM messages WHERE mailbox_id = ? ORDER BY uid`, mailboxID)
}

// queryUIDs runs a query whose one column is a UID.
func queryUIDs(ctx context.Context, tx *sql.Tx, q string, args ...any) ([]uint32, error) {
	return queryAll(ctx, tx, "uids", scanUID, q, args...)
}

// StoreFlags changes the flags of the given UIDs and returns the resulting
// metadata of every existing one among them. Messages whose flags actually
// change get one new modseq; unchanged ones keep theirs. It is UpdateFlags
// without the modseq report; messages with equal flags may share one Flags
// slice.
func (s *Store) StoreFlags(ctx context.Context, mailboxID int64, uids []uint32, op FlagOp, flags []string) ([]MessageInfo, error) {
	res, err := s.UpdateFlags(ctx, mailboxID, uids, op, flags)
	if err != nil {
		return nil, err
	}
	return res.Messages, nil
}

// copyTx copies the existing messages among uids into dst with new UIDs,
// sharing their bodies.
func (s *Store) copyTx(ctx context.Context, tx *sql.Tx, src int64, uids []uint32, dst int64) (CopyResult, error) {
	rows, err := selectRows(ctx, tx, src, uids)
	if err != nil {
		return CopyResult{}, err
	}
	var res CopyResult
	if len(rows) == 0 {
		m, err := mailboxByIDTx(ctx, tx, dst)
		if err != nil {
			return CopyResult{}, err
		}
		res.UIDValidity = m.UIDValidity
		return res, nil
	}
	first, uidv, ms, err := allocUIDs(ctx, tx, dst, len(rows))
	if err != nil {
		return CopyResult{}, err
	}
	res.UIDValidity = uidv
	for i, r := range rows {
		uid := first + uint32(i)
		fs := decodeFlags(r.flags)
		if _, err := tx.ExecContext(ctx, `INSERT INTO messages (mailbox_id, uid, blob, size, internal_date, flags, seen, deleted, modseq)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			dst, int64(uid), r.blob, r.size, r.date, r.flags, fs.has(FlagSeen), fs.has(FlagDeleted), int64(ms)); err != nil {
			return CopyResult{}, fmt.Errorf("store: copy: %w", err)
		}
		res.SrcUIDs = append(res.SrcUIDs, r.uid)
		res.DstUIDs = append(res.DstUIDs, uid)
	}
	return res, nil
}

func mailboxByIDTx(ctx context.Context, tx *sql.Tx, id int64) (Mailbox, error) {
	m, err := scanMailbox(tx.QueryRowContext(ctx, `SELECT `+mailboxCols+` FROM mailboxes WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Mailbox{}, fmt.Errorf("store: mailbox %d: %w", id, ErrNoMailbox)
	}
	if err != nil {
		return Mailbox{}, fmt.Errorf("store: mailbox: %w", err)
	}
	return m, nil
}

// deleteTx removes the given (existing) UIDs and leaves tombstones tagged
// with one new modseq.
func (s *Store) deleteTx(ctx context.Context, tx *sql.Tx, mailboxID int64, uids []uint32) error {
	if len(uids) == 0 {
		return nil
	}
	ms, err := bumpModSeq(ctx, tx, mailboxID)
	if err != nil {
		return err
	}
	del, err := tx.PrepareContext(ctx, `DELETE FROM messages WHERE mailbox_id = ? AND uid = ?`)
	if err != nil {
		return fmt.Errorf("store: expunge: %w", err)
	}
	defer del.Close()
	tomb, err := tx.PrepareContext(ctx, `INSERT OR REPLACE INTO tombstones (mailbox_id, uid, modseq) VALUES (?, ?, ?)`)
	if err != nil {
		return fmt.Errorf("store: expunge: %w", err)
	}
	defer tomb.Close()
	for _, u := range uids {
		if _, err := del.ExecContext(ctx, mailboxID, int64(u)); err != nil {
			return fmt.Errorf("store: expunge: %w", err)
		}
		if _, err := tomb.ExecContext(ctx, mailboxID, int64(u), int64(ms)); err != nil {
			return fmt.Errorf("store: expunge: %w", err)
		}
	}
	return nil
}

// Copy copies messages to dst (which may be src) with new UIDs in UID
// order; flags and internal date are kept, bodies are shared.
func (s *Store) Copy(ctx context.Context, src int64, uids []uint32, dst int64) (CopyResult, error) {
	var res CopyResult
	err := s.write(ctx, func(tx *sql.Tx) error {
		var err error
		res, err = s.copyTx(ctx, tx, src, uids, dst)
		return err
	})
	if err != nil {
		return CopyResult{}, err
	}
	if len(res.DstUIDs) > 0 {
		s.notify(dst)
	}
	return res, nil
}

// Move copies messages to dst and expunges them from src in one
// transaction; the result's SrcUIDs are the UIDs expunged from src.
func (s *Store) Move(ctx context.Context, src int64, uids []uint32, dst int64) (CopyResult, error) {
	if src == dst {
		return CopyResult{}, fmt.Errorf("store: move: %w: source and destination are the same mailbox", ErrBadName)
	}
	var res CopyResult
	err := s.write(ctx, func(tx *sql.Tx) error {
		var err error
		if res, err = s.copyTx(ctx, tx, src, uids, dst); err != nil {
			return err
		}
		return s.deleteTx(ctx, tx, src, res.SrcUIDs)
	})
	if err != nil {
		return CopyResult{}, err
	}
	if len(res.DstUIDs) > 0 {
		s.notify(src, dst)
	}
	return res, nil
}

// Expunge removes messages flagged \Deleted: all of them when uids is nil
// (EXPUNGE, CLOSE), else only those among uids (UID EXPUNGE). It returns the
// expunged UIDs in ascending order.
func (s *Store) Expunge(ctx context.Context, mailboxID int64, uids []uint32) ([]uint32, error) {
	return s.expunge(ctx, mailboxID, uids, true)
}

// Remove deletes the given messages whatever their flags (POP3's DELE
// applied at QUIT). UIDs already gone are ignored; the removed ones are
// returned.
func (s *Store) Remove(ctx context.Context, mailboxID int64, uids []uint32) ([]uint32, error) {
	if uids == nil {
		return nil, nil
	}
	return s.expunge(ctx, mailboxID, uids, false)
}

func (s *Store) expunge(ctx context.Context, mailboxID int64, uids []uint32, onlyDeleted bool) ([]uint32, error) {
	var gone []uint32
	err := s.write(ctx, func(tx *sql.Tx) error {
		gone = nil
		if uids == nil {
			// The deleted column mirrors \Deleted, so the whole-mailbox
			// EXPUNGE reads only the UIDs it removes.
			var err error
			if gone, err = queryUIDs(ctx, tx, `SELECT uid FROM messages WHERE mailbox_id = ? AND deleted = 1 ORDER BY uid`, mailboxID); err != nil {
				return err
			}
			return s.deleteTx(ctx, tx, mailboxID, gone)
		}
		cand, _, err := scanRows(ctx, tx, mailboxID, uids, false)
		if err != nil {
			return err
		}
		for _, r := range cand {
			if !onlyDeleted || decodeFlags(r.flags).has(FlagDeleted) {
				gone = append(gone, r.uid)
			}
		}
		return s.deleteTx(ctx, tx, mailboxID, gone)
	})
	if err != nil {
		return nil, err
	}
	if len(gone) > 0 {
		s.notify(mailboxID)
	}
	return gone, nil
}
