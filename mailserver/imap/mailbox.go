package imap

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"mailconf/mailserver/store"
)

// mailboxGrace is how long a mailbox's shared state outlives its last
// selection, so a client that re-SELECTs, or reconnects, finds its index
// loaded instead of reading every row again.
const mailboxGrace = 30 * time.Second

// mailboxState is the process-wide view of one mailbox that at least one
// session has selected (or had selected within mailboxGrace). It owns the
// MailboxTracker, the server-side sequence and an in-memory index:
// entries[i] is the message with server sequence number i+1 (uid, flags,
// size, internal date, modseq, body reference), always in step with the
// tracker's message count, so FETCH, SEARCH and STORE read metadata from
// memory and open body files directly.
//
// Every change reaches the tracker and the index through syncLocked, which
// reads the store's change log (modseq) and queues EXPUNGE, FETCH FLAGS and
// EXISTS in commit order. Changes by IMAP sessions run under mu across
// their store write and then sync (or, for flag updates nobody raced,
// apply their own result); changes from elsewhere (SMTP delivery, POP3,
// another session's COPY into this mailbox) arrive through the store's
// Watch channel and a watcher goroutine.
type mailboxState struct {
	srv *Server
	id  int64

	mu          sync.Mutex
	tracker     *imapserver.MailboxTracker
	entries     []store.IndexEntry
	modseq      uint64
	uidValidity uint32
	uidNext     uint32
	gone        bool

	refs        int         // guarded by srv.mbMu
	grace       *time.Timer // guarded by srv.mbMu; set while refs == 0
	cancelWatch func()
	done        chan struct{}
}

// indexOf returns the position of uid in the index; mu must be held.
func (mb *mailboxState) indexOf(uid uint32) (int, bool) {
	return slices.BinarySearchFunc(mb.entries, uid, func(e store.IndexEntry, u uint32) int {
		return cmpUID(e.UID, u)
	})
}

func cmpUID(a, b uint32) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// maxUIDLocked is the highest UID in the index (0 when empty).
func (mb *mailboxState) maxUIDLocked() uint32 {
	if n := len(mb.entries); n > 0 {
		return mb.entries[n-1].UID
	}
	return 0
}

// acquireMailbox returns the shared state of a mailbox, loading it on first
// use. release must be called once per acquire.
func (s *Server) acquireMailbox(ctx context.Context, m store.Mailbox) (*mailboxState, error) {
	s.mbMu.Lock()
	defer s.mbMu.Unlock()
	if mb := s.mboxes[m.ID]; mb != nil {
		mb.mu.Lock()
		// A deleted mailbox's row id may be reused by a new mailbox;
		// its UIDVALIDITY never is.
		stale := mb.gone || mb.uidValidity != m.UIDValidity
		mb.mu.Unlock()
		if !stale {
			if mb.grace != nil {
				mb.grace.Stop()
				mb.grace = nil
			}
			mb.refs++
			return mb, nil
		}
		delete(s.mboxes, m.ID)
		if mb.refs == 0 {
			if mb.grace != nil {
				mb.grace.Stop()
				mb.grace = nil
			}
			mb.stop()
		}
	}
	mb := &mailboxState{srv: s, id: m.ID, done: make(chan struct{})}
	// Watch before the initial read, so no change falls between them.
	ch, cancel := s.st.Watch(m.ID)
	d, err := s.st.IndexChanges(ctx, m.ID, 0)
	if err != nil {
		cancel()
		return nil, err
	}
	mb.entries = d.Changed
	mb.modseq, mb.uidValidity, mb.uidNext = d.HighestModSeq, d.UIDValidity, d.UIDNext
	mb.tracker = imapserver.NewMailboxTracker(uint32(len(mb.entries)))
	mb.cancelWatch = cancel
	mb.refs = 1
	s.mboxes[m.ID] = mb
	go mb.watch(ch)
	return mb, nil
}

func (s *Server) releaseMailbox(mb *mailboxState) {
	s.mbMu.Lock()
	defer s.mbMu.Unlock()
	mb.refs--
	if mb.refs > 0 {
		return
	}
	if s.mboxes[mb.id] != mb {
		// Replaced by a fresh state (the mailbox was recreated).
		mb.stop()
		return
	}
	mb.grace = time.AfterFunc(mailboxGrace, func() {
		s.mbMu.Lock()
		defer s.mbMu.Unlock()
		if mb.refs > 0 || mb.grace == nil {
			return
		}
		mb.grace = nil
		if s.mboxes[mb.id] == mb {
			delete(s.mboxes, mb.id)
		}
		mb.stop()
	})
}

func (mb *mailboxState) stop() {
	mb.cancelWatch()
	select {
	case <-mb.done:
	default:
		close(mb.done)
	}
}

func (mb *mailboxState) watch(ch <-chan struct{}) {
	for {
		select {
		case <-mb.done:
			return
		case <-ch:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		mb.mu.Lock()
		mb.syncLocked(ctx, nil)
		mb.mu.Unlock()
		cancel()
	}
}

// goneLocked empties the view of a mailbox deleted while selected.
func (mb *mailboxState) goneLocked() {
	for i := len(mb.entries); i > 0; i-- {
		mb.tracker.QueueExpunge(uint32(i))
	}
	mb.entries, mb.gone = nil, true
}

// syncLocked queues every change committed since the last sync. source,
// if not nil, is the session whose own STORE caused flag changes: it
// reports them in its command response and must not get them twice.
func (mb *mailboxState) syncLocked(ctx context.Context, source *imapserver.SessionTracker) {
	if mb.gone {
		return
	}
	d, err := mb.srv.st.IndexChanges(ctx, mb.id, mb.modseq)
	if errors.Is(err, store.ErrNoMailbox) || err == nil && d.UIDValidity != mb.uidValidity {
		// Deleted while selected (and perhaps its id reused): the
		// client sees it empty.
		mb.goneLocked()
		return
	}
	if err != nil {
		mb.srv.log.Warn("imap: mailbox sync", "mailbox", mb.id, "err", err)
		return
	}
	// Expunges first, highest sequence number first, so each number is
	// valid when queued; then one pass compacts the index.
	if len(d.Vanished) > 0 {
		var idx []int
		for _, uid := range d.Vanished {
			if i, ok := mb.indexOf(uid); ok {
				idx = append(idx, i)
			}
		}
		slices.Sort(idx)
		for k := len(idx) - 1; k >= 0; k-- {
			mb.tracker.QueueExpunge(uint32(idx[k] + 1))
		}
		if len(idx) > 0 {
			out := mb.entries[:idx[0]]
			next := 0
			for i := idx[0]; i < len(mb.entries); i++ {
				if next < len(idx) && idx[next] == i {
					next++
					continue
				}
				out = append(out, mb.entries[i])
			}
			clear(mb.entries[len(out):])
			mb.entries = out
		}
	}
	last := mb.maxUIDLocked()
	for _, e := range d.Changed {
		if e.UID > last {
			// New message. One EXISTS per message: the tracker's
			// EncodeSeqNum only hides a single pending increment.
			mb.entries = append(mb.entries, e)
			last = e.UID
			mb.tracker.QueueNumMessages(uint32(len(mb.entries)))
			continue
		}
		if i, ok := mb.indexOf(e.UID); ok {
			mb.entries[i] = e
			mb.tracker.QueueMessageFlags(uint32(i+1), goimap.UID(e.UID), imapFlags(e.Flags), source)
		}
	}
	mb.modseq, mb.uidNext = d.HighestModSeq, d.UIDNext
}

// storeFlagsLocked changes flags for a session (STORE, FETCH's implicit
// \Seen) and brings the index up to date. The session's own changes are
// tagged with source so its tracker does not report them twice.
func (mb *mailboxState) storeFlagsLocked(ctx context.Context, uids []uint32, op store.FlagOp, flags []string, source *imapserver.SessionTracker) ([]store.MessageInfo, error) {
	// Others' changes first, so tagging our changes with source hides
	// only those from us.
	mb.syncLocked(ctx, nil)
	if mb.gone {
		return nil, nil
	}
	res, err := mb.srv.st.UpdateFlags(ctx, mb.id, uids, op, flags)
	if err != nil {
		return nil, err
	}
	if res.Before != mb.modseq {
		// Someone outside IMAP (POP3, delivery) wrote in between: read
		// the log, which holds their change and ours.
		mb.syncLocked(ctx, source)
		return res.Messages, nil
	}
	if res.After != res.Before {
		for _, m := range res.Messages {
			if m.ModSeq != res.After {
				continue
			}
			if i, ok := mb.indexOf(m.UID); ok {
				e := &mb.entries[i]
				e.Flags, e.ModSeq = m.Flags, m.ModSeq
				mb.tracker.QueueMessageFlags(uint32(i+1), goimap.UID(m.UID), imapFlags(m.Flags), source)
			}
		}
		mb.modseq = res.After
	}
	return res.Messages, nil
}

// selection is one session's selected mailbox.
type selection struct {
	mb        *mailboxState
	tracker   *imapserver.SessionTracker
	readOnly  bool
	name      string
	searchRes []uint32 // SEARCHRES "$", as UIDs
	closeOnce sync.Once
}

func (s *Server) openSelection(ctx context.Context, m store.Mailbox, readOnly bool) (*selection, *goimap.SelectData, error) {
	mb, err := s.acquireMailbox(ctx, m)
	if err != nil {
		return nil, nil, err
	}
	mb.mu.Lock()
	mb.syncLocked(ctx, nil)
	if mb.gone {
		mb.mu.Unlock()
		s.releaseMailbox(mb)
		return nil, nil, store.ErrNoMailbox
	}
	n := len(mb.entries)
	tracker := mb.tracker.NewSession()
	var seqUnseen uint32
	for i := range mb.entries {
		if !hasFlag(mb.entries[i].Flags, goimap.FlagSeen) {
			seqUnseen = uint32(i + 1)
			break
		}
	}
	uidNext, uidValidity := mb.uidNext, mb.uidValidity
	mb.mu.Unlock()
	flags := []goimap.Flag{goimap.FlagSeen, goimap.FlagAnswered, goimap.FlagFlagged, goimap.FlagDeleted, goimap.FlagDraft}
	perm := []goimap.Flag{}
	if !readOnly {
		perm = append(slices.Clone(flags), goimap.FlagWildcard)
	}
	data := &goimap.SelectData{
		Flags:             flags,
		PermanentFlags:    perm,
		NumMessages:       uint32(n),
		FirstUnseenSeqNum: seqUnseen,
		UIDNext:           goimap.UID(uidNext),
		UIDValidity:       uidValidity,
	}
	return &selection{mb: mb, tracker: tracker, readOnly: readOnly, name: m.Name}, data, nil
}

func (sel *selection) close() {
	sel.closeOnce.Do(func() {
		sel.tracker.Close()
		sel.mb.srv.releaseMailbox(sel.mb)
	})
}
