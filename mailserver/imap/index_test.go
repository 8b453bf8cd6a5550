package imap

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"

	"mailconf/mailserver/store"
)

// checkIndex compares the server's in-memory index of a mailbox with the
// store's rows.
func checkIndex(t *testing.T, e *env, id int64) {
	t.Helper()
	msgs, err := e.st.Messages(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	e.srv.mbMu.Lock()
	mb := e.srv.mboxes[id]
	e.srv.mbMu.Unlock()
	if mb == nil {
		t.Fatal("mailbox state not loaded")
	}
	mb.mu.Lock()
	defer mb.mu.Unlock()
	if len(mb.entries) != len(msgs) {
		t.Fatalf("index has %d messages, store %d", len(mb.entries), len(msgs))
	}
	for i, m := range msgs {
		x := mb.entries[i]
		if x.UID != m.UID || !slices.Equal(x.Flags, m.Flags) || x.Size != m.Size || x.ModSeq != m.ModSeq || !x.InternalDate.Equal(m.InternalDate) {
			t.Fatalf("index entry %d = %+v, store %+v", i, x.MessageInfo, m)
		}
	}
}

// TestIndexUnderConcurrentWriters runs IMAP appends, flag changes and
// expunges in two sessions, SMTP-style deliveries and flag changes from
// outside IMAP (as POP3 does) at once, while a third session fetches and
// searches; afterwards every session's view and the shared index must be
// exactly the store's.
func TestIndexUnderConcurrentWriters(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	inbox, err := e.st.Mailbox(ctx, e.aliceID, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	a, b := e.alice(), e.alice()
	reader := e.alice()
	for i := 0; i < 20; i++ {
		appendMsg(t, a, "INBOX", testMessage(i), nil)
	}
	for _, c := range [...]*imapclient.Client{a, b, reader} {
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	var stop atomic.Bool
	errc := make(chan error, 16)
	report := func(err error) {
		select {
		case errc <- err:
		default:
		}
	}
	writer := func(c *imapclient.Client, seed uint64) {
		defer wg.Done()
		r := rand.New(rand.NewPCG(seed, 1))
		for i := 0; i < 30; i++ {
			switch r.IntN(4) {
			case 0:
				msg := testMessage(1000 + int(seed)*100 + i)
				cmd := c.Append("INBOX", int64(len(msg)), nil)
				cmd.Write([]byte(msg))
				cmd.Close()
				if _, err := cmd.Wait(); err != nil {
					report(err)
					return
				}
			case 1:
				set := goimap.UIDSet{goimap.UIDRange{Start: goimap.UID(r.IntN(60) + 1), Stop: 0}}
				if _, err := c.Store(set, &goimap.StoreFlags{Op: goimap.StoreFlagsAdd, Flags: []goimap.Flag{goimap.FlagFlagged}}, nil).Collect(); err != nil {
					report(err)
					return
				}
			case 2:
				set := goimap.UIDSetNum(goimap.UID(r.IntN(60)+1), goimap.UID(r.IntN(60)+1))
				if _, err := c.Store(set, &goimap.StoreFlags{Op: goimap.StoreFlagsAdd, Silent: true, Flags: []goimap.Flag{goimap.FlagDeleted}}, nil).Collect(); err != nil {
					report(err)
					return
				}
				if _, err := c.Expunge().Collect(); err != nil {
					report(err)
					return
				}
			case 3:
				if err := c.Noop().Wait(); err != nil {
					report(err)
					return
				}
			}
		}
	}
	wg.Add(4)
	go writer(a, 1)
	go writer(b, 2)
	go func() {
		defer wg.Done()
		for i := 0; i < 15; i++ {
			if _, err := e.st.Deliver(ctx, e.aliceID, "INBOX", []byte(testMessage(5000+i)), time.Now()); err != nil {
				report(err)
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		r := rand.New(rand.NewPCG(3, 1))
		for i := 0; i < 30; i++ {
			uid := uint32(r.IntN(80) + 1)
			op := []store.FlagOp{store.FlagsAdd, store.FlagsRemove}[r.IntN(2)]
			if _, err := e.st.StoreFlags(ctx, inbox.ID, []uint32{uid}, op, []string{store.FlagSeen, "$pop"}); err != nil {
				report(err)
				return
			}
			if i%10 == 9 {
				if _, err := e.st.Remove(ctx, inbox.ID, []uint32{uid}); err != nil {
					report(err)
					return
				}
			}
		}
	}()
	var rwg sync.WaitGroup
	rwg.Add(1)
	go func() {
		defer rwg.Done()
		all := goimap.SeqSet{goimap.SeqRange{Start: 1, Stop: 0}}
		for !stop.Load() {
			msgs, err := reader.Fetch(all, &goimap.FetchOptions{UID: true, Flags: true, Envelope: true,
				BodySection: []*goimap.FetchItemBodySection{{Peek: true}}}).Collect()
			if err != nil {
				report(err)
				return
			}
			for _, m := range msgs {
				body := m.FindBodySection(&goimap.FetchItemBodySection{Peek: true})
				if m.Envelope == nil && body == nil {
					// A FLAGS update another session caused, sent
					// before the tagged OK and collected with this FETCH.
					continue
				}
				if m.Envelope == nil || !strings.Contains(string(body), "Subject: "+m.Envelope.Subject) {
					report(fmt.Errorf("FETCH seq %d: envelope %v does not match body", m.SeqNum, m.Envelope))
					return
				}
			}
			if _, err := reader.Search(&goimap.SearchCriteria{Flag: []goimap.Flag{goimap.FlagFlagged}}, nil).Wait(); err != nil {
				report(err)
				return
			}
		}
	}()
	wg.Wait()
	stop.Store(true)
	rwg.Wait()
	select {
	case err := <-errc:
		t.Fatal(err)
	default:
	}
	// Let the watcher apply the last outside changes, then compare.
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, _ := e.st.Status(ctx, inbox.ID)
		e.srv.mbMu.Lock()
		mb := e.srv.mboxes[inbox.ID]
		e.srv.mbMu.Unlock()
		mb.mu.Lock()
		current := mb.modseq == st.HighestModSeq
		mb.mu.Unlock()
		if current || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	checkIndex(t, e, inbox.ID)
	want, err := e.st.Messages(ctx, inbox.ID)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range [...]*imapclient.Client{a, b, reader} {
		if err := c.Noop().Wait(); err != nil {
			t.Fatal(err)
		}
		got, err := c.Fetch(goimap.SeqSet{goimap.SeqRange{Start: 1, Stop: 0}}, &goimap.FetchOptions{UID: true, Flags: true, RFC822Size: true}).Collect()
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("session %d sees %d messages, store has %d", i, len(got), len(want))
		}
		for k, m := range got {
			var flags []string
			for _, f := range m.Flags {
				flags = append(flags, string(f))
			}
			slices.Sort(flags)
			if m.SeqNum != uint32(k+1) || uint32(m.UID) != want[k].UID || m.RFC822Size != want[k].Size || !slices.Equal(flags, want[k].Flags) {
				t.Fatalf("session %d seq %d: uid %d size %d flags %v; store uid %d size %d flags %v",
					i, m.SeqNum, m.UID, m.RFC822Size, flags, want[k].UID, want[k].Size, want[k].Flags)
			}
		}
		// SEARCH from the index agrees with the store.
		d, err := c.Search(&goimap.SearchCriteria{Flag: []goimap.Flag{goimap.FlagSeen}}, nil).Wait()
		if err != nil {
			t.Fatal(err)
		}
		var seen []uint32
		for k, m := range want {
			if slices.Contains(m.Flags, store.FlagSeen) {
				seen = append(seen, uint32(k+1))
			}
		}
		if got := d.AllSeqNums(); !slices.Equal(got, seen) && !(len(got) == 0 && len(seen) == 0) {
			t.Fatalf("session %d SEARCH SEEN = %v, store says %v", i, got, seen)
		}
	}
}

// TestReselectAndRecreate checks that a re-SELECT reuses the loaded
// mailbox state, that it survives the last session for the grace period,
// and that a deleted and recreated mailbox (whose row id may be reused)
// never inherits the old state.
func TestReselectAndRecreate(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	c := e.alice()
	if err := c.Create("Box", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		appendMsg(t, c, "Box", testMessage(i), nil)
	}
	box, err := e.st.Mailbox(ctx, e.aliceID, "Box")
	if err != nil {
		t.Fatal(err)
	}
	state := func() *mailboxState {
		e.srv.mbMu.Lock()
		defer e.srv.mbMu.Unlock()
		return e.srv.mboxes[box.ID]
	}
	sel, err := c.Select("Box", nil).Wait()
	if err != nil || sel.NumMessages != 3 {
		t.Fatal(sel, err)
	}
	first := state()
	if sel, err = c.Select("Box", nil).Wait(); err != nil || sel.NumMessages != 3 || state() != first {
		t.Fatalf("re-SELECT: %v %v, state reused: %v", sel, err, state() == first)
	}
	if err := c.Unselect().Wait(); err != nil {
		t.Fatal(err)
	}
	if state() != first {
		t.Fatal("state dropped at once after the last session left")
	}
	// A delivery while nobody has it selected still reaches the index.
	if _, err := e.st.Append(ctx, box.ID, strings.NewReader(testMessage(9)), store.AppendOptions{}); err != nil {
		t.Fatal(err)
	}
	if sel, err = c.Select("Box", nil).Wait(); err != nil || sel.NumMessages != 4 || state() != first {
		t.Fatalf("SELECT within the grace period: %v %v", sel, err)
	}
	checkIndex(t, e, box.ID)
	if err := c.Unselect().Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete("Box").Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Create("Box", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	sel, err = c.Select("Box", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sel.NumMessages != 0 || sel.UIDValidity == first.uidValidity {
		t.Fatalf("recreated mailbox: %d messages, UIDVALIDITY %d (old %d)", sel.NumMessages, sel.UIDValidity, first.uidValidity)
	}
	appendMsg(t, c, "Box", testMessage(1), nil)
	if err := c.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	got, err := c.Fetch(goimap.SeqSetNum(1), &goimap.FetchOptions{UID: true, Envelope: true}).Collect()
	if err != nil || len(got) != 1 || got[0].UID != 1 || got[0].Envelope.Subject != "message number 1" {
		t.Fatalf("FETCH in recreated mailbox: %v %v", got, err)
	}
}

func TestHeaderCache(t *testing.T) {
	c := newHeaderCache(3 * (100 + 2 + hdrItemOverhead))
	h := func(i int) []byte { return bytes.Repeat([]byte{byte('a' + i)}, 100) }
	for i := 0; i < 3; i++ {
		c.put(fmt.Sprintf("k%d", i), h(i))
	}
	if got, ok := c.get("k0"); !ok || !bytes.Equal(got, h(0)) {
		t.Fatal("k0 missing")
	}
	// k1 is now the least recently used and goes first.
	c.put("k3", h(3))
	if _, ok := c.get("k1"); ok {
		t.Fatal("k1 not evicted")
	}
	for _, k := range []string{"k0", "k2", "k3"} {
		if _, ok := c.get(k); !ok {
			t.Fatalf("%s evicted", k)
		}
	}
	if c.size > c.max {
		t.Fatalf("size %d over budget %d", c.size, c.max)
	}
	c.put("huge", make([]byte, maxCachedHeader+1))
	if _, ok := c.get("huge"); ok {
		t.Fatal("oversized header cached")
	}
}

// TestMayContain checks the SEARCH HEADER prefilter against the full
// parse: whenever it says no, no decoded field value may match.
func TestMayContain(t *testing.T) {
	headers := []string{
		"Subject: benchmark message number 5000\r\nFrom: a@b\r\n\r\n",
		"Subject: benchmark message\r\n number 5000\r\n\r\n",
		"Subject: benchmark message\r\n\tnumber 5000\r\n\r\n",
		"Subject: =?utf-8?q?number_5000?=\r\n\r\n",
		"Subject: =?utf-8?b?bnVtYmVyIDUwMDA=?=\r\n\r\n",
		"Subject: Nümber 5000\r\n\r\n",
		"Subject: NUMBER   5000\r\n\r\n",
		"Subject: \u212aelvin\r\n\r\n",
		"Subject: other\r\nX-Note: number 5000\r\n\r\n",
		"No-Colon-Line\r\nSubject: number 5000\r\n\r\n",
		"Subject: number\r\n\r\nbody 5000\r\n",
		"Subject: number 50\r\n 00\r\n\r\n",
	}
	patterns := []string{"number 5000", "NUMBER 5000", "number  5000", "5000", "kelvin", "nümber", "number", "er 50", " number"}
	for _, hs := range headers {
		th, _ := textproto.ReadHeader(bufio.NewReader(strings.NewReader(hs)))
		h := mail.Header{Header: gomessage.Header{Header: th}}
		for _, p := range patterns {
			full := matchHeaderFields(h.FieldsByKey("Subject"), p)
			if full && !mayContain([]byte(hs), p) {
				t.Errorf("header %q pattern %q: prefilter rejects a match", hs, p)
			}
		}
	}
	if mayContain([]byte("Subject: number 4999\r\n\r\n"), "number 5000") {
		t.Error("prefilter passes an ASCII header without the pattern")
	}
	if mayContain(nil, "x") {
		t.Error("prefilter passes an unreadable message")
	}
}

// TestFetchBatching fetches many messages in one command (written in
// batches by the guard) and checks every body arrives intact before the
// tagged response, that the batch buffer is released afterwards, and that
// an IDLE update right after is not held back.
func TestFetchBatching(t *testing.T) {
	e := newEnv(t)
	c := e.alice()
	var want []string
	for i := 0; i < 60; i++ {
		msg := testMessage(i) + strings.Repeat(fmt.Sprintf("filler line %d\r\n", i), 200)
		want = append(want, msg)
		appendMsg(t, c, "INBOX", msg, nil)
	}
	ub := newUpdates()
	r := e.client(alice, alicePass, ub.handler())
	if _, err := r.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	body := &goimap.FetchItemBodySection{Peek: true}
	got, err := r.Fetch(goimap.SeqSet{goimap.SeqRange{Start: 1, Stop: 0}}, &goimap.FetchOptions{UID: true, BodySection: []*goimap.FetchItemBodySection{body}}).Collect()
	if err != nil || len(got) != len(want) {
		t.Fatalf("FETCH 1:*: %d messages, %v", len(got), err)
	}
	for i, m := range got {
		if string(m.FindBodySection(body)) != want[i] {
			t.Fatalf("message %d differs", i+1)
		}
	}
	e.srv.mu.Lock()
	for ss := range e.srv.sessions {
		ss.g.wmu.Lock()
		if ss.g.batching || ss.g.wbuf != nil {
			t.Errorf("session still batching (%v) or holding %d bytes", ss.g.batching, len(ss.g.wbuf))
		}
		ss.g.wmu.Unlock()
	}
	e.srv.mu.Unlock()
	idle, err := r.Idle()
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	appendMsg(t, c, "INBOX", testMessage(99), nil)
	ub.wait(t, notifyWait, func() bool { return slices.Contains(ub.exists, 61) })
}
