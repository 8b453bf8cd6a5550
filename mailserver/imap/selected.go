package imap

import (
	"context"
	"errors"
	"slices"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"mailconf/mailserver/store"
)

// target is one message a command addresses, with a copy of its index
// entry taken under the mailbox lock (entries are never changed in place
// by others: flag lists are replaced, not mutated).
type target struct {
	seq uint32 // in the client's view (0: not visible to the client)
	uid uint32
	e   store.IndexEntry
}

// clientMaxLocked is the highest sequence number the client knows of,
// which "*" stands for in a sequence set.
func (sel *selection) clientMaxLocked() uint32 {
	for i := len(sel.mb.entries); i > 0; i-- {
		if c := sel.tracker.EncodeSeqNum(uint32(i)); c != 0 {
			return c
		}
	}
	return 0
}

// resolveLocked turns a sequence or UID set into targets in ascending
// order, in the client's view; mb.mu must be held.
func (sel *selection) resolveLocked(set goimap.NumSet) []target {
	entries := sel.mb.entries
	at := func(i int) target {
		return target{seq: sel.tracker.EncodeSeqNum(uint32(i + 1)), uid: entries[i].UID, e: entries[i]}
	}
	if goimap.IsSearchRes(set) {
		var out []target
		for _, u := range sel.searchRes {
			if i, ok := sel.mb.indexOf(u); ok {
				out = append(out, at(i))
			}
		}
		return out
	}
	switch set := set.(type) {
	case goimap.SeqSet:
		max := sel.clientMaxLocked()
		n := 0 // sized up front, as for UIDs below
		for _, r := range set {
			if start, stop := staticRange(r.Start, r.Stop, max); start != 0 {
				n = min(n+int(min(uint64(len(entries)), uint64(stop-start)+1)), len(entries))
			}
		}
		out := make([]target, 0, n)
		for _, r := range set {
			start, stop := staticRange(r.Start, r.Stop, max)
			if start == 0 {
				continue
			}
			for c := start; c <= stop && c <= max; c++ {
				if sv := sel.tracker.DecodeSeqNum(c); sv != 0 && int(sv) <= len(entries) {
					out = append(out, target{seq: c, uid: entries[sv-1].UID, e: entries[sv-1]})
				}
				if c == ^uint32(0) {
					break
				}
			}
		}
		return sortedByUID(out)
	case goimap.UIDSet:
		max := sel.mb.maxUIDLocked()
		// Sized up front (SEARCH resolves 1:* every time, and a mailbox of
		// 10,000 messages otherwise regrows the slice a dozen times); a
		// range holds at most as many messages as UIDs and as entries
		// from its start on.
		n := 0
		for _, r := range set {
			start, stop := staticRange(uint32(r.Start), uint32(r.Stop), max)
			if start == 0 {
				continue
			}
			i, _ := sel.mb.indexOf(start)
			n = min(n+int(min(uint64(len(entries)-i), uint64(stop-start)+1)), len(entries))
		}
		out := make([]target, 0, n)
		for _, r := range set {
			start, stop := staticRange(uint32(r.Start), uint32(r.Stop), max)
			if start == 0 {
				continue
			}
			i, _ := sel.mb.indexOf(start)
			for ; i < len(entries) && entries[i].UID <= stop; i++ {
				out = append(out, at(i))
			}
		}
		return sortedByUID(out)
	}
	return nil
}

// sortedByUID orders targets by UID and drops repeats. UID order is the
// client's sequence order too (both follow the index), and the order the
// callers merge store results in.
func sortedByUID(out []target) []target {
	cmp := func(a, b target) int { return cmpUID(a.uid, b.uid) }
	if !slices.IsSortedFunc(out, cmp) {
		slices.SortFunc(out, cmp)
	}
	return slices.CompactFunc(out, func(a, b target) bool { return a.uid == b.uid })
}

// staticRange replaces "*" (0) by max and orders the bounds.
func staticRange(start, stop, max uint32) (uint32, uint32) {
	if start == 0 {
		start = max
	}
	if stop == 0 {
		stop = max
	}
	if start > stop {
		start, stop = stop, start
	}
	return start, stop
}

func targetUIDs(ts []target) []uint32 {
	out := make([]uint32, len(ts))
	for i, t := range ts {
		out[i] = t.uid
	}
	return out
}

func (ss *session) Store(w *imapserver.FetchWriter, set goimap.NumSet, flags *goimap.StoreFlags, opts *goimap.StoreOptions) error {
	sel, err := ss.selected()
	if err != nil {
		return err
	}
	if sel.readOnly {
		return errReadOnly()
	}
	var op store.FlagOp
	switch flags.Op {
	case goimap.StoreFlagsSet:
		op = store.FlagsSet
	case goimap.StoreFlagsAdd:
		op = store.FlagsAdd
	case goimap.StoreFlagsDel:
		op = store.FlagsRemove
	default:
		return &goimap.Error{Type: goimap.StatusResponseTypeBad, Text: "Unknown STORE operation"}
	}
	ctx, cancel := ss.ctx()
	defer cancel()
	mb := sel.mb
	mb.mu.Lock()
	// Others' changes first (so the set is resolved against the current
	// view); storeFlagsLocked tags our own changes with our tracker.
	mb.syncLocked(ctx, nil)
	ts := sel.resolveLocked(set)
	infos, err := mb.storeFlagsLocked(ctx, targetUIDs(ts), op, flagStrings(flags.Flags), sel.tracker)
	mb.mu.Unlock()
	if err != nil {
		return imapError(err)
	}
	if flags.Silent {
		return nil
	}
	// Both lists are in UID order.
	k := 0
	for _, t := range ts {
		for k < len(infos) && infos[k].UID < t.uid {
			k++
		}
		if k == len(infos) || infos[k].UID != t.uid || t.seq == 0 {
			continue
		}
		f := infos[k].Flags
		rw := w.CreateMessage(t.seq)
		rw.WriteUID(goimap.UID(t.uid))
		rw.WriteFlags(imapFlags(f))
		if err := rw.Close(); err != nil {
			return err
		}
	}
	return nil
}

func (ss *session) Expunge(w *imapserver.ExpungeWriter, uids *goimap.UIDSet) error {
	sel, err := ss.selected()
	if err != nil {
		return err
	}
	// CLOSE calls Expunge with a writer that writes nothing; CLOSE on an
	// EXAMINEd mailbox must not expunge (RFC 9051 §6.4.1), EXPUNGE there
	// is refused.
	isClose := *w == imapserver.ExpungeWriter{}
	if sel.readOnly {
		if isClose {
			return nil
		}
		return errReadOnly()
	}
	ctx, cancel := ss.ctx()
	defer cancel()
	mb := sel.mb
	mb.mu.Lock()
	defer mb.mu.Unlock()
	var which []uint32
	if uids != nil {
		which = targetUIDs(sel.resolveLocked(*uids))
		if len(which) == 0 {
			return nil
		}
	}
	if _, err := ss.srv.st.Expunge(ctx, mb.id, which); err != nil {
		return imapError(err)
	}
	// The EXPUNGE responses reach this session through its tracker in
	// the Poll that follows the command.
	mb.syncLocked(ctx, nil)
	return nil
}

func (ss *session) copyTarget(ctx context.Context, dest string) (store.Mailbox, error) {
	m, err := ss.srv.st.Mailbox(ctx, ss.acct.ID, dest)
	if errors.Is(err, store.ErrNoMailbox) {
		return m, &goimap.Error{Type: goimap.StatusResponseTypeNo, Code: goimap.ResponseCodeTryCreate, Text: "No such mailbox"}
	}
	return m, imapError(err)
}

func copyData(res store.CopyResult) *goimap.CopyData {
	d := &goimap.CopyData{UIDValidity: res.UIDValidity}
	for i := range res.SrcUIDs {
		d.SourceUIDs.AddNum(goimap.UID(res.SrcUIDs[i]))
		d.DestUIDs.AddNum(goimap.UID(res.DstUIDs[i]))
	}
	return d
}

func (ss *session) Copy(set goimap.NumSet, dest string) (*goimap.CopyData, error) {
	sel, err := ss.selected()
	if err != nil {
		return nil, err
	}
	ctx, cancel := ss.ctx()
	defer cancel()
	dst, err := ss.copyTarget(ctx, dest)
	if err != nil {
		return nil, err
	}
	mb := sel.mb
	mb.mu.Lock()
	defer mb.mu.Unlock()
	ts := sel.resolveLocked(set)
	res, err := ss.srv.st.Copy(ctx, mb.id, targetUIDs(ts), dst.ID)
	if err != nil {
		return nil, imapError(err)
	}
	if dst.ID == mb.id {
		mb.syncLocked(ctx, nil)
	}
	return copyData(res), nil
}

func (ss *session) Move(w *imapserver.MoveWriter, set goimap.NumSet, dest string) error {
	sel, err := ss.selected()
	if err != nil {
		return err
	}
	if sel.readOnly {
		return errReadOnly()
	}
	ctx, cancel := ss.ctx()
	defer cancel()
	dst, err := ss.copyTarget(ctx, dest)
	if err != nil {
		return err
	}
	mb := sel.mb
	if dst.ID == mb.id {
		return &goimap.Error{Type: goimap.StatusResponseTypeNo, Code: goimap.ResponseCodeCannot, Text: "Source and destination are the same mailbox"}
	}
	mb.mu.Lock()
	ts := sel.resolveLocked(set)
	res, err := ss.srv.st.Move(ctx, mb.id, targetUIDs(ts), dst.ID)
	if err == nil {
		mb.syncLocked(ctx, nil)
	}
	mb.mu.Unlock()
	if err != nil {
		return imapError(err)
	}
	// COPYUID now; the EXPUNGEs follow from the tracker in the Poll
	// before the tagged OK (RFC 6851 §4.3).
	if len(res.SrcUIDs) == 0 {
		return nil
	}
	return w.WriteCopyData(copyData(res))
}
