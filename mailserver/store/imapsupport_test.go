package store

import (
	"context"
	"strings"
	"testing"
)

func TestFirstUnseenAndMessagesBetween(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir())
	a := newAccount(t, s, "imap@example.com")
	in := mbox(t, s, a.ID, Inbox)
	if u, err := s.FirstUnseen(ctx, in.ID); err != nil || u != 0 {
		t.Fatalf("empty mailbox: %d %v", u, err)
	}
	for i := 0; i < 5; i++ {
		opts := AppendOptions{}
		if i < 2 {
			opts.Flags = []string{FlagSeen}
		}
		if _, err := s.Append(ctx, in.ID, strings.NewReader("Subject: x\r\n\r\nbody\r\n"), opts); err != nil {
			t.Fatal(err)
		}
	}
	if u, err := s.FirstUnseen(ctx, in.ID); err != nil || u != 3 {
		t.Fatalf("first unseen: %d %v", u, err)
	}
	if _, err := s.StoreFlags(ctx, in.ID, []uint32{3, 4, 5}, FlagsAdd, []string{FlagSeen}); err != nil {
		t.Fatal(err)
	}
	if u, err := s.FirstUnseen(ctx, in.ID); err != nil || u != 0 {
		t.Fatalf("all seen: %d %v", u, err)
	}
	got, err := s.MessagesBetween(ctx, in.ID, 2, 4)
	if err != nil || len(got) != 3 || got[0].UID != 2 || got[2].UID != 4 {
		t.Fatalf("MessagesBetween(2,4): %+v %v", got, err)
	}
	if got, err := s.MessagesBetween(ctx, in.ID, 6, 9); err != nil || len(got) != 0 {
		t.Fatalf("MessagesBetween past the end: %+v %v", got, err)
	}
}
