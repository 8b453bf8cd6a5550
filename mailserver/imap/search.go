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
	data := &goimap.SearchData{}
	var seqs goimap.SeqSet
	var uids goimap.UIDSet
	var saved []uint32
	var m searchMsg
	for i := range all {
		t := &all[i]
		if ctx.Err() != nil {
			return nil, imapError(ctx.Err())
		}
		// One searchMsg reused for every message: a flag-only SEARCH of
		// a large mailbox then allocates nothing per message.
		m = searchMsg{t: t, msg: message{srv: ss.srv, e: &t.e}}
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
	maxUID := sel.mb.maxUIDLocked()
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

// searchMsg evaluates criteria against one message, reading its header
// block (usually from the cache) or body only when a criterion needs it.
type searchMsg struct {
	t      *target
	msg    message
	header *mail.Header
}

func (m *searchMsg) close() { m.msg.close() }

// rawHeader is the header block, or nil if the message cannot be read
// (expunged meanwhile: it matches no header criterion).
func (m *searchMsg) rawHeader() []byte {
	h, err := m.msg.header()
	if err != nil {
		return nil
	}
	return h
}

func (m *searchMsg) hdr() *mail.Header {
	if m.header != nil {
		return m.header
	}
	h := mail.Header{}
	if raw := m.rawHeader(); raw != nil {
		th, _ := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw)))
		h = mail.Header{Header: gomessage.Header{Header: th}}
	}
	m.header = &h
	return m.header
}

func (m *searchMsg) entity() *gomessage.Entity {
	b, err := m.msg.open()
	if err != nil {
		return nil
	}
	e, _ := gomessage.Read(io.NewSectionReader(b, 0, b.Size()))
	return e
}

func hasFlag(flags []string, f goimap.Flag) bool {
	for _, x := range flags {
		// Stored flags are canonical, so the exact comparison usually
		// decides.
		if x == string(f) || strings.EqualFold(x, string(f)) {
			return true
		}
	}
	return false
}

func (m *searchMsg) match(c *goimap.SearchCriteria) bool {
	info := &m.t.e
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
		if hc.Value != "" && !mayContain(m.rawHeader(), hc.Value) {
			return false
		}
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

// mayContain is a fast negative test for a HEADER search: false means no
// decoded field value of the header block can contain pattern (ignoring
// ASCII case), so the header need not be parsed. It only answers false for
// an all-ASCII block without encoded words and an ASCII pattern: then a
// decoded value is the raw text with line folds replaced by single spaces,
// so every whitespace-free piece of a match lies in one raw line.
func mayContain(hdr []byte, pattern string) bool {
	if hdr == nil {
		return false
	}
	for _, c := range []byte(pattern) {
		if c >= 0x80 {
			return true
		}
	}
	for _, c := range hdr {
		if c >= 0x80 {
			return true
		}
	}
	if bytes.Contains(hdr, []byte("=?")) {
		return true
	}
	for _, tok := range strings.Fields(pattern) {
		if !containsFold(hdr, tok) {
			return false
		}
	}
	return true
}

// containsFold reports whether the ASCII needle occurs in b, ignoring
// ASCII case.
func containsFold(b []byte, needle string) bool {
	if len(needle) == 0 {
		return true
	}
	first := lowerASCII(needle[0])
	for i := 0; i+len(needle) <= len(b); i++ {
		if lowerASCII(b[i]) != first {
			continue
		}
		j := 1
		for j < len(needle) && lowerASCII(b[i+j]) == lowerASCII(needle[j]) {
			j++
		}
		if j == len(needle) {
			return true
		}
	}
	return false
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + ('a' - 'A')
	}
	return c
}

// matchDate compares dates only, ignoring time and zone (RFC 3501 §6.4.4).
func matchDate(t, since, before time.Time) bool {
	if since.IsZero() && before.IsZero() {
		return true // most searches: no need to work out t's date
	}
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
