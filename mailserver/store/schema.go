package store

import (
	"context"
	"database/sql"
	"fmt"
)

// migrations are applied in order; migration i brings the schema to version
// i+1. Released migrations are never edited, only appended to.
var migrations = []string{
	// 1: the initial schema.
	`
CREATE TABLE meta (
	key   TEXT PRIMARY KEY,
	value INTEGER NOT NULL
);
-- last_uidvalidity: UIDVALIDITY is allocated from one store-wide counter
-- that starts at the creation time, so no mailbox name ever sees a value
-- twice, even across account deletion and re-creation.
INSERT INTO meta (key, value) VALUES ('last_uidvalidity', CAST(strftime('%s','now') AS INTEGER) % 4294967295);

CREATE TABLE accounts (
	id            INTEGER PRIMARY KEY,
	address       TEXT NOT NULL UNIQUE,
	localpart     TEXT NOT NULL,
	domain        TEXT NOT NULL,
	password_hash TEXT NOT NULL,
	created       INTEGER NOT NULL
);
CREATE INDEX accounts_localpart ON accounts (localpart);

CREATE TABLE mailboxes (
	id             INTEGER PRIMARY KEY,
	account_id     INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
	name           TEXT NOT NULL,
	uidvalidity    INTEGER NOT NULL,
	uidnext        INTEGER NOT NULL DEFAULT 1,
	highest_modseq INTEGER NOT NULL DEFAULT 1,
	subscribed     INTEGER NOT NULL DEFAULT 0,
	special_use    TEXT NOT NULL DEFAULT '',
	created        INTEGER NOT NULL,
	UNIQUE (account_id, name)
);

CREATE TABLE messages (
	id            INTEGER PRIMARY KEY,
	mailbox_id    INTEGER NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
	uid           INTEGER NOT NULL,
	blob          TEXT NOT NULL,
	size          INTEGER NOT NULL,
	internal_date INTEGER NOT NULL,
	flags         TEXT NOT NULL DEFAULT '',
	seen          INTEGER NOT NULL DEFAULT 0,
	deleted       INTEGER NOT NULL DEFAULT 0,
	modseq        INTEGER NOT NULL,
	UNIQUE (mailbox_id, uid)
);
CREATE INDEX messages_blob ON messages (blob);
CREATE INDEX messages_modseq ON messages (mailbox_id, modseq);

CREATE TABLE tombstones (
	mailbox_id INTEGER NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
	uid        INTEGER NOT NULL,
	modseq     INTEGER NOT NULL,
	PRIMARY KEY (mailbox_id, uid)
);

CREATE TABLE queue (
	id           INTEGER PRIMARY KEY,
	blob         TEXT NOT NULL,
	size         INTEGER NOT NULL,
	sender       TEXT NOT NULL,
	created      INTEGER NOT NULL,
	next_attempt INTEGER NOT NULL,
	attempts     INTEGER NOT NULL DEFAULT 0,
	last_error   TEXT NOT NULL DEFAULT ''
);
CREATE INDEX queue_blob ON queue (blob);
CREATE INDEX queue_next ON queue (next_attempt);

CREATE TABLE queue_rcpts (
	queue_id   INTEGER NOT NULL REFERENCES queue (id) ON DELETE CASCADE,
	rcpt       TEXT NOT NULL,
	status     TEXT NOT NULL DEFAULT 'pending',
	last_error TEXT NOT NULL DEFAULT '',
	updated    INTEGER NOT NULL,
	PRIMARY KEY (queue_id, rcpt)
);

-- Bodies whose last reference is gone; the store unlinks them after commit.
CREATE TABLE blob_garbage (name TEXT PRIMARY KEY);

CREATE TRIGGER messages_blob_gc AFTER DELETE ON messages
WHEN NOT EXISTS (SELECT 1 FROM messages WHERE blob = old.blob)
 AND NOT EXISTS (SELECT 1 FROM queue WHERE blob = old.blob)
BEGIN
	INSERT OR IGNORE INTO blob_garbage (name) VALUES (old.blob);
END;

CREATE TRIGGER queue_blob_gc AFTER DELETE ON queue
WHEN NOT EXISTS (SELECT 1 FROM messages WHERE blob = old.blob)
 AND NOT EXISTS (SELECT 1 FROM queue WHERE blob = old.blob)
BEGIN
	INSERT OR IGNORE INTO blob_garbage (name) VALUES (old.blob);
END;
`,
}

// SchemaVersion is the version Open migrates to.
func SchemaVersion() int { return len(migrations) }

func (s *Store) migrate(ctx context.Context) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
			return fmt.Errorf("store: migrate: %w", err)
		}
		var v int
		err := tx.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v)
		switch {
		case err == sql.ErrNoRows:
			if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version) VALUES (0)`); err != nil {
				return fmt.Errorf("store: migrate: %w", err)
			}
		case err != nil:
			return fmt.Errorf("store: migrate: %w", err)
		}
		if v > len(migrations) {
			return fmt.Errorf("store: database schema version %d is newer than this program (%d); use a newer mailconf", v, len(migrations))
		}
		if v == len(migrations) {
			// Up to date: no write, so opening the store (every CLI
			// command) costs no commit and no fsync.
			return nil
		}
		for i := v; i < len(migrations); i++ {
			if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
				return fmt.Errorf("store: migration %d: %w", i+1, err)
			}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE schema_version SET version = ?`, len(migrations)); err != nil {
			return fmt.Errorf("store: migrate: %w", err)
		}
		return nil
	})
}
