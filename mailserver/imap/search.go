package imap

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"

	"mailconf/mailserver/store"
)

// maxSearchParts bounds how many MIME parts one message may contribute
// to a BODY/TEXT search (deeply nested or huge multiparts).
const maxSearchParts = 200

func (ss *session) Search(kind imapserver.NumKind, criteria *goimap.SearchCriteria, opts *goimap.SearchOptions) (*goimap.SearchData, error) {
	sel, err := ss.selected()
	if err != nil {
		return nil, err
	}
	ctx, cancel := ss.ctx()
	defer cancel()
	mb := sel.mb
	mb.mu.Lock()
	all := sel.resolveLocked(goimap.UIDSet{goimap.UIDRange{Start: 1, Stop: 0}})
	sel.staticCriteriaLocked(criteria)
	mb.mu.Unlock()
	all, err = ss.withInfo(ctx, sel, all)
	if err != nil {
		return nil, imapError(err)
	}
	data := &goimap.SearchData{}
	var seqs goimap.SeqSet
	var uids goimap.UIDSet
	var saved []uint32
	for _, t := range all {
		m := &searchMsg{t: t, ss: ss, sel: sel}
		ok := m.match(criteria)
		m.close()
		if !ok {
			continue
		}
		saved = append(saved, t.uid)
		var num uint32
		switch kind {
		case imapserver.NumKindSeq:
			if t.seq == 0 {
				continue
			}
			seqs.AddNum(t.seq)
			num = t.seq
		default:
			uids.AddNum(goimap.UID(t.uid))
			num = t.uid
		}
		if data.Min == 0 || num < data.Min {
			data.Min = num
		}
		if num > data.Max {
			data.Max = num
		}
		data.Count++
	}
	if kind == imapserver.NumKindSeq {
		data.All = seqs
	} else {
		data.All = uids
	}
	if opts != nil && opts.ReturnSave {
		sel.searchRes = saved
	}
	return data, nil
}

// staticCriteriaLocked resolves "*" and "$" in the criteria's number sets
// against the client's view.
func (sel *selection) staticCriteriaLocked(c *goimap.SearchCriteria) {
	var seqSets []goimap.SeqSet
	for _, set := range c.SeqNum {
		if goimap.IsSearchRes(set) {
			c.UID = append(c.UID, sel.savedSet())
			continue
		}
		max := sel.clientMaxLocked()
		out := make(goimap.SeqSet, 0, len(set))
		for _, r := range set {
			a, b := staticRange(r.Start, r.Stop, max)
			out = append(out, goimap.SeqRange{Start: a, Stop: b})
		}
		seqSets = append(seqSets, out)
	}
	c.SeqNum = seqSets
	var maxUID uint32
	if n := len(sel.mb.uids); n > 0 {
		maxUID = sel.mb.uids[n-1]
	}
	for i, set := range c.UID {
		if goimap.IsSearchRes(set) {
			c.UID[i] = sel.savedSet()
			continue
		}
		out := make(goimap.UIDSet, 0, len(set))
		for _, r := range set {
			a, b := staticRange(uint32(r.Start), uint32(r.Stop), maxUID)
			out = append(out, goimap.UIDRange{Start: goimap.UID(a), Stop: goimap.UID(b)})
		}
		c.UID[i] = out
	}
	for i := range c.Not {
		sel.staticCriteriaLocked(&c.Not[i])
	}
	for i := range c.Or {
		sel.staticCriteriaLocked(&c.Or[i][0])
		sel.staticCriteriaLocked(&c.Or[i][1])
	}
}

// savedSet is the SEARCHRES result as a UID set; an empty result becomes
// a set no message is in (UID 4294967295 is never assigned here).
func (sel *selection) savedSet() goimap.UIDSet {
	var u goimap.UIDSet
	for _, x := range sel.searchRes {
		u.AddNum(goimap.UID(x))
	}
	if len(u) == 0 {
		u = goimap.UIDSet{goimap.UIDRange{Start: 0xFFFFFFFF, Stop: 0xFFFFFFFF}}
	}
	return u
}

// searchMsg evaluates criteria against one message, opening its body only
// when a criterion needs it.
type searchMsg struct {
	t      target
	ss     *session
	sel    *selection
	body   *store.Body
	header *mail.Header
	failed bool
}

func (m *searchMsg) close() {
	if m.body != nil {
		m.body.Close()
	}
}

func (m *searchMsg) open() bool {
	if m.body != nil {
		return true
	}
	if m.failed {
		return false
	}
	ctx, cancel := m.ss.ctx()
	defer cancel()
	b, err := m.ss.srv.st.OpenMessage(ctx, m.sel.mb.id, m.t.uid)
	if err != nil {
		m.failed = true
		return false
	}
	m.body = b
	return true
}

func (m *searchMsg) hdr() *mail.Header {
	if m.header != nil {
		return m.header
	}
	h := mail.Header{}
	if m.open() {
		th, _ := textproto.ReadHeader(bufio.NewReader(io.NewSectionReader(m.body, 0, headerEnd(m.body))))
		h = mail.Header{Header: gomessage.Header{Header: th}}
	}
	m.header = &h
	return m.header
}

func (m *searchMsg) entity() *gomessage.Entity {
	if !m.open() {
		return nil
	}
	e, _ := gomessage.Read(io.NewSectionReader(m.body, 0, m.body.Size()))
	return e
}

func hasFlag(flags []string, f goimap.Flag) bool {
	for _, x := range flags {
		if strings.EqualFold(x, string(f)) {
			return true
		}
	}
	return false
}

func (m *searchMsg) match(c *goimap.SearchCriteria) bool {
	info := m.t.info
	for _, set := range c.SeqNum {
		if m.t.seq == 0 || !set.Contains(m.t.seq) {
			return false
		}
	}
	for _, set := range c.UID {
		if !set.Contains(goimap.UID(m.t.uid)) {
			return false
		}
	}
	if !matchDate(info.InternalDate, c.Since, c.Before) {
		return false
	}
	for _, f := range c.Flag {
		if strings.EqualFold(string(f), `\Recent`) {
			return false
		}
		if !hasFlag(info.Flags, f) {
			return false
		}
	}
	for _, f := range c.NotFlag {
		if strings.EqualFold(string(f), `\Recent`) {
			continue
		}
		if hasFlag(info.Flags, f) {
			return false
		}
	}
	if c.Larger != 0 && info.Size <= c.Larger {
		return false
	}
	if c.Smaller != 0 && info.Size >= c.Smaller {
		return false
	}
	if c.ModSeq != nil && info.ModSeq < c.ModSeq.ModSeq {
		return false
	}
	for _, hc := range c.Header {
		if !matchHeaderFields(m.hdr().FieldsByKey(hc.Key), hc.Value) {
			return false
		}
	}
	if !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
		t, err := m.hdr().Date()
		if err != nil || !matchDate(t, c.SentSince, c.SentBefore) {
			return false
		}
	}
	for _, text := range c.Text {
		parts := 0
		if !matchEntity(m.entity(), text, true, &parts) {
			return false
		}
	}
	for _, text := range c.Body {
		parts := 0
		if !matchEntity(m.entity(), text, false, &parts) {
			return false
		}
	}
	for i := range c.Not {
		if m.match(&c.Not[i]) {
			return false
		}
	}
	for i := range c.Or {
		if !m.match(&c.Or[i][0]) && !m.match(&c.Or[i][1]) {
			return false
		}
	}
	return true
}

// matchDate compares dates only, ignoring time and zone (RFC 3501 §6.4.4).
func matchDate(t, since, before time.Time) bool {
	t = time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	if !since.IsZero() && t.Before(since) {
		return false
	}
	if !before.IsZero() && !t.Before(before) {
		return false
	}
	return true
}

func matchHeaderFields(fields gomessage.HeaderFields, pattern string) bool {
	if pattern == "" {
		return fields.Len() > 0
	}
	pattern = strings.ToLower(pattern)
	for fields.Next() {
		v, _ := fields.Text()
		if strings.Contains(strings.ToLower(v), pattern) {
			return true
		}
	}
	return false
}

func matchEntity(e *gomessage.Entity, pattern string, includeHeader bool, parts *int) bool {
	if e == nil {
		return false
	}
	if pattern == "" {
		return true
	}
	if *parts++; *parts > maxSearchParts {
		return false
	}
	if includeHeader && matchHeaderFields(e.Header.Fields(), pattern) {
		return true
	}
	if mr := e.MultipartReader(); mr != nil {
		for {
			part, err := mr.NextPart()
			if err != nil {
				return false
			}
			if matchEntity(part, pattern, includeHeader, parts) {
				return true
			}
		}
	}
	t, _, err := e.Header.ContentType()
	if err != nil {
		t = "text/plain"
	}
	if !strings.HasPrefix(t, "text/") && !strings.HasPrefix(t, "message/") {
		return false
	}
	buf, err := io.ReadAll(io.LimitReader(e.Body, 32<<20))
	if err != nil {
		return false
	}
	return bytes.Contains(bytes.ToLower(buf), bytes.ToLower([]byte(pattern)))
}
