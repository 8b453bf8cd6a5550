package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

func openTest(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(context.Background(), dir, Options{MessageSize: 64 << 10})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

var defaultBoxes = []MailboxSpec{{Inbox, ""}, {"Sent", SpecialSent}, {"Drafts", SpecialDrafts}, {"Trash", SpecialTrash}}

func newAccount(t *testing.T, s *Store, addr string) Account {
	t.Helper()
	a, err := s.CreateAccount(context.Background(), addr, "$argon2id$dummy", defaultBoxes)
	if err != nil {
		t.Fatalf("CreateAccount: %v", err)
	}
	return a
}

func mbox(t *testing.T, s *Store, acct int64, name string) Mailbox {
	t.Helper()
	m, err := s.Mailbox(context.Background(), acct, name)
	if err != nil {
		t.Fatalf("Mailbox %q: %v", name, err)
	}
	return m
}

func appendMsg(t *testing.T, s *Store, box int64, body string, flags ...string) AppendResult {
	t.Helper()
	r, err := s.Append(context.Background(), box, strings.NewReader(body), AppendOptions{Flags: flags})
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	return r
}

func uidsOf(t *testing.T, s *Store, box int64) []uint32 {
	t.Helper()
	ms, err := s.Messages(context.Background(), box)
	if err != nil {
		t.Fatal(err)
	}
	var out []uint32
	for _, m := range ms {
		out = append(out, m.UID)
	}
	return out
}

func TestMigrationsIdempotentAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s := openTest(t, dir)
	a := newAccount(t, s, "Alice@Example.com")
	appendMsg(t, s, mbox(t, s, a.ID, "INBOX").ID, "hello\r\n")
	s.Close()
	for i := 0; i < 2; i++ {
		s2 := openTest(t, dir)
		var v int
		if err := s2.r.QueryRow(`SELECT version FROM schema_version`).Scan(&v); err != nil || v != SchemaVersion() {
			t.Fatalf("schema version = %d, %v; want %d", v, err, SchemaVersion())
		}
		var rows int
		s2.r.QueryRow(`SELECT count(*) FROM schema_version`).Scan(&rows)
		if rows != 1 {
			t.Fatalf("schema_version has %d rows", rows)
		}
		got, err := s2.AccountByAddress(ctx, "alice@example.com")
		if err != nil || got.ID != a.ID || got.Address != "alice@example.com" {
			t.Fatalf("account after reopen: %+v, %v", got, err)
		}
		if uids := uidsOf(t, s2, mbox(t, s2, a.ID, "inbox").ID); !slices.Equal(uids, []uint32{1}) {
			t.Fatalf("uids after reopen = %v", uids)
		}
		var mode string
		s2.r.QueryRow(`PRAGMA journal_mode`).Scan(&mode)
		var sync int
		s2.w.QueryRow(`PRAGMA synchronous`).Scan(&sync)
		if mode != "wal" || sync != 2 {
			t.Fatalf("journal_mode=%s synchronous=%d, want wal/2(FULL)", mode, sync)
		}
		s2.Close()
	}
	// A database from a newer program is refused, not damaged.
	s3 := openTest(t, dir)
	s3.w.Exec(`UPDATE schema_version SET version = 999`)
	s3.Close()
	if _, err := Open(ctx, dir, Options{}); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("Open of a newer schema: %v", err)
	}
}

func TestAccounts(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir())
	a := newAccount(t, s, "bob@example.com")
	if _, err := s.CreateAccount(ctx, "BOB@example.com", "x", nil); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate account: %v", err)
	}
	boxes, err := s.Mailboxes(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, b := range boxes {
		names = append(names, b.Name+":"+b.SpecialUse)
		if !b.Subscribed {
			t.Errorf("default mailbox %s not subscribed", b.Name)
		}
	}
	if want := []string{`Drafts:\Drafts`, "INBOX:", `Sent:\Sent`, `Trash:\Trash`}; !slices.Equal(names, want) {
		t.Fatalf("mailboxes = %v, want %v", names, want)
	}
	if err := s.SetPasswordHash(ctx, a.ID, "new"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Account(ctx, a.ID); got.PasswordHash != "new" {
		t.Fatalf("hash = %q", got.PasswordHash)
	}
	if l, _ := s.AccountsByLocalpart(ctx, "BOB"); len(l) != 1 {
		t.Fatalf("by localpart: %v", l)
	}
	// Deleting the account deletes its mail, bodies included.
	r := appendMsg(t, s, mbox(t, s, a.ID, "INBOX").ID, "bye\r\n")
	_ = r
	if err := s.DeleteAccount(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AccountByAddress(ctx, "bob@example.com"); !errors.Is(err, ErrNoAccount) {
		t.Fatalf("after delete: %v", err)
	}
	if n := countBlobs(t, s); n != 0 {
		t.Fatalf("%d body files left after account deletion", n)
	}
	if err := s.DeleteAccount(ctx, a.ID); !errors.Is(err, ErrNoAccount) {
		t.Fatalf("second delete: %v", err)
	}
}

func countBlobs(t *testing.T, s *Store) int {
	t.Helper()
	n := 0
	filepath.WalkDir(s.msgDir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return nil
	})
	return n
}

func TestUIDRules(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir())
	a := newAccount(t, s, "u@example.com")
	box, err := s.CreateMailbox(ctx, a.ID, "Work", "")
	if err != nil {
		t.Fatal(err)
	}
	r1 := appendMsg(t, s, box.ID, "one\r\n")
	r2 := appendMsg(t, s, box.ID, "two\r\n")
	if r1.UID != 1 || r2.UID != 2 || r1.UIDValidity != box.UIDValidity {
		t.Fatalf("uids %d %d uidvalidity %d/%d", r1.UID, r2.UID, r1.UIDValidity, box.UIDValidity)
	}
	// Expunging the highest UID never lets it be reused.
	s.StoreFlags(ctx, box.ID, []uint32{2}, FlagsAdd, []string{`\deleted`})
	if gone, err := s.Expunge(ctx, box.ID, nil); err != nil || !slices.Equal(gone, []uint32{2}) {
		t.Fatalf("expunge: %v %v", gone, err)
	}
	if r3 := appendMsg(t, s, box.ID, "three\r\n"); r3.UID != 3 {
		t.Fatalf("after expunge of uid 2 the next uid is %d, want 3", r3.UID)
	}
	// Delete and recreate: a new UIDVALIDITY, UIDs start again.
	if err := s.DeleteMailbox(ctx, a.ID, "Work"); err != nil {
		t.Fatal(err)
	}
	box2, err := s.CreateMailbox(ctx, a.ID, "Work", "")
	if err != nil {
		t.Fatal(err)
	}
	if box2.UIDValidity == box.UIDValidity || box2.UIDValidity == 0 {
		t.Fatalf("recreated mailbox uidvalidity %d, old %d", box2.UIDValidity, box.UIDValidity)
	}
	// Every mailbox ever created has its own UIDVALIDITY.
	seen := map[uint32]bool{box.UIDValidity: true}
	all, _ := s.Mailboxes(ctx, a.ID)
	for _, m := range all {
		if seen[m.UIDValidity] {
			t.Fatalf("uidvalidity %d of %s handed out twice", m.UIDValidity, m.Name)
		}
		seen[m.UIDValidity] = true
	}
	if _, err := s.CreateMailbox(ctx, a.ID, "work", ""); err != nil {
		t.Fatalf("names other than INBOX are case-sensitive: %v", err)
	}
	if _, err := s.CreateMailbox(ctx, a.ID, "Work", ""); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate create: %v", err)
	}
	if _, err := s.CreateMailbox(ctx, a.ID, "inbox", ""); !errors.Is(err, ErrExists) {
		t.Fatalf("create inbox: %v", err)
	}
	for _, bad := range []string{"", "a//b", "/a", "a/", "a*", "b%", "x\x00y", "x\ry", strings.Repeat("n", 600)} {
		if _, err := s.CreateMailbox(ctx, a.ID, bad, ""); !errors.Is(err, ErrBadName) {
			t.Errorf("create %q: %v, want ErrBadName", bad, err)
		}
	}
	if err := s.DeleteMailbox(ctx, a.ID, "inbox"); !errors.Is(err, ErrInboxReserved) {
		t.Fatalf("delete INBOX: %v", err)
	}
}

func TestFlagsAndModSeq(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir())
	a := newAccount(t, s, "f@example.com")
	in := mbox(t, s, a.ID, "INBOX")
	appendMsg(t, s, in.ID, "a\r\n", `\seen`, "$Label1")
	appendMsg(t, s, in.ID, "b\r\n")
	appendMsg(t, s, in.ID, "c\r\n", `\Recent`)
	st, _ := s.Status(ctx, in.ID)
	if st.Messages != 3 || st.Unseen != 2 || st.UIDNext != 4 || st.Size != 9 {
		t.Fatalf("status %+v", st)
	}
	ms, _ := s.Messages(ctx, in.ID)
	if !slices.Equal(ms[0].Flags, []string{"$Label1", `\Seen`}) || len(ms[2].Flags) != 0 {
		t.Fatalf("flags %v / %v", ms[0].Flags, ms[2].Flags)
	}
	before := st.HighestModSeq
	// Adding a flag a message already has changes nothing.
	out, err := s.StoreFlags(ctx, in.ID, []uint32{1}, FlagsAdd, []string{`\SEEN`})
	if err != nil || out[0].ModSeq != ms[0].ModSeq {
		t.Fatalf("no-op store bumped modseq: %+v %v", out, err)
	}
	if st, _ := s.Status(ctx, in.ID); st.HighestModSeq != before {
		t.Fatalf("no-op store moved HIGHESTMODSEQ")
	}
	out, err = s.StoreFlags(ctx, in.ID, []uint32{1, 2, 3, 99}, FlagsAdd, []string{`\Flagged`, "$label1"})
	if err != nil || len(out) != 3 {
		t.Fatalf("store: %v %v", out, err)
	}
	for _, m := range out {
		if m.ModSeq <= before {
			t.Fatalf("uid %d modseq %d not above %d", m.UID, m.ModSeq, before)
		}
	}
	if !slices.Equal(out[1].Flags, []string{"$label1", `\Flagged`}) || !slices.Equal(out[0].Flags, []string{"$Label1", `\Flagged`, `\Seen`}) {
		t.Fatalf("flags after +FLAGS: %v %v", out[0].Flags, out[1].Flags)
	}
	changed, vanished, hms, err := s.Changes(ctx, in.ID, before)
	if err != nil || len(changed) != 3 || len(vanished) != 0 || hms != out[0].ModSeq {
		t.Fatalf("changes since %d: %v %v %d %v", before, changed, vanished, hms, err)
	}
	out, _ = s.StoreFlags(ctx, in.ID, []uint32{1}, FlagsRemove, []string{`\seen`})
	if !slices.Equal(out[0].Flags, []string{"$Label1", `\Flagged`}) {
		t.Fatalf("-FLAGS: %v", out[0].Flags)
	}
	out, _ = s.StoreFlags(ctx, in.ID, []uint32{1}, FlagsSet, []string{`\Answered`})
	if !slices.Equal(out[0].Flags, []string{`\Answered`}) {
		t.Fatalf("FLAGS: %v", out[0].Flags)
	}
	for _, bad := range []string{`\Bogus`, "a b", "x(y", ""} {
		if _, err := s.StoreFlags(ctx, in.ID, []uint32{1}, FlagsAdd, []string{bad}); !errors.Is(err, ErrBadFlag) {
			t.Errorf("flag %q: %v", bad, err)
		}
	}
}

func TestCopyMoveExpungeTombstones(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir())
	a := newAccount(t, s, "c@example.com")
	in := mbox(t, s, a.ID, "INBOX")
	trash := mbox(t, s, a.ID, "Trash")
	for i := 0; i < 5; i++ {
		appendMsg(t, s, in.ID, fmt.Sprintf("msg %d\r\n", i), `\Seen`)
	}
	appendMsg(t, s, trash.ID, "old\r\n")
	res, err := s.Copy(ctx, in.ID, []uint32{4, 2, 77}, trash.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.SrcUIDs, []uint32{2, 4}) || !slices.Equal(res.DstUIDs, []uint32{2, 3}) || res.UIDValidity != trash.UIDValidity {
		t.Fatalf("copy result %+v", res)
	}
	if body, _ := s.ReadMessage(ctx, trash.ID, 3); string(body) != "msg 3\r\n" {
		t.Fatalf("copied body %q", body)
	}
	if m, _ := s.Message(ctx, trash.ID, 2); !slices.Equal(m.Flags, []string{`\Seen`}) {
		t.Fatalf("copy lost flags: %v", m.Flags)
	}
	// Copy into the same mailbox is allowed.
	if res, err := s.Copy(ctx, in.ID, []uint32{1}, in.ID); err != nil || !slices.Equal(res.DstUIDs, []uint32{6}) {
		t.Fatalf("self copy %+v %v", res, err)
	}
	before, _ := s.Status(ctx, in.ID)
	mv, err := s.Move(ctx, in.ID, []uint32{1, 3}, trash.ID)
	if err != nil || !slices.Equal(mv.SrcUIDs, []uint32{1, 3}) || !slices.Equal(mv.DstUIDs, []uint32{4, 5}) {
		t.Fatalf("move %+v %v", mv, err)
	}
	if got := uidsOf(t, s, in.ID); !slices.Equal(got, []uint32{2, 4, 5, 6}) {
		t.Fatalf("inbox after move %v", got)
	}
	_, vanished, _, _ := s.Changes(ctx, in.ID, before.HighestModSeq)
	if !slices.Equal(vanished, []uint32{1, 3}) {
		t.Fatalf("tombstones after move: %v", vanished)
	}
	// EXPUNGE takes only \Deleted ones; UID EXPUNGE only those among the set.
	s.StoreFlags(ctx, in.ID, []uint32{2, 4, 5}, FlagsAdd, []string{`\Deleted`})
	if gone, _ := s.Expunge(ctx, in.ID, []uint32{4, 6}); !slices.Equal(gone, []uint32{4}) {
		t.Fatalf("uid expunge: %v", gone)
	}
	mid, _ := s.Status(ctx, in.ID)
	if gone, _ := s.Expunge(ctx, in.ID, nil); !slices.Equal(gone, []uint32{2, 5}) {
		t.Fatalf("expunge: %v", gone)
	}
	_, vanished, _, _ = s.Changes(ctx, in.ID, mid.HighestModSeq)
	if !slices.Equal(vanished, []uint32{2, 5}) {
		t.Fatalf("tombstones since %d: %v", mid.HighestModSeq, vanished)
	}
	// Remove ignores flags (POP3 DELE).
	if gone, _ := s.Remove(ctx, in.ID, []uint32{6, 100}); !slices.Equal(gone, []uint32{6}) {
		t.Fatalf("remove: %v", gone)
	}
	// Bodies shared with Trash survive; bodies with no row left are gone.
	if body, err := s.ReadMessage(ctx, trash.ID, 4); err != nil || string(body) != "msg 0\r\n" {
		t.Fatalf("moved body %q %v", body, err)
	}
	if _, err := s.ReadMessage(ctx, in.ID, 2); !errors.Is(err, ErrNotFound) {
		t.Fatalf("expunged message read: %v", err)
	}
	if n := countBlobs(t, s); n != 5 { // "old", msg 1..4 referenced from Trash (msg 0 via move, 1,3 copies, 2 via move)
		t.Fatalf("%d body files, want 5", n)
	}
}

func TestRename(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir())
	a := newAccount(t, s, "r@example.com")
	if _, err := s.CreateMailbox(ctx, a.ID, "Projects/2024/Q1", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateMailbox(ctx, a.ID, "Projectsfoo", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateMailbox(ctx, a.ID, "Prøjekt/Ünter", ""); err != nil {
		t.Fatal(err)
	}
	q1 := mbox(t, s, a.ID, "Projects/2024/Q1")
	r := appendMsg(t, s, q1.ID, "q1\r\n")
	if err := s.DeleteMailbox(ctx, a.ID, "Projects/2024"); !errors.Is(err, ErrHasChildren) {
		t.Fatalf("delete with children: %v", err)
	}
	if err := s.RenameMailbox(ctx, a.ID, "Projects", "Archive/Old"); err != nil {
		t.Fatal(err)
	}
	if err := s.RenameMailbox(ctx, a.ID, "Prøjekt", "Prøj"); err != nil {
		t.Fatal(err)
	}
	var names []string
	boxes, _ := s.Mailboxes(ctx, a.ID)
	for _, b := range boxes {
		names = append(names, b.Name)
	}
	want := []string{"Archive", "Archive/Old", "Archive/Old/2024", "Archive/Old/2024/Q1", "Drafts", "INBOX", "Projectsfoo", "Prøj", "Prøj/Ünter", "Sent", "Trash"}
	sort.Strings(want)
	if !slices.Equal(names, want) {
		t.Fatalf("after rename: %v\nwant %v", names, want)
	}
	moved := mbox(t, s, a.ID, "Archive/Old/2024/Q1")
	if moved.ID != q1.ID || moved.UIDValidity != q1.UIDValidity {
		t.Fatalf("rename changed identity: %+v vs %+v", moved, q1)
	}
	if body, _ := s.ReadMessage(ctx, moved.ID, r.UID); string(body) != "q1\r\n" {
		t.Fatalf("body after rename %q", body)
	}
	if err := s.RenameMailbox(ctx, a.ID, "Sent", "Drafts"); !errors.Is(err, ErrExists) {
		t.Fatalf("rename onto existing: %v", err)
	}
	if err := s.RenameMailbox(ctx, a.ID, "Archive", "Archive/Old/x"); !errors.Is(err, ErrBadName) {
		t.Fatalf("rename into own child: %v", err)
	}
	if err := s.RenameMailbox(ctx, a.ID, "Nope", "x"); !errors.Is(err, ErrNoMailbox) {
		t.Fatalf("rename missing: %v", err)
	}

	// INBOX rename: messages move to a new mailbox, INBOX stays and is empty,
	// its children stay put.
	in := mbox(t, s, a.ID, "INBOX")
	if _, err := s.CreateMailbox(ctx, a.ID, "INBOX/Child", ""); err != nil {
		t.Fatal(err)
	}
	appendMsg(t, s, in.ID, "i1\r\n", `\Flagged`)
	appendMsg(t, s, in.ID, "i2\r\n")
	if err := s.RenameMailbox(ctx, a.ID, "inbox", "Old Inbox"); err != nil {
		t.Fatal(err)
	}
	old := mbox(t, s, a.ID, "Old Inbox")
	if old.UIDValidity == in.UIDValidity || old.ID == in.ID {
		t.Fatalf("renamed INBOX kept identity")
	}
	ms, _ := s.Messages(ctx, old.ID)
	if len(ms) != 2 || ms[0].UID != 1 || !slices.Equal(ms[0].Flags, []string{`\Flagged`}) {
		t.Fatalf("messages in renamed INBOX: %+v", ms)
	}
	if body, _ := s.ReadMessage(ctx, old.ID, 2); string(body) != "i2\r\n" {
		t.Fatalf("body %q", body)
	}
	st, _ := s.Status(ctx, in.ID)
	if st.Messages != 0 || st.UIDValidity != in.UIDValidity || st.UIDNext != 3 {
		t.Fatalf("INBOX after rename: %+v", st)
	}
	mbox(t, s, a.ID, "INBOX/Child")
	if err := s.RenameMailbox(ctx, a.ID, "Drafts", "inbox"); !errors.Is(err, ErrInboxReserved) {
		t.Fatalf("rename onto INBOX: %v", err)
	}
}

func TestConcurrentAppends(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir())
	a := newAccount(t, s, "cc@example.com")
	in := mbox(t, s, a.ID, "INBOX")
	const workers, each = 8, 10
	var mu sync.Mutex
	byWorker := make([][]uint32, workers)
	all := map[uint32]string{}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				body := fmt.Sprintf("worker %d msg %d\r\n", w, i)
				r, err := s.Append(ctx, in.ID, strings.NewReader(body), AppendOptions{})
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				byWorker[w] = append(byWorker[w], r.UID)
				if prev, dup := all[r.UID]; dup {
					errs <- fmt.Errorf("uid %d given to %q and %q", r.UID, prev, body)
				}
				all[r.UID] = body
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for w, uids := range byWorker {
		if !slices.IsSorted(uids) {
			t.Fatalf("worker %d saw decreasing uids %v", w, uids)
		}
	}
	got := uidsOf(t, s, in.ID)
	if len(got) != workers*each || got[0] != 1 || got[len(got)-1] != workers*each {
		t.Fatalf("uids %v", got)
	}
	for uid, body := range all {
		if b, _ := s.ReadMessage(ctx, in.ID, uid); string(b) != body {
			t.Fatalf("uid %d body %q want %q", uid, b, body)
		}
	}
}

func TestByteExactAndSizeLimit(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir())
	a := newAccount(t, s, "b@example.com")
	in := mbox(t, s, a.ID, "INBOX")
	raw := []byte("Subject: x\nbare LF\rbare CR\r\nnul\x00byte\xff\xfe8bit\r\n.\r\n..dot\r\nno final newline")
	r, err := s.Append(ctx, in.ID, bytes.NewReader(raw), AppendOptions{Date: time.Date(2024, 2, 3, 4, 5, 6, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.ReadMessage(ctx, in.ID, r.UID)
	if err != nil || !bytes.Equal(got, raw) {
		t.Fatalf("read back %q, %v", got, err)
	}
	b, err := s.OpenMessage(ctx, in.ID, r.UID)
	if err != nil {
		t.Fatal(err)
	}
	part := make([]byte, 7)
	if _, err := b.ReadAt(part, 11); err != nil || string(part) != "bare LF" {
		t.Fatalf("ReadAt %q %v", part, err)
	}
	b.Close()
	m, _ := s.Message(ctx, in.ID, r.UID)
	if m.Size != int64(len(raw)) || !m.InternalDate.Equal(time.Date(2024, 2, 3, 4, 5, 6, 0, time.UTC)) {
		t.Fatalf("metadata %+v", m)
	}
	empty, err := s.Append(ctx, in.ID, bytes.NewReader(nil), AppendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.ReadMessage(ctx, in.ID, empty.UID); err != nil || len(got) != 0 {
		t.Fatalf("empty message: %q %v", got, err)
	}

	limit := s.MessageSizeLimit()
	if _, err := s.Append(ctx, in.ID, bytes.NewReader(make([]byte, limit)), AppendOptions{}); err != nil {
		t.Fatalf("message of exactly the limit: %v", err)
	}
	blobs := countBlobs(t, s)
	st, _ := s.Status(ctx, in.ID)
	if _, err := s.Append(ctx, in.ID, bytes.NewReader(make([]byte, limit+1)), AppendOptions{}); !errors.Is(err, ErrTooBig) {
		t.Fatalf("oversized append: %v", err)
	}
	if _, err := s.Deliver(ctx, a.ID, "INBOX", make([]byte, limit+1), time.Now()); !errors.Is(err, ErrTooBig) {
		t.Fatalf("oversized deliver: %v", err)
	}
	if _, err := s.Enqueue(ctx, "a@b.c", []string{"x@y.z"}, bytes.NewReader(make([]byte, limit+1)), time.Time{}); !errors.Is(err, ErrTooBig) {
		t.Fatalf("oversized enqueue: %v", err)
	}
	st2, _ := s.Status(ctx, in.ID)
	if st2.Messages != st.Messages || st2.UIDNext != st.UIDNext || countBlobs(t, s) != blobs {
		t.Fatalf("a refused message left traces: %+v -> %+v", st, st2)
	}
}

func TestWatch(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir())
	a := newAccount(t, s, "w@example.com")
	in := mbox(t, s, a.ID, "INBOX")
	sent := mbox(t, s, a.ID, "Sent")
	ch, cancel := s.Watch(in.ID)
	defer cancel()
	other, cancel2 := s.Watch(sent.ID)
	defer cancel2()
	if _, err := s.Deliver(ctx, a.ID, "inbox", []byte("x\r\n"), time.Now()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("no notification for a delivery")
	}
	select {
	case <-other:
		t.Fatal("Sent watcher notified for an INBOX delivery")
	default:
	}
	// Notifications coalesce: many changes, the writer never blocks.
	for i := 0; i < 5; i++ {
		appendMsg(t, s, in.ID, "y\r\n")
	}
	<-ch
	cancel()
	appendMsg(t, s, in.ID, "z\r\n")
	select {
	case <-ch:
		t.Fatal("cancelled watcher notified")
	default:
	}
	s.mu.Lock()
	n := len(s.watchers[in.ID])
	s.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d watchers left after cancel", n)
	}
}

func TestAcceptAndQueue(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	s, err := Open(ctx, t.TempDir(), Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a := newAccount(t, s, "l1@example.com")
	b := newAccount(t, s, "l2@example.com")
	raw := "From: x\r\n\r\nbody\r\n"
	res, err := s.Accept(ctx, Incoming{Raw: strings.NewReader(raw), Local: []int64{a.ID, b.ID, a.ID}, Sender: "s@example.com",
		Remote: []string{"r2@remote.test", "r1@remote.test", "r1@remote.test"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Delivered) != 2 || res.QueueID == 0 || res.Size != int64(len(raw)) {
		t.Fatalf("accept %+v", res)
	}
	if countBlobs(t, s) != 1 {
		t.Fatalf("one accepted message should be one body file, got %d", countBlobs(t, s))
	}
	for _, acct := range []int64{a.ID, b.ID} {
		in := mbox(t, s, acct, "INBOX")
		if got, _ := s.ReadMessage(ctx, in.ID, 1); string(got) != raw {
			t.Fatalf("local copy %q", got)
		}
	}
	due, err := s.QueueDue(ctx, now, 10)
	if err != nil || len(due) != 1 || !slices.Equal(due[0].Pending(), []string{"r1@remote.test", "r2@remote.test"}) {
		t.Fatalf("due %+v %v", due, err)
	}
	body, err := s.OpenQueued(ctx, res.QueueID)
	if err != nil {
		t.Fatal(err)
	}
	qb := make([]byte, body.Size())
	body.ReadAt(qb, 0)
	body.Close()
	if string(qb) != raw {
		t.Fatalf("queued body %q", qb)
	}
	id := res.QueueID
	if err := s.SetRecipientStatus(ctx, id, RecipientUpdate{"r1@remote.test", RcptDelivered, "250 ok"}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetRecipientStatus(ctx, id, RecipientUpdate{"r2@remote.test", RcptPending, "451 try later"}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetRecipientStatus(ctx, id, RecipientUpdate{"nobody@x", RcptFailed, ""}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown recipient: %v", err)
	}
	// A batch is one transaction: with an unknown recipient in it, the
	// known one is not recorded either.
	if err := s.SetRecipientStatus(ctx, id, RecipientUpdate{"r2@remote.test", RcptFailed, "550"}, RecipientUpdate{"nobody@x", RcptFailed, ""}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("batch with an unknown recipient: %v", err)
	}
	if err := s.Reschedule(ctx, id, now.Add(time.Hour), "451 try later"); err != nil {
		t.Fatal(err)
	}
	if due, _ := s.QueueDue(ctx, now, 10); len(due) != 0 {
		t.Fatalf("rescheduled entry still due: %+v", due)
	}
	e, _ := s.QueueEntry(ctx, id)
	if e.Attempts != 1 || e.LastError != "451 try later" || !slices.Equal(e.Pending(), []string{"r2@remote.test"}) {
		t.Fatalf("entry %+v", e)
	}
	if err := s.QueueRetry(ctx, id); err != nil {
		t.Fatal(err)
	}
	if due, _ := s.QueueDue(ctx, now, 10); len(due) != 1 {
		t.Fatalf("retried entry not due")
	}
	s.SetRecipientStatus(ctx, id, RecipientUpdate{"r2@remote.test", RcptFailed, "550 no"})
	if due, _ := s.QueueDue(ctx, now.Add(48*time.Hour), 10); len(due) != 0 {
		t.Fatalf("entry without pending recipients is due")
	}
	// Deleting the queue entry keeps the body the INBOXes share.
	if err := s.QueueDelete(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := s.QueueDelete(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if countBlobs(t, s) != 1 {
		t.Fatal("queue delete removed a body still in INBOXes")
	}
	if l, _ := s.QueueList(ctx); len(l) != 0 {
		t.Fatalf("queue list %+v", l)
	}
	s.DeleteAccount(ctx, a.ID)
	s.DeleteAccount(ctx, b.ID)
	if countBlobs(t, s) != 0 {
		t.Fatal("body left with no reference")
	}
}

func TestOrphanSweep(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	a := newAccount(t, s, "o@example.com")
	kept := appendMsg(t, s, mbox(t, s, a.ID, "INBOX").ID, "kept\r\n")
	filepath.WalkDir(s.msgDir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			past := time.Now().Add(-time.Hour)
			os.Chtimes(p, past, past)
		}
		return nil
	})
	old := s.blobPath("00112233445566778899aabbccddeeff")
	fresh := s.blobPath("ffeeddccbbaa99887766554433221100")
	os.WriteFile(old, []byte("x"), 0o600)
	os.WriteFile(fresh, []byte("x"), 0o600)
	past := time.Now().Add(-time.Hour)
	os.Chtimes(old, past, past)
	s.Close()
	s = openTest(t, dir)
	if n, err := s.Sweep(context.Background()); err != nil || n != 1 {
		t.Fatalf("sweep removed %d, %v", n, err)
	}
	if _, err := os.Stat(old); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("old orphan kept: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Fatalf("fresh file (another process's uncommitted write) removed: %v", err)
	}
	if body, err := s.ReadMessage(context.Background(), mbox(t, s, a.ID, "INBOX").ID, kept.UID); err != nil || string(body) != "kept\r\n" {
		t.Fatalf("sweep removed a committed body: %q %v", body, err)
	}
}

// A crash after the commit that dropped a body's last row but before the
// unlink leaves the name in blob_garbage; the next Open finishes the job.
func TestGarbageFinishedAtOpen(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	a := newAccount(t, s, "g@example.com")
	in := mbox(t, s, a.ID, Inbox)
	gone := appendMsg(t, s, in.ID, "gone\r\n")
	kept := appendMsg(t, s, in.ID, "kept\r\n")
	// Delete the row outside s.write, which would unlink at once: the
	// state a crash between commit and unlink leaves behind.
	if _, err := s.w.Exec(`DELETE FROM messages WHERE mailbox_id = ? AND uid = ?`, in.ID, gone.UID); err != nil {
		t.Fatal(err)
	}
	// A damaged row names no file; it must not stay and make every
	// later write collect again.
	if _, err := s.w.Exec(`INSERT INTO blob_garbage (name) VALUES ('not a body')`); err != nil {
		t.Fatal(err)
	}
	if n := countBlobs(t, s); n != 2 {
		t.Fatalf("%d body files before reopen, want 2 (the unlink has not happened)", n)
	}
	s.Close()
	s = openTest(t, dir)
	if n := countBlobs(t, s); n != 1 {
		t.Fatalf("%d body files after reopen, want 1", n)
	}
	var left int
	if err := s.r.QueryRow(`SELECT count(*) FROM blob_garbage`).Scan(&left); err != nil || left != 0 {
		t.Fatalf("blob_garbage keeps %d rows, %v", left, err)
	}
	if body, err := s.ReadMessage(context.Background(), in.ID, kept.UID); err != nil || string(body) != "kept\r\n" {
		t.Fatalf("collection removed a live body: %q %v", body, err)
	}
}
