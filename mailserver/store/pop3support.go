package store

import (
	"context"
	"fmt"
)

// This file holds what the POP3 server needs beyond the general API: a
// maildrop snapshot that remembers where each body is, so that RETR opens
// the body file directly instead of asking the index again.

// MessageRef names one message of a snapshot and its body file. Bodies are
// written once and never change, so a ref stays valid for as long as the
// file exists; it is deleted only after the last row sharing it is gone.
type MessageRef struct {
	UID  uint32
	Size int64 // body size in bytes, as stored
	blob string
}

// MessageRefs lists a mailbox's messages in UID order with their body
// references (POP3's snapshot at login).
func (s *Store) MessageRefs(ctx context.Context, mailboxID int64) ([]MessageRef, error) {
	return queryAll(ctx, s.r, "message refs", scanRef, `SELECT uid, size, blob FROM messages WHERE mailbox_id = ? ORDER BY uid`, mailboxID)
}

func scanRef(row rowScanner) (MessageRef, error) {
	var uid int64
	var r MessageRef
	if err := row.Scan(&uid, &r.Size, &r.blob); err != nil {
		return MessageRef{}, err
	}
	if !validBlobName(r.blob) {
		return MessageRef{}, fmt.Errorf("corrupt body reference %q", r.blob)
	}
	r.UID = uint32(uid)
	return r, nil
}

// OpenRef opens the body a ref names without consulting the index.
// ErrNotFound if the body file is gone (the message was expunged and no
// other row shares its body). A body still shared by a copy in another
// mailbox stays readable after its expunge from the ref's mailbox: a
// caller that must not serve such messages watches the mailbox (Watch,
// Changes) and drops expunged refs.
func (s *Store) OpenRef(ref MessageRef) (*Body, error) {
	return s.openBody(ref.blob, ref.Size)
}
