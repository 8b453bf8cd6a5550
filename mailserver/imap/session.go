package imap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-sasl"

	"mailconf/mailserver/accounts"
	"mailconf/mailserver/store"
)

// cmdTimeout bounds the store work of one command.
const cmdTimeout = 2 * time.Minute

// session is one connection's IMAP session.
type session struct {
	srv  *Server
	conn *imapserver.Conn
	g    *guardConn
	ip   netip.Addr

	acct        store.Account
	authed      bool
	releaseAcct func()

	sel *selection // nil unless a mailbox is selected
}

var (
	_ imapserver.SessionIMAP4rev2      = (*session)(nil)
	_ imapserver.SessionAppendLimit    = (*session)(nil)
	_ imapserver.SessionSASL           = (*session)(nil)
	_ imapserver.SessionUnauthenticate = (*session)(nil)
)

func (s *Server) newSession(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
	g, ok := c.NetConn().(*guardConn)
	if !ok {
		return nil, nil, &goimap.Error{Type: goimap.StatusResponseTypeBye, Text: "Internal error"}
	}
	ss := &session{srv: s, conn: c, g: g, ip: remoteIP(g)}
	s.mu.Lock()
	closed := s.closed
	if !closed {
		s.sessions[ss] = struct{}{}
	}
	s.mu.Unlock()
	if closed {
		return nil, nil, &goimap.Error{Type: goimap.StatusResponseTypeBye, Text: "Server shutting down"}
	}
	return ss, nil, nil
}

func (ss *session) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), cmdTimeout)
}

func (ss *session) Close() error {
	if ss.sel != nil {
		ss.sel.close()
		ss.sel = nil
	}
	if ss.releaseAcct != nil {
		ss.releaseAcct()
	}
	ss.srv.mu.Lock()
	delete(ss.srv.sessions, ss)
	ss.srv.mu.Unlock()
	return nil
}

func (ss *session) Login(username, password string) error {
	if ss.authed {
		return &goimap.Error{Type: goimap.StatusResponseTypeBad, Text: "Already logged in"}
	}
	ctx, cancel := ss.ctx()
	defer cancel()
	acct, err := ss.srv.auth.Authenticate(ctx, "imap", ss.ip, username, password)
	switch {
	case err == nil:
	case errors.Is(err, accounts.ErrTemporary):
		return &goimap.Error{Type: goimap.StatusResponseTypeNo, Code: goimap.ResponseCodeUnavailable, Text: "Authentication temporarily unavailable"}
	case errors.Is(err, accounts.ErrThrottled):
		return &goimap.Error{Type: goimap.StatusResponseTypeNo, Code: goimap.ResponseCodeAuthenticationFailed, Text: "Too many failed logins, try again later"}
	default:
		return imapserver.ErrAuthFailed
	}
	release, ok := ss.srv.acquireAccount(acct.ID)
	if !ok {
		ss.srv.log.Warn("imap: too many sessions for account", "account", acct.Address, "ip", ss.ip.String())
		return &goimap.Error{Type: goimap.StatusResponseTypeNo, Code: goimap.ResponseCodeLimit, Text: "Too many sessions for this account"}
	}
	ss.acct, ss.authed, ss.releaseAcct = acct, true, release
	ss.g.authed.Store(true)
	return nil
}

func (ss *session) AuthenticateMechanisms() []string { return []string{sasl.Plain} }

func (ss *session) Authenticate(mech string) (sasl.Server, error) {
	if !strings.EqualFold(mech, sasl.Plain) {
		return nil, &goimap.Error{Type: goimap.StatusResponseTypeNo, Text: "Unsupported authentication mechanism"}
	}
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if identity != "" && !strings.EqualFold(identity, username) {
			return &goimap.Error{Type: goimap.StatusResponseTypeNo, Code: goimap.ResponseCodeAuthorizationFailed, Text: "Authorization identity must match the login"}
		}
		return ss.Login(username, password)
	}), nil
}

func (ss *session) Unauthenticate() error {
	if ss.sel != nil {
		ss.sel.close()
		ss.sel = nil
	}
	if ss.releaseAcct != nil {
		ss.releaseAcct()
		ss.releaseAcct = nil
	}
	ss.acct, ss.authed = store.Account{}, false
	ss.g.authed.Store(false)
	return nil
}

func (ss *session) AppendLimit() uint32 { return uint32(ss.srv.cfg.AppendLimit) }

// imapError turns a store error into the IMAP answer.
func imapError(err error) error {
	var ie *goimap.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ie):
		return err
	case errors.Is(err, store.ErrNoMailbox):
		return &goimap.Error{Type: goimap.StatusResponseTypeNo, Code: goimap.ResponseCodeNonExistent, Text: "No such mailbox"}
	case errors.Is(err, store.ErrExists):
		return &goimap.Error{Type: goimap.StatusResponseTypeNo, Code: goimap.ResponseCodeAlreadyExists, Text: "Mailbox already exists"}
	case errors.Is(err, store.ErrHasChildren):
		return &goimap.Error{Type: goimap.StatusResponseTypeNo, Code: goimap.ResponseCodeHasChildren, Text: "Mailbox has children; delete them first"}
	case errors.Is(err, store.ErrInboxReserved):
		return &goimap.Error{Type: goimap.StatusResponseTypeNo, Code: goimap.ResponseCodeCannot, Text: "INBOX cannot be deleted or replaced"}
	case errors.Is(err, store.ErrBadName):
		return &goimap.Error{Type: goimap.StatusResponseTypeNo, Code: goimap.ResponseCodeCannot, Text: "Invalid mailbox name"}
	case errors.Is(err, store.ErrBadFlag):
		return &goimap.Error{Type: goimap.StatusResponseTypeBad, Code: goimap.ResponseCodeClientBug, Text: "Invalid flag"}
	case errors.Is(err, store.ErrTooBig):
		return &goimap.Error{Type: goimap.StatusResponseTypeNo, Code: goimap.ResponseCodeTooBig, Text: "Message too large"}
	case errors.Is(err, context.DeadlineExceeded):
		return &goimap.Error{Type: goimap.StatusResponseTypeNo, Code: goimap.ResponseCodeUnavailable, Text: "Server busy, try again"}
	}
	return err
}

func errReadOnly() error {
	return &goimap.Error{Type: goimap.StatusResponseTypeNo, Code: "READ-ONLY", Text: "Mailbox is read-only (EXAMINE)"}
}

func (ss *session) mailbox(ctx context.Context, name string) (store.Mailbox, error) {
	m, err := ss.srv.st.Mailbox(ctx, ss.acct.ID, name)
	return m, imapError(err)
}

func specialUseFromAttrs(attrs []goimap.MailboxAttr) (string, error) {
	switch len(attrs) {
	case 0:
		return "", nil
	case 1:
		switch a := string(attrs[0]); strings.ToLower(a) {
		case `\all`, `\archive`, `\drafts`, `\flagged`, `\junk`, `\sent`, `\trash`:
			return `\` + strings.ToUpper(a[1:2]) + strings.ToLower(a[2:]), nil
		}
	}
	return "", &goimap.Error{Type: goimap.StatusResponseTypeNo, Code: "USEATTR", Text: "Unsupported special-use attribute"}
}

func (ss *session) Create(name string, opts *goimap.CreateOptions) error {
	ctx, cancel := ss.ctx()
	defer cancel()
	name = strings.TrimSuffix(name, store.Delimiter)
	var su string
	if opts != nil {
		var err error
		if su, err = specialUseFromAttrs(opts.SpecialUse); err != nil {
			return err
		}
	}
	_, err := ss.srv.st.CreateMailbox(ctx, ss.acct.ID, name, su)
	return imapError(err)
}

func (ss *session) Delete(name string) error {
	ctx, cancel := ss.ctx()
	defer cancel()
	return imapError(ss.srv.st.DeleteMailbox(ctx, ss.acct.ID, name))
}

func (ss *session) Rename(oldName, newName string, _ *goimap.RenameOptions) error {
	ctx, cancel := ss.ctx()
	defer cancel()
	return imapError(ss.srv.st.RenameMailbox(ctx, ss.acct.ID, oldName, strings.TrimSuffix(newName, store.Delimiter)))
}

func (ss *session) Subscribe(name string) error {
	ctx, cancel := ss.ctx()
	defer cancel()
	return imapError(ss.srv.st.SetSubscribed(ctx, ss.acct.ID, name, true))
}

func (ss *session) Unsubscribe(name string) error {
	ctx, cancel := ss.ctx()
	defer cancel()
	return imapError(ss.srv.st.SetSubscribed(ctx, ss.acct.ID, name, false))
}

func (ss *session) Namespace() (*goimap.NamespaceData, error) {
	return &goimap.NamespaceData{
		Personal: []goimap.NamespaceDescriptor{{Prefix: "", Delim: '/'}},
	}, nil
}

func (ss *session) List(w *imapserver.ListWriter, ref string, patterns []string, opts *goimap.ListOptions) error {
	if len(patterns) == 0 {
		return w.WriteList(&goimap.ListData{Attrs: []goimap.MailboxAttr{goimap.MailboxAttrNoSelect}, Delim: '/', Mailbox: ""})
	}
	if opts == nil {
		opts = &goimap.ListOptions{}
	}
	ctx, cancel := ss.ctx()
	defer cancel()
	boxes, err := ss.srv.st.Mailboxes(ctx, ss.acct.ID)
	if err != nil {
		return imapError(err)
	}
	byName := make(map[string]*store.Mailbox, len(boxes))
	hasChildren := map[string]bool{}
	subscribedChild := map[string]bool{}
	for i := range boxes {
		b := &boxes[i]
		byName[b.Name] = b
		if i := strings.LastIndex(b.Name, store.Delimiter); i > 0 {
			for p := b.Name[:i]; ; {
				hasChildren[p] = true
				if b.Subscribed {
					subscribedChild[p] = true
				}
				j := strings.LastIndex(p, store.Delimiter)
				if j <= 0 {
					break
				}
				p = p[:j]
			}
		}
	}
	for _, b := range boxes {
		matched := false
		for _, pat := range patterns {
			if imapserver.MatchList(b.Name, '/', ref, pat) {
				matched = true
				break
			}
		}
		// RFC 5258 §3.5 RECURSIVEMATCH: a parent that matches and has a
		// subscribed child is listed with CHILDINFO.
		childInfo := opts.SelectSubscribed && opts.SelectRecursiveMatch && subscribedChild[b.Name]
		if !matched {
			continue
		}
		if opts.SelectSubscribed && !b.Subscribed && !childInfo {
			continue
		}
		if opts.SelectSpecialUse && b.SpecialUse == "" {
			continue
		}
		data := &goimap.ListData{Delim: '/', Mailbox: b.Name}
		if hasChildren[b.Name] {
			data.Attrs = append(data.Attrs, goimap.MailboxAttrHasChildren)
		} else {
			data.Attrs = append(data.Attrs, goimap.MailboxAttrHasNoChildren)
		}
		if b.Subscribed && (opts.ReturnSubscribed || opts.SelectSubscribed) {
			data.Attrs = append(data.Attrs, goimap.MailboxAttrSubscribed)
		}
		if b.SpecialUse != "" {
			// Always shown: clients that do not ask still benefit, and
			// RFC 6154 §2 allows it in plain LIST.
			data.Attrs = append(data.Attrs, goimap.MailboxAttr(b.SpecialUse))
		}
		if childInfo {
			data.ChildInfo = &goimap.ListDataChildInfo{Subscribed: true}
		}
		if opts.ReturnStatus != nil {
			st, err := ss.srv.st.Status(ctx, b.ID)
			if err == nil {
				data.Status = ss.statusData(b.Name, st, opts.ReturnStatus)
			}
		}
		if err := w.WriteList(data); err != nil {
			return err
		}
	}
	return nil
}

func (ss *session) statusData(name string, st store.Status, opts *goimap.StatusOptions) *goimap.StatusData {
	d := &goimap.StatusData{Mailbox: name}
	u32 := func(n int) *uint32 { v := uint32(n); return &v }
	if opts.NumMessages {
		d.NumMessages = u32(st.Messages)
	}
	if opts.NumRecent {
		d.NumRecent = u32(0)
	}
	if opts.UIDNext {
		d.UIDNext = goimap.UID(st.UIDNext)
	}
	if opts.UIDValidity {
		d.UIDValidity = st.UIDValidity
	}
	if opts.NumUnseen {
		d.NumUnseen = u32(st.Unseen)
	}
	if opts.NumDeleted {
		d.NumDeleted = u32(st.Deleted)
	}
	if opts.Size {
		size := st.Size
		d.Size = &size
	}
	if opts.AppendLimit {
		d.AppendLimit = u32(int(ss.srv.cfg.AppendLimit))
	}
	return d
}

func (ss *session) Status(name string, opts *goimap.StatusOptions) (*goimap.StatusData, error) {
	ctx, cancel := ss.ctx()
	defer cancel()
	m, err := ss.mailbox(ctx, name)
	if err != nil {
		return nil, err
	}
	st, err := ss.srv.st.Status(ctx, m.ID)
	if err != nil {
		return nil, imapError(err)
	}
	return ss.statusData(m.Name, st, opts), nil
}

func flagStrings(flags []goimap.Flag) []string {
	out := make([]string, 0, len(flags))
	for _, f := range flags {
		out = append(out, string(f))
	}
	return out
}

func imapFlags(flags []string) []goimap.Flag {
	out := make([]goimap.Flag, len(flags))
	for i, f := range flags {
		out[i] = goimap.Flag(f)
	}
	return out
}

func (ss *session) Append(name string, r goimap.LiteralReader, opts *goimap.AppendOptions) (*goimap.AppendData, error) {
	ctx, cancel := ss.ctx()
	defer cancel()
	m, err := ss.srv.st.Mailbox(ctx, ss.acct.ID, name)
	if errors.Is(err, store.ErrNoMailbox) {
		return nil, &goimap.Error{Type: goimap.StatusResponseTypeNo, Code: goimap.ResponseCodeTryCreate, Text: "No such mailbox"}
	} else if err != nil {
		return nil, imapError(err)
	}
	if r.Size() > ss.srv.cfg.AppendLimit {
		return nil, imapError(store.ErrTooBig)
	}
	var so store.AppendOptions
	if opts != nil {
		so.Flags, so.Date = flagStrings(opts.Flags), opts.Time
	}
	// The selected mailbox's lock is held across the write when the
	// target is selected here, so this session's own EXISTS comes from
	// its own sync rather than racing the watcher.
	var res store.AppendResult
	if sel := ss.sel; sel != nil && sel.mb.id == m.ID {
		sel.mb.mu.Lock()
		res, err = ss.srv.st.Append(ctx, m.ID, io.LimitReader(r, r.Size()), so)
		if err == nil {
			sel.mb.syncLocked(ctx, nil)
		}
		sel.mb.mu.Unlock()
	} else {
		res, err = ss.srv.st.Append(ctx, m.ID, io.LimitReader(r, r.Size()), so)
	}
	if err != nil {
		return nil, imapError(err)
	}
	if ss.srv.cfg.Metrics != nil {
		ss.srv.cfg.Metrics.Messages.WithLabelValues("in").Inc()
	}
	return &goimap.AppendData{UID: goimap.UID(res.UID), UIDValidity: res.UIDValidity}, nil
}

func (ss *session) Select(name string, opts *goimap.SelectOptions) (*goimap.SelectData, error) {
	// The old selection is closed after the new one is open, so a
	// re-SELECT of the same mailbox keeps its shared state loaded; a failed
	// SELECT still leaves nothing selected (RFC 9051 §6.3.2).
	old := ss.sel
	ss.sel = nil
	if old != nil {
		defer old.close()
	}
	ctx, cancel := ss.ctx()
	defer cancel()
	m, err := ss.mailbox(ctx, name)
	if err != nil {
		return nil, err
	}
	readOnly := opts != nil && opts.ReadOnly
	sel, data, err := ss.srv.openSelection(ctx, m, readOnly)
	if err != nil {
		return nil, imapError(err)
	}
	ss.sel = sel
	return data, nil
}

func (ss *session) Unselect() error {
	if ss.sel != nil {
		ss.sel.close()
		ss.sel = nil
	}
	return nil
}

func (ss *session) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	if ss.sel == nil {
		return nil
	}
	return ss.sel.tracker.Poll(w, allowExpunge)
}

func (ss *session) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	if ss.sel == nil {
		<-stop
		return nil
	}
	return ss.sel.tracker.Idle(w, stop)
}

func (ss *session) selected() (*selection, error) {
	if ss.sel == nil {
		return nil, &goimap.Error{Type: goimap.StatusResponseTypeBad, Text: "No mailbox selected"}
	}
	return ss.sel, nil
}

func internalErr(op string, err error) error {
	return fmt.Errorf("imap: %s: %w", op, err)
}
