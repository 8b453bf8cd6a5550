package store

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
)

func TestIndexChangesAndOpenEntry(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir())
	a := newAccount(t, s, "index@example.com")
	in := mbox(t, s, a.ID, Inbox)
	other, err := s.CreateMailbox(ctx, a.ID, "Other", "")
	if err != nil {
		t.Fatal(err)
	}
	bodies := []string{"Subject: one\r\n\r\nfirst\r\n", "Subject: two\r\n\r\nsecond body\r\n", "Subject: three\r\n\r\n3\r\n"}
	for i, b := range bodies {
		opts := AppendOptions{}
		if i == 1 {
			opts.Flags = []string{`\seen`, "$Label"}
		}
		if _, err := s.Append(ctx, in.ID, strings.NewReader(b), opts); err != nil {
			t.Fatal(err)
		}
	}
	d, err := s.IndexChanges(ctx, in.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.Status(ctx, in.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Changed) != 3 || len(d.Vanished) != 0 || d.UIDValidity != st.UIDValidity || d.UIDNext != 4 || d.HighestModSeq != st.HighestModSeq {
		t.Fatalf("IndexChanges(0) = %+v, status %+v", d, st)
	}
	msgs, err := s.Messages(ctx, in.ID)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range d.Changed {
		m := msgs[i]
		if e.UID != m.UID || !slices.Equal(e.Flags, m.Flags) || e.Size != m.Size || !e.InternalDate.Equal(m.InternalDate) || e.ModSeq != m.ModSeq {
			t.Errorf("entry %d = %+v, Messages says %+v", i, e.MessageInfo, m)
		}
		b, err := s.OpenEntry(e)
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, b.Size())
		b.ReadAt(got, 0)
		b.Close()
		if string(got) != bodies[i] {
			t.Errorf("OpenEntry(%d) = %q", e.UID, got)
		}
	}
	if d.Changed[0].BodyKey() == d.Changed[1].BodyKey() {
		t.Fatal("two bodies share a key")
	}
	// A copy shares the body, hence the key.
	if _, err := s.Copy(ctx, in.ID, []uint32{1}, other.ID); err != nil {
		t.Fatal(err)
	}
	od, err := s.IndexChanges(ctx, other.ID, 0)
	if err != nil || len(od.Changed) != 1 || od.Changed[0].BodyKey() != d.Changed[0].BodyKey() {
		t.Fatalf("copy: %+v %v", od, err)
	}

	// Only what changed after a modseq, and the expunged UIDs.
	since := d.HighestModSeq
	if _, err := s.StoreFlags(ctx, in.ID, []uint32{3}, FlagsAdd, []string{FlagDeleted}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Expunge(ctx, in.ID, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.StoreFlags(ctx, in.ID, []uint32{1}, FlagsAdd, []string{FlagFlagged}); err != nil {
		t.Fatal(err)
	}
	d2, err := s.IndexChanges(ctx, in.ID, since)
	if err != nil {
		t.Fatal(err)
	}
	if len(d2.Changed) != 1 || d2.Changed[0].UID != 1 || !slices.Equal(d2.Changed[0].Flags, []string{FlagFlagged}) || !slices.Equal(d2.Vanished, []uint32{3}) {
		t.Fatalf("IndexChanges(since) = %+v", d2)
	}
	// The expunged message's body is gone: ErrNotFound, not a stale read.
	if _, err := s.OpenEntry(d.Changed[2]); !errors.Is(err, ErrNotFound) {
		t.Fatalf("OpenEntry of expunged message: %v", err)
	}
	// Its copy keeps a shared body readable.
	if _, err := s.OpenEntry(d.Changed[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.OpenEntry(IndexEntry{}); err == nil {
		t.Fatal("OpenEntry of a zero entry succeeded")
	}
	if err := s.DeleteMailbox(ctx, a.ID, "Other"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.IndexChanges(ctx, other.ID, 0); !errors.Is(err, ErrNoMailbox) {
		t.Fatalf("deleted mailbox: %v", err)
	}
}

func TestUpdateFlags(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir())
	a := newAccount(t, s, "flags@example.com")
	in := mbox(t, s, a.ID, Inbox)
	for i := 0; i < 4; i++ {
		if _, err := s.Append(ctx, in.ID, strings.NewReader("Subject: x\r\n\r\nbody\r\n"), AppendOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	st, _ := s.Status(ctx, in.ID)
	ch, cancel := s.Watch(in.ID)
	defer cancel()

	res, err := s.UpdateFlags(ctx, in.ID, []uint32{2, 3, 9}, FlagsAdd, []string{`\FLAGGED`, "$x"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Before != st.HighestModSeq || res.After != res.Before+1 || len(res.Messages) != 2 {
		t.Fatalf("UpdateFlags = %+v (highest before %d)", res, st.HighestModSeq)
	}
	for _, m := range res.Messages {
		if !slices.Equal(m.Flags, []string{"$x", FlagFlagged}) || m.ModSeq != res.After {
			t.Errorf("message %+v", m)
		}
	}
	select {
	case <-ch:
	default:
		t.Fatal("no change notification")
	}
	// The stored state is what StoreFlags and the change log see.
	msgs, _ := s.MessagesBetween(ctx, in.ID, 2, 2)
	if !slices.Equal(msgs[0].Flags, []string{"$x", FlagFlagged}) {
		t.Fatalf("stored flags %v", msgs[0].Flags)
	}
	if u, _ := s.FirstUnseen(ctx, in.ID); u != 1 {
		t.Fatalf("first unseen %d", u)
	}
	// Nothing changes: no new modseq, no notification, Before == After.
	res2, err := s.UpdateFlags(ctx, in.ID, []uint32{2, 3}, FlagsAdd, []string{FlagFlagged})
	if err != nil || res2.Before != res.After || res2.After != res2.Before || len(res2.Messages) != 2 || res2.Messages[0].ModSeq != res.After {
		t.Fatalf("no-op UpdateFlags = %+v %v", res2, err)
	}
	select {
	case <-ch:
		t.Fatal("notification without a change")
	default:
	}
	// Another writer in between shows as Before beyond the caller's view.
	if _, err := s.StoreFlags(ctx, in.ID, []uint32{1}, FlagsAdd, []string{FlagSeen}); err != nil {
		t.Fatal(err)
	}
	res3, err := s.UpdateFlags(ctx, in.ID, []uint32{1, 2, 3, 4}, FlagsSet, []string{FlagSeen})
	if err != nil || res3.Before != res.After+1 || res3.After != res3.Before+1 {
		t.Fatalf("UpdateFlags after another writer = %+v %v", res3, err)
	}
	// Message 1 already had exactly \Seen: its modseq stays.
	if res3.Messages[0].ModSeq == res3.After || res3.Messages[1].ModSeq != res3.After {
		t.Fatalf("modseqs %+v", res3.Messages)
	}
	if u, _ := s.FirstUnseen(ctx, in.ID); u != 0 {
		t.Fatalf("first unseen after set %d", u)
	}
	if _, err := s.UpdateFlags(ctx, in.ID, []uint32{1}, FlagsAdd, []string{`\Bogus`}); !errors.Is(err, ErrBadFlag) {
		t.Fatalf("bad flag: %v", err)
	}
	if _, err := s.UpdateFlags(ctx, 999999, []uint32{1}, FlagsAdd, []string{FlagSeen}); !errors.Is(err, ErrNoMailbox) {
		t.Fatalf("no mailbox: %v", err)
	}
}

// TestReadEntry: ReadEntry returns what OpenEntry reads, reuses a buffer
// that is large enough, and refuses a body file that has lost bytes, a
// missing file (ErrNotFound) and a corrupt reference.
func TestReadEntry(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir())
	a := newAccount(t, s, "read@example.com")
	in := mbox(t, s, a.ID, Inbox)
	bodies := []string{"Subject: a\r\n\r\nshort\r\n", "Subject: b\r\n\r\n" + strings.Repeat("longer body line\r\n", 500)}
	for _, b := range bodies {
		if _, err := s.Append(ctx, in.ID, strings.NewReader(b), AppendOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	d, err := s.IndexChanges(ctx, in.ID, 0)
	if err != nil || len(d.Changed) != 2 {
		t.Fatalf("IndexChanges: %+v %v", d, err)
	}
	buf := make([]byte, 0, 64)
	for i, e := range d.Changed {
		got, err := s.ReadEntry(e, buf)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != bodies[i] {
			t.Errorf("ReadEntry(%d) = %q", e.UID, got)
		}
		if i == 0 && &got[0] != &buf[:1][0] {
			t.Error("a buffer large enough was not reused")
		}
	}
	// A body file shorter than the index says is an error, not a short
	// message served as if whole.
	short := d.Changed[1]
	if err := os.Truncate(s.blobPath(short.blob), 10); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReadEntry(short, nil); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("truncated body: %v", err)
	}
	if err := os.Remove(s.blobPath(short.blob)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReadEntry(short, nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing body: %v, want ErrNotFound", err)
	}
	bad := d.Changed[0]
	bad.blob = "../../etc/passwd"
	if _, err := s.ReadEntry(bad, nil); err == nil {
		t.Error("a corrupt body reference was read")
	}
}

// TestUpdateFlagsRanges: a group of changed messages is written by a UID
// range only when it is every message of that range; a set with gaps, a
// message whose flags do not change in the middle, and messages outside
// the set keep exactly their flags.
func TestUpdateFlagsRanges(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir())
	a := newAccount(t, s, "ranges@example.com")
	in := mbox(t, s, a.ID, Inbox)
	for i := 0; i < 8; i++ {
		if _, err := s.Append(ctx, in.ID, strings.NewReader("Subject: x\r\n\r\nbody\r\n"), AppendOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	flagged := func() []uint32 {
		t.Helper()
		msgs, err := s.MessagesBetween(ctx, in.ID, 1, 8)
		if err != nil {
			t.Fatal(err)
		}
		var out []uint32
		for _, m := range msgs {
			if slices.Contains(m.Flags, FlagFlagged) {
				out = append(out, m.UID)
			}
		}
		return out
	}
	steps := []struct {
		uids []uint32
		op   FlagOp
		want []uint32
	}{
		{[]uint32{2, 4, 6}, FlagsAdd, []uint32{2, 4, 6}},                         // gaps: a list
		{[]uint32{1, 2, 3, 4, 5, 6, 7}, FlagsAdd, []uint32{1, 2, 3, 4, 5, 6, 7}}, // 2, 4, 6 unchanged amid the change
		{[]uint32{3, 4, 5}, FlagsRemove, []uint32{1, 2, 6, 7}},                   // a whole range
		{[]uint32{1, 2, 3, 4, 5, 6, 7, 8}, FlagsRemove, nil},                     // changes at both ends only
		{[]uint32{8, 7, 6, 6}, FlagsAdd, []uint32{6, 7, 8}},                      // unsorted, repeated
	}
	for i, st := range steps {
		if _, err := s.UpdateFlags(ctx, in.ID, st.uids, st.op, []string{FlagFlagged}); err != nil {
			t.Fatal(err)
		}
		if got := flagged(); !slices.Equal(got, st.want) {
			t.Fatalf("step %d: flagged %v, want %v", i, got, st.want)
		}
	}
}

// TestCloseTwiceAndReadAfterClose: a second Close, and a ReadEntry after
// Close, touch nothing the process has opened since (the message
// directory's descriptor number may belong to another file by then).
func TestCloseTwiceAndReadAfterClose(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	a := newAccount(t, s, "close@example.com")
	in := mbox(t, s, a.ID, Inbox)
	if _, err := s.Append(ctx, in.ID, strings.NewReader("Subject: c\r\n\r\nbody\r\n"), AppendOptions{}); err != nil {
		t.Fatal(err)
	}
	d, err := s.IndexChanges(ctx, in.ID, 0)
	if err != nil || len(d.Changed) != 1 {
		t.Fatalf("IndexChanges: %+v %v", d, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Likely to be given the descriptor number the store just released.
	other, err := os.CreateTemp(t.TempDir(), "other")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := s.ReadEntry(d.Changed[0], nil); err == nil {
		t.Error("ReadEntry after Close succeeded")
	}
	if _, err := other.WriteString("still mine"); err != nil {
		t.Fatalf("a file opened after Close was closed by the second Close: %v", err)
	}
}
