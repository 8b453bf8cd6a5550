package store

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestMessageRefsAndOpenRef(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir())
	a := newAccount(t, s, "pop@example.com")
	in := mbox(t, s, a.ID, Inbox)
	other := mbox(t, s, a.ID, "Trash")
	if refs, err := s.MessageRefs(ctx, in.ID); err != nil || len(refs) != 0 {
		t.Fatalf("empty mailbox: %v %v", refs, err)
	}
	bodies := []string{"Subject: 1\r\n\r\none\r\n", "Subject: 2\r\n\r\ntwo, longer\r\n", "Subject: 3\r\n\r\n"}
	var uids []uint32
	for _, b := range bodies {
		r, err := s.Append(ctx, in.ID, strings.NewReader(b), AppendOptions{})
		if err != nil {
			t.Fatal(err)
		}
		uids = append(uids, r.UID)
	}
	// Message 1 is shared with Trash, message 2 is not.
	if _, err := s.Copy(ctx, in.ID, uids[:1], other.ID); err != nil {
		t.Fatal(err)
	}
	refs, err := s.MessageRefs(ctx, in.ID)
	if err != nil || len(refs) != len(bodies) {
		t.Fatalf("MessageRefs: %d refs, %v", len(refs), err)
	}
	for i, r := range refs {
		if r.UID != uids[i] || r.Size != int64(len(bodies[i])) {
			t.Errorf("ref %d: uid %d size %d, want %d %d", i, r.UID, r.Size, uids[i], len(bodies[i]))
		}
		b, err := s.OpenRef(r)
		if err != nil {
			t.Fatalf("OpenRef %d: %v", r.UID, err)
		}
		got, err := io.ReadAll(b)
		b.Close()
		if err != nil || string(got) != bodies[i] {
			t.Errorf("OpenRef %d read %q, %v; want %q", r.UID, got, err, bodies[i])
		}
		// Same bytes as the index lookup.
		want, err := s.ReadMessage(ctx, in.ID, r.UID)
		if err != nil || !bytes.Equal(want, got) {
			t.Errorf("OpenRef %d differs from ReadMessage: %q vs %q (%v)", r.UID, got, want, err)
		}
	}
	if _, err := s.Remove(ctx, in.ID, uids[:2]); err != nil {
		t.Fatal(err)
	}
	// The unshared body is gone with its only row.
	if _, err := s.OpenRef(refs[1]); !errors.Is(err, ErrNotFound) {
		t.Errorf("OpenRef of an expunged unshared body: %v, want ErrNotFound", err)
	}
	// The shared body stays (the copy in Trash still uses it); callers
	// learn about the expunge from Changes.
	b, err := s.OpenRef(refs[0])
	if err != nil {
		t.Fatalf("OpenRef of a shared body after expunge: %v", err)
	}
	b.Close()
	_, vanished, _, err := s.Changes(ctx, in.ID, in.HighestModSeq)
	if err != nil || len(vanished) != 2 {
		t.Errorf("Changes after Remove: vanished %v, %v", vanished, err)
	}
	if _, err := s.OpenRef(MessageRef{UID: 1}); err == nil {
		t.Error("OpenRef of the zero ref succeeded")
	}
	refs, err = s.MessageRefs(ctx, in.ID)
	if err != nil || len(refs) != 1 || refs[0].UID != uids[2] {
		t.Errorf("MessageRefs after Remove: %+v %v", refs, err)
	}
}
