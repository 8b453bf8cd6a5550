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

// mailboxState is the process-wide view of one mailbox that at least one
// session has selected. It owns the MailboxTracker and the server-side
// sequence: uids[i] is the UID of server sequence number i+1, always in
// step with the tracker's message count.
//
// Every change reaches the tracker through syncLocked, which reads the
// store's change log (modseq) and queues EXPUNGE, FETCH FLAGS and EXISTS in
// commit order. Changes by IMAP sessions run syncLocked themselves while
// holding mu across their store write; changes from elsewhere (SMTP
// delivery, POP3, another session's COPY into this mailbox) arrive through
// the store's Watch channel and a watcher goroutine.
type mailboxState struct {
	srv *Server
	id  int64

	mu      sync.Mutex
	tracker *imapserver.MailboxTracker
	uids    []uint32
	modseq  uint64
	gone    bool

	refs        int // guarded by srv.mbMu
	cancelWatch func()
	done        chan struct{}
}

// acquireMailbox returns the shared state of a mailbox, loading it on first
// use. release must be called once per acquire.
func (s *Server) acquireMailbox(ctx context.Context, id int64) (*mailboxState, error) {
	s.mbMu.Lock()
	defer s.mbMu.Unlock()
	if mb := s.mboxes[id]; mb != nil {
		mb.refs++
		return mb, nil
	}
	mb := &mailboxState{srv: s, id: id, done: make(chan struct{})}
	// Watch before the initial read, so no change falls between them.
	ch, cancel := s.st.Watch(id)
	changed, _, highest, err := s.st.Changes(ctx, id, 0)
	if err != nil {
		cancel()
		return nil, err
	}
	mb.uids = make([]uint32, len(changed))
	for i, m := range changed {
		mb.uids[i] = m.UID
	}
	mb.modseq = highest
	mb.tracker = imapserver.NewMailboxTracker(uint32(len(mb.uids)))
	mb.cancelWatch = cancel
	mb.refs = 1
	s.mboxes[id] = mb
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
	if s.mboxes[mb.id] == mb {
		delete(s.mboxes, mb.id)
	}
	mb.stop()
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

// syncLocked queues every change committed since the last sync. source,
// if not nil, is the session whose own STORE caused flag changes: it
// reports them in its command response and must not get them twice.
func (mb *mailboxState) syncLocked(ctx context.Context, source *imapserver.SessionTracker) {
	if mb.gone {
		return
	}
	changed, vanished, highest, err := mb.srv.st.Changes(ctx, mb.id, mb.modseq)
	if errors.Is(err, store.ErrNoMailbox) {
		// Deleted while selected: the client sees it empty.
		for i := len(mb.uids); i > 0; i-- {
			mb.tracker.QueueExpunge(uint32(i))
		}
		mb.uids, mb.gone = nil, true
		return
	}
	if err != nil {
		mb.srv.log.Warn("imap: mailbox sync", "mailbox", mb.id, "err", err)
		return
	}
	// Expunges first, highest sequence number first, so each number is
	// valid when queued.
	if len(vanished) > 0 {
		var seqs []int
		for _, uid := range vanished {
			if i, ok := slices.BinarySearch(mb.uids, uid); ok {
				seqs = append(seqs, i)
			}
		}
		slices.Sort(seqs)
		for k := len(seqs) - 1; k >= 0; k-- {
			i := seqs[k]
			mb.tracker.QueueExpunge(uint32(i + 1))
			mb.uids = slices.Delete(mb.uids, i, i+1)
		}
	}
	var last uint32
	if len(mb.uids) > 0 {
		last = mb.uids[len(mb.uids)-1]
	}
	for _, m := range changed {
		if m.UID > last {
			// New message. One EXISTS per message: the tracker's
			// EncodeSeqNum only hides a single pending increment.
			mb.uids = append(mb.uids, m.UID)
			last = m.UID
			mb.tracker.QueueNumMessages(uint32(len(mb.uids)))
			continue
		}
		if i, ok := slices.BinarySearch(mb.uids, m.UID); ok {
			mb.tracker.QueueMessageFlags(uint32(i+1), goimap.UID(m.UID), imapFlags(m.Flags), source)
		}
	}
	mb.modseq = highest
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
	mb, err := s.acquireMailbox(ctx, m.ID)
	if err != nil {
		return nil, nil, err
	}
	mb.mu.Lock()
	mb.syncLocked(ctx, nil)
	n := len(mb.uids)
	tracker := mb.tracker.NewSession()
	firstUnseen, err := s.st.FirstUnseen(ctx, m.ID)
	var seqUnseen uint32
	if err == nil && firstUnseen != 0 {
		if i, ok := slices.BinarySearch(mb.uids, firstUnseen); ok {
			seqUnseen = uint32(i + 1)
		}
	}
	mb.mu.Unlock()
	st, err := s.st.Status(ctx, m.ID)
	if err != nil {
		tracker.Close()
		s.releaseMailbox(mb)
		return nil, nil, err
	}
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
		UIDNext:           goimap.UID(st.UIDNext),
		UIDValidity:       st.UIDValidity,
	}
	return &selection{mb: mb, tracker: tracker, readOnly: readOnly, name: m.Name}, data, nil
}

func (sel *selection) close() {
	sel.closeOnce.Do(func() {
		sel.tracker.Close()
		sel.mb.srv.releaseMailbox(sel.mb)
	})
}
