// Package store is the only owner of mailconf's mail data: accounts,
// mailboxes, messages, expunge tombstones and the outbound queue. SMTP, IMAP,
// POP3 and the relay queue all go through its API.
//
// Layout under the data directory:
//
//	mailconf.db        SQLite index (WAL, synchronous=FULL)
//	msgs/xx/<name>     one file per message body, byte-exact as received
//
// Message bodies live in files rather than SQLite blobs so that IMAP can
// serve partial fetches of a 25 MiB message with ReadAt instead of loading it
// whole, and so that COPY shares one body between several rows. The write
// order is the one of RFC 5321 §6.1 durability: the body file is written and
// fsynced, its directory is fsynced, then the index transaction commits (WAL
// with synchronous=FULL fsyncs at commit), and only then does a method
// return success. A crash before the commit leaves an orphan file, which
// Sweep removes; never the reverse.
package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver (pure Go, no cgo)
)

// Errors callers test with errors.Is.
var (
	ErrNotFound      = errors.New("not found")
	ErrExists        = errors.New("already exists")
	ErrNoMailbox     = errors.New("no such mailbox")
	ErrNoAccount     = errors.New("no such account")
	ErrTooBig        = errors.New("message exceeds the size limit")
	ErrBadName       = errors.New("invalid mailbox name")
	ErrHasChildren   = errors.New("mailbox has children")
	ErrInboxReserved = errors.New("INBOX cannot be deleted or replaced")
)

// DBName is the index file inside the data directory.
const DBName = "mailconf.db"

// orphanAge is how old a body file without an index row must be before Open
// deletes it. Another process (the CLI next to a running server) may open
// the same store while the server has written a body but not yet committed
// its row; such a file is seconds old, never this old.
const orphanAge = 10 * time.Minute

// Options tune a Store.
type Options struct {
	// MessageSize is the largest message body accepted, in bytes (0: 25 MiB).
	MessageSize int64
	// Logger receives maintenance messages; nil discards them.
	Logger *slog.Logger
	// Now returns the current time; nil means time.Now. Tests inject a clock.
	Now func() time.Time
}

// Store is an open mail store. It is safe for concurrent use by many
// goroutines. Writes are serialized through one connection (SQLite has a
// single writer; BEGIN IMMEDIATE also serializes against other processes),
// reads run concurrently under WAL.
type Store struct {
	dir     string
	msgDir  string
	msgFD   msgDirFD // msgDir, for ReadEntry
	w       *sql.DB  // one connection, BEGIN IMMEDIATE
	r       *sql.DB  // read pool, query_only
	maxSize int64
	log     *slog.Logger
	now     func() time.Time

	mu       sync.Mutex
	watchers map[int64]map[*watcher]struct{}
}

type watcher struct{ ch chan struct{} }

// Open opens (creating if needed) the store in dir and applies pending
// schema migrations.
func Open(ctx context.Context, dir string, opts Options) (*Store, error) {
	if opts.MessageSize <= 0 {
		opts.MessageSize = 25 << 20
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("store: data dir %q: %w", dir, err)
	}
	s := &Store{
		dir:      abs,
		msgDir:   filepath.Join(abs, "msgs"),
		maxSize:  opts.MessageSize,
		log:      opts.Logger,
		now:      opts.Now,
		watchers: map[int64]map[*watcher]struct{}{},
	}
	if err := s.makeDirs(); err != nil {
		return nil, err
	}
	if s.msgFD, err = openMsgDir(s.msgDir); err != nil {
		return nil, err
	}
	opened := false
	defer func() {
		if !opened {
			s.msgFD.close()
		}
	}()
	dbPath := filepath.Join(abs, DBName)
	base := "file:" + (&url.URL{Path: dbPath}).EscapedPath() +
		"?_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)"
	s.w, err = sql.Open("sqlite", base+"&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", dbPath, err)
	}
	s.w.SetMaxOpenConns(1)
	s.w.SetConnMaxIdleTime(0)
	if err := s.migrate(ctx); err != nil {
		s.w.Close()
		return nil, err
	}
	s.r, err = sql.Open("sqlite", base+"&_pragma=query_only(1)")
	if err != nil {
		s.w.Close()
		return nil, fmt.Errorf("store: open %s: %w", dbPath, err)
	}
	s.r.SetMaxOpenConns(8)
	opened = true // from here on Close releases everything
	if err := s.collectGarbage(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close releases the database handles. Watch channels are not closed; their
// owners cancel them.
func (s *Store) Close() error {
	errs := []error{s.msgFD.close()}
	if s.r != nil {
		errs = append(errs, s.r.Close())
	}
	if s.w != nil {
		errs = append(errs, s.w.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// MessageSizeLimit is the largest body Append, Deliver and Enqueue accept.
func (s *Store) MessageSizeLimit() int64 { return s.maxSize }

func (s *Store) makeDirs() error {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("store: create data dir: %w", err)
	}
	// All 256 fan-out directories exist up front, so writing a body never
	// creates a directory whose entry would need its own parent fsync.
	if _, err := os.Stat(filepath.Join(s.msgDir, "ff")); err == nil {
		return nil
	}
	if err := os.MkdirAll(s.msgDir, 0o700); err != nil {
		return fmt.Errorf("store: create message dir: %w", err)
	}
	for i := 0; i < 256; i++ {
		if err := os.MkdirAll(filepath.Join(s.msgDir, fmt.Sprintf("%02x", i)), 0o700); err != nil {
			return fmt.Errorf("store: create message dir: %w", err)
		}
	}
	if err := syncDir(s.msgDir); err != nil {
		return err
	}
	return syncDir(s.dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("store: sync dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("store: sync dir %s: %w", dir, err)
	}
	return nil
}

func (s *Store) blobPath(name string) string {
	return filepath.Join(s.msgDir, name[:2], name)
}

// writeBlob streams r into a new body file, enforcing the size limit, and
// makes it durable (file and directory fsync). It returns the blob name and
// size.
func (s *Store) writeBlob(r io.Reader) (string, int64, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", 0, fmt.Errorf("store: blob name: %w", err)
	}
	name := hex.EncodeToString(b[:])
	path := s.blobPath(name)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", 0, fmt.Errorf("store: create body: %w", err)
	}
	fail := func(err error) (string, int64, error) {
		f.Close()
		os.Remove(path)
		return "", 0, err
	}
	n, err := io.Copy(f, io.LimitReader(r, s.maxSize+1))
	if err != nil {
		return fail(fmt.Errorf("store: write body: %w", err))
	}
	if n > s.maxSize {
		return fail(fmt.Errorf("store: %w (%d bytes)", ErrTooBig, s.maxSize))
	}
	if err := f.Sync(); err != nil {
		return fail(fmt.Errorf("store: sync body: %w", err))
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return "", 0, fmt.Errorf("store: close body: %w", err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		os.Remove(path)
		return "", 0, err
	}
	return name, n, nil
}

// removeBlob deletes a body file that no committed row references.
func (s *Store) removeBlob(name string) {
	if err := os.Remove(s.blobPath(name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("store: remove body", "blob", name, "err", err)
	}
}

// collectGarbage deletes body files whose last reference went away. The
// delete triggers record them in blob_garbage inside the deleting
// transaction, so a crash between commit and unlink is finished here later.
// The rows go in one statement after the unlinks: one commit (and fsync)
// per batch, not per body, and a crash in between only repeats an unlink.
func (s *Store) collectGarbage(ctx context.Context) error {
	names, err := queryAll(ctx, s.w, "garbage", scanString, `SELECT name FROM blob_garbage`)
	if err != nil {
		return err
	}
	if len(names) == 0 {
		return nil
	}
	for _, n := range names {
		// A name that is no body file (a damaged row) names nothing to
		// unlink; its row goes all the same, or every later write would
		// find garbage and come here again.
		if validBlobName(n) {
			s.removeBlob(n)
		}
	}
	list, err := json.Marshal(names)
	if err != nil {
		return fmt.Errorf("store: garbage: %w", err)
	}
	if _, err := s.w.ExecContext(ctx, `DELETE FROM blob_garbage WHERE name IN (SELECT value FROM json_each(?))`, string(list)); err != nil {
		return fmt.Errorf("store: garbage: %w", err)
	}
	return nil
}

func validBlobName(n string) bool {
	if len(n) != 32 {
		return false
	}
	_, err := hex.DecodeString(n)
	return err == nil && strings.ToLower(n) == n
}

// Sweep removes body files older than ten minutes that no row references:
// bodies whose transaction never committed because the process died
// between the fsync and the commit. It reads the whole message directory,
// so the server runs it once at start (in the background), not every CLI
// command.
func (s *Store) Sweep(ctx context.Context) (removed int, err error) {
	// File times are the real clock's, whatever Options.Now says.
	cutoff := time.Now().Add(-orphanAge)
	for i := 0; i < 256; i++ {
		prefix := fmt.Sprintf("%02x", i)
		ents, err := os.ReadDir(filepath.Join(s.msgDir, prefix))
		if err != nil {
			return removed, fmt.Errorf("store: sweep: %w", err)
		}
		var old []string
		for _, e := range ents {
			if !validBlobName(e.Name()) {
				continue
			}
			if info, err := e.Info(); err == nil && !info.ModTime().After(cutoff) {
				old = append(old, e.Name())
			}
		}
		if len(old) == 0 {
			continue
		}
		// One index range per directory rather than one lookup per file:
		// in a store of old mail nearly every file is a candidate. Read
		// after the directory, so a row committed meanwhile is seen.
		refs, err := queryAll(ctx, s.r, "sweep", scanString, `SELECT blob FROM messages WHERE blob >= ?1 AND blob < ?2
			UNION SELECT blob FROM queue WHERE blob >= ?1 AND blob < ?2`, prefix, prefix+"~")
		if err != nil {
			return removed, err
		}
		live := make(map[string]bool, len(refs))
		for _, r := range refs {
			live[r] = true
		}
		for _, name := range old {
			if !live[name] {
				s.log.Info("store: removing uncommitted body", "blob", name)
				s.removeBlob(name)
				removed++
			}
		}
	}
	return removed, nil
}

// write runs fn in one write transaction (BEGIN IMMEDIATE) and, after a
// successful commit, unlinks bodies that lost their last reference.
func (s *Store) write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: begin: %w", err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	var garbage bool
	if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM blob_garbage)`).Scan(&garbage); err != nil {
		tx.Rollback()
		return fmt.Errorf("store: garbage check: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	if garbage {
		// The commit already stands; failing to unlink only leaves files
		// for the next Open.
		if err := s.collectGarbage(context.WithoutCancel(ctx)); err != nil {
			s.log.Warn("store: collect garbage", "err", err)
		}
	}
	return nil
}

// Watch returns a channel that receives a value (coalesced, never blocking
// the writer) after every committed change to the mailbox: new messages,
// flag changes, expunges, deletion or rename. cancel stops the watch and
// must be called. Changes made by another process (the CLI) are not
// signalled.
func (s *Store) Watch(mailboxID int64) (ch <-chan struct{}, cancel func()) {
	w := &watcher{ch: make(chan struct{}, 1)}
	s.mu.Lock()
	m := s.watchers[mailboxID]
	if m == nil {
		m = map[*watcher]struct{}{}
		s.watchers[mailboxID] = m
	}
	m[w] = struct{}{}
	s.mu.Unlock()
	var once sync.Once
	return w.ch, func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if m := s.watchers[mailboxID]; m != nil {
				delete(m, w)
				if len(m) == 0 {
					delete(s.watchers, mailboxID)
				}
			}
		})
	}
}

func (s *Store) notify(ids ...int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		for w := range s.watchers[id] {
			select {
			case w.ch <- struct{}{}:
			default:
			}
		}
	}
}
