package imap

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"mailconf/mailserver/store"
)

func listNames(t *testing.T, c *imapclient.Client, ref, pattern string, opts *goimap.ListOptions) map[string]*goimap.ListData {
	t.Helper()
	l, err := c.List(ref, pattern, opts).Collect()
	if err != nil {
		t.Fatalf("LIST %q %q: %v", ref, pattern, err)
	}
	out := map[string]*goimap.ListData{}
	for _, d := range l {
		out[d.Mailbox] = d
	}
	return out
}

func keys[M ~map[string]V, V any](m M) []string {
	var k []string
	for s := range m {
		k = append(k, s)
	}
	sort.Strings(k)
	return k
}

func hasAttr(d *goimap.ListData, a goimap.MailboxAttr) bool {
	return d != nil && slices.Contains(d.Attrs, a)
}

func TestFolders(t *testing.T) {
	e := newEnv(t)
	c := e.alice()

	all := listNames(t, c, "", "*", nil)
	if got := keys(all); !slices.Equal(got, []string{"Archive", "Drafts", "INBOX", "Junk", "Sent", "Trash"}) {
		t.Fatalf("default folders: %v", got)
	}
	for name, attr := range map[string]goimap.MailboxAttr{"Sent": goimap.MailboxAttrSent, "Drafts": goimap.MailboxAttrDrafts,
		"Trash": goimap.MailboxAttrTrash, "Junk": goimap.MailboxAttrJunk, "Archive": goimap.MailboxAttrArchive} {
		if !hasAttr(all[name], attr) {
			t.Errorf("%s lacks %s: %v", name, attr, all[name].Attrs)
		}
		if all[name].Delim != '/' {
			t.Errorf("delimiter %q", all[name].Delim)
		}
	}

	for _, n := range []string{"Work", "Work/Projects", "Work/Projects/2024", "Personal"} {
		if err := c.Create(n, nil).Wait(); err != nil {
			t.Fatalf("CREATE %s: %v", n, err)
		}
	}
	if err := c.Create("Work", nil).Wait(); err == nil {
		t.Error("CREATE of an existing mailbox succeeded")
	}
	if err := c.Create("Flagged", &goimap.CreateOptions{SpecialUse: []goimap.MailboxAttr{goimap.MailboxAttrFlagged}}).Wait(); err != nil {
		t.Fatalf("CREATE-SPECIAL-USE: %v", err)
	}
	if got := keys(listNames(t, c, "", "Work/%", nil)); !slices.Equal(got, []string{"Work/Projects"}) {
		t.Errorf("LIST Work/%%: %v", got)
	}
	if got := keys(listNames(t, c, "Work/", "*", nil)); !slices.Equal(got, []string{"Work/Projects", "Work/Projects/2024"}) {
		t.Errorf("LIST ref Work/ *: %v", got)
	}
	if got := keys(listNames(t, c, "", "%", nil)); slices.Contains(got, "Work/Projects") || !slices.Contains(got, "Work") {
		t.Errorf("LIST %%: %v", got)
	}
	top := listNames(t, c, "", "%", nil)
	if !hasAttr(top["Work"], goimap.MailboxAttrHasChildren) || !hasAttr(top["Personal"], goimap.MailboxAttrHasNoChildren) {
		t.Errorf("children attributes: Work %v Personal %v", top["Work"].Attrs, top["Personal"].Attrs)
	}

	// SPECIAL-USE selection (LIST-EXTENDED).
	su := listNames(t, c, "", "*", &goimap.ListOptions{SelectSpecialUse: true})
	if got := keys(su); !slices.Equal(got, []string{"Archive", "Drafts", "Flagged", "Junk", "Sent", "Trash"}) {
		t.Errorf("LIST (SPECIAL-USE): %v", got)
	}

	// SUBSCRIBE / UNSUBSCRIBE / LSUB-like selection.
	if err := c.Subscribe("Work/Projects").Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Subscribe("Nope").Wait(); err == nil {
		t.Error("SUBSCRIBE to a missing mailbox succeeded")
	}
	sub := listNames(t, c, "", "*", &goimap.ListOptions{SelectSubscribed: true})
	if _, ok := sub["Work/Projects"]; !ok || !hasAttr(sub["Work/Projects"], goimap.MailboxAttrSubscribed) {
		t.Errorf("subscribed list: %v", keys(sub))
	}
	if _, ok := sub["Personal"]; ok {
		t.Error("unsubscribed mailbox listed as subscribed")
	}
	rec := listNames(t, c, "", "%", &goimap.ListOptions{SelectSubscribed: true, SelectRecursiveMatch: true})
	if rec["Work"] == nil || rec["Work"].ChildInfo == nil || !rec["Work"].ChildInfo.Subscribed {
		t.Errorf("RECURSIVEMATCH CHILDINFO missing: %v", rec["Work"])
	}
	if err := c.Unsubscribe("Work/Projects").Wait(); err != nil {
		t.Fatal(err)
	}
	if sub := listNames(t, c, "", "*", &goimap.ListOptions{SelectSubscribed: true}); sub["Work/Projects"] != nil {
		t.Error("still subscribed after UNSUBSCRIBE")
	}

	// LIST-STATUS.
	appendMsg(t, c, "Personal", testMessage(1), nil)
	ls := listNames(t, c, "", "Personal", &goimap.ListOptions{ReturnStatus: &goimap.StatusOptions{NumMessages: true, UIDNext: true}})
	if d := ls["Personal"]; d == nil || d.Status == nil || d.Status.NumMessages == nil || *d.Status.NumMessages != 1 || d.Status.UIDNext != 2 {
		t.Errorf("LIST-STATUS: %+v", d)
	}

	// RENAME with children.
	if err := c.Rename("Work", "Job", nil).Wait(); err != nil {
		t.Fatalf("RENAME: %v", err)
	}
	got := keys(listNames(t, c, "", "*", nil))
	for _, want := range []string{"Job", "Job/Projects", "Job/Projects/2024"} {
		if !slices.Contains(got, want) {
			t.Errorf("after RENAME: %v lacks %s", got, want)
		}
	}
	if slices.Contains(got, "Work/Projects") {
		t.Errorf("old child name still present: %v", got)
	}

	// DELETE: a parent with children is refused, INBOX is refused.
	if err := c.Delete("Job").Wait(); err == nil {
		t.Error("DELETE of a mailbox with children succeeded")
	}
	if err := c.Delete("INBOX").Wait(); err == nil {
		t.Error("DELETE INBOX succeeded")
	}
	if err := c.Delete("Job/Projects/2024").Wait(); err != nil {
		t.Fatalf("DELETE leaf: %v", err)
	}
	if err := c.Delete("Nope").Wait(); err == nil {
		t.Error("DELETE of a missing mailbox succeeded")
	}

	// RENAME INBOX moves its messages into the new mailbox, INBOX stays.
	appendMsg(t, c, "INBOX", testMessage(2), nil)
	appendMsg(t, c, "inbox", testMessage(3), nil)
	if err := c.Rename("INBOX", "Old-Inbox", nil).Wait(); err != nil {
		t.Fatalf("RENAME INBOX: %v", err)
	}
	st, err := c.Status("INBOX", &goimap.StatusOptions{NumMessages: true}).Wait()
	if err != nil || *st.NumMessages != 0 {
		t.Errorf("INBOX after rename: %v %v", st, err)
	}
	st, err = c.Status("Old-Inbox", &goimap.StatusOptions{NumMessages: true, UIDValidity: true, UIDNext: true, NumUnseen: true, Size: true, NumDeleted: true}).Wait()
	if err != nil || *st.NumMessages != 2 || *st.NumUnseen != 2 || *st.NumDeleted != 0 || *st.Size != int64(len(testMessage(2))+len(testMessage(3))) {
		t.Errorf("Old-Inbox STATUS: %+v %v", st, err)
	}

	// NAMESPACE.
	ns, err := c.Namespace().Wait()
	if err != nil || len(ns.Personal) != 1 || ns.Personal[0].Delim != '/' || ns.Personal[0].Prefix != "" {
		t.Errorf("NAMESPACE: %+v %v", ns, err)
	}
}

func TestRecreatedMailboxGetsNewUIDValidity(t *testing.T) {
	e := newEnv(t)
	c := e.alice()
	if err := c.Create("Temp", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	a1 := appendMsg(t, c, "Temp", testMessage(1), nil)
	if err := c.Delete("Temp").Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Create("Temp", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	a2 := appendMsg(t, c, "Temp", testMessage(1), nil)
	if a1.UIDValidity == 0 || a1.UIDValidity == a2.UIDValidity {
		t.Fatalf("UIDVALIDITY not renewed: %d then %d", a1.UIDValidity, a2.UIDValidity)
	}
	sel, err := c.Select("Temp", nil).Wait()
	if err != nil || sel.UIDValidity != a2.UIDValidity {
		t.Fatalf("SELECT: %+v %v", sel, err)
	}
}

func TestAppendFetch(t *testing.T) {
	e := newEnv(t)
	c := e.alice()
	date := time.Date(2021, 3, 4, 5, 6, 7, 0, time.FixedZone("", 2*3600))
	multipart := "From: a@example.org\r\nTo: b@example.org\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n" +
		"preamble\r\n--XX\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello part one\r\n" +
		"--XX\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8gYmluYXJ5\r\n--XX--\r\n"
	bareLF := "Subject: bare\nFrom: x@example.org\n\nline one\nline two\n"
	malformed := "this header line has no colon\r\nSubject: broken\r\n\r\nbody\r\n"
	msgs := []string{testMessage(1), multipart, bareLF, malformed}
	var uids []goimap.UID
	for i, m := range msgs {
		opts := &goimap.AppendOptions{Time: date}
		if i == 0 {
			opts.Flags = []goimap.Flag{goimap.FlagFlagged, "$Important"}
		}
		d := appendMsg(t, c, "INBOX", m, opts)
		if d.UID == 0 || d.UIDValidity == 0 {
			t.Fatalf("no APPENDUID: %+v", d)
		}
		uids = append(uids, d.UID)
	}
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil || sel.NumMessages != 4 {
		t.Fatalf("SELECT: %+v %v", sel, err)
	}

	// BODY.PEEK[] is byte-exact, RFC822.SIZE matches, and \Seen stays off.
	fetched, err := c.Fetch(goimap.SeqSetNum(1, 2, 3, 4), &goimap.FetchOptions{
		UID: true, Flags: true, InternalDate: true, RFC822Size: true, Envelope: true,
		BodySection: []*goimap.FetchItemBodySection{{Peek: true}},
	}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(fetched) != 4 {
		t.Fatalf("fetched %d", len(fetched))
	}
	for i, m := range fetched {
		body := m.FindBodySection(&goimap.FetchItemBodySection{Peek: true})
		if !bytes.Equal(body, []byte(msgs[i])) {
			t.Errorf("message %d: BODY[] differs:\n%q\n%q", i+1, body, msgs[i])
		}
		if m.RFC822Size != int64(len(msgs[i])) {
			t.Errorf("message %d: RFC822.SIZE %d want %d", i+1, m.RFC822Size, len(msgs[i]))
		}
		if !m.InternalDate.Equal(date) {
			t.Errorf("INTERNALDATE %v want %v", m.InternalDate, date)
		}
		if m.UID != uids[i] {
			t.Errorf("UID %d want %d", m.UID, uids[i])
		}
		if slices.Contains(m.Flags, goimap.FlagSeen) {
			t.Errorf("PEEK set \\Seen on %d", i+1)
		}
	}
	if !slices.Contains(fetched[0].Flags, goimap.FlagFlagged) || !slices.Contains(fetched[0].Flags, "$Important") {
		t.Errorf("APPEND flags: %v", fetched[0].Flags)
	}
	if env := fetched[0].Envelope; env == nil || env.Subject != "message number 1" || len(env.From) != 1 || env.From[0].Addr() != "sender1@example.org" || env.MessageID != "m1@example.org" {
		t.Errorf("ENVELOPE: %+v", fetched[0].Envelope)
	}
	if env := fetched[1].Envelope; env == nil || env.Subject != "café" {
		t.Errorf("encoded subject: %+v", fetched[1].Envelope)
	}

	// Sections, partials, BODYSTRUCTURE and BINARY on the multipart.
	hdr := &goimap.FetchItemBodySection{Specifier: goimap.PartSpecifierHeader, Peek: true}
	text := &goimap.FetchItemBodySection{Specifier: goimap.PartSpecifierText, Peek: true}
	part1 := &goimap.FetchItemBodySection{Part: []int{1}, Peek: true}
	part2mime := &goimap.FetchItemBodySection{Part: []int{2}, Specifier: goimap.PartSpecifierMIME, Peek: true}
	fields := &goimap.FetchItemBodySection{Specifier: goimap.PartSpecifierHeader, HeaderFields: []string{"Subject"}, Peek: true}
	partial := &goimap.FetchItemBodySection{Peek: true, Partial: &goimap.SectionPartial{Offset: 6, Size: 15}}
	bin := &goimap.FetchItemBinarySection{Part: []int{2}, Peek: true}
	binSize := &goimap.FetchItemBinarySectionSize{Part: []int{2}}
	m2, err := c.Fetch(goimap.SeqSetNum(2), &goimap.FetchOptions{
		BodyStructure:     &goimap.FetchItemBodyStructure{Extended: true},
		BodySection:       []*goimap.FetchItemBodySection{hdr, text, part1, part2mime, fields, partial},
		BinarySection:     []*goimap.FetchItemBinarySection{bin},
		BinarySectionSize: []*goimap.FetchItemBinarySectionSize{binSize},
	}).Collect()
	if err != nil || len(m2) != 1 {
		t.Fatalf("FETCH sections: %v", err)
	}
	split := strings.Index(multipart, "\r\n\r\n") + 4
	checks := map[string][2]string{
		"HEADER":  {string(m2[0].FindBodySection(hdr)), multipart[:split]},
		"TEXT":    {string(m2[0].FindBodySection(text)), multipart[split:]},
		"1":       {string(m2[0].FindBodySection(part1)), "hello part one"},
		"partial": {string(m2[0].FindBodySection(partial)), multipart[6:21]},
		"BINARY":  {string(m2[0].FindBinarySection(bin)), "hello binary"},
	}
	for name, c := range checks {
		if c[0] != c[1] {
			t.Errorf("BODY[%s] = %q, want %q", name, c[0], c[1])
		}
	}
	if got := string(m2[0].FindBodySection(fields)); !strings.HasPrefix(got, "Subject: =?utf-8?q?caf=C3=A9?=\r\n") || strings.Contains(got, "From:") {
		t.Errorf("HEADER.FIELDS (Subject) = %q", got)
	}
	if got := string(m2[0].FindBodySection(part2mime)); !strings.Contains(got, "Content-Transfer-Encoding: base64") {
		t.Errorf("BODY[2.MIME] = %q", got)
	}
	if bss := m2[0].BinarySectionSize; len(bss) != 1 || bss[0].Size != uint32(len("hello binary")) {
		t.Errorf("BINARY.SIZE[2] = %+v, want %d", bss, len("hello binary"))
	}
	mp, ok := m2[0].BodyStructure.(*goimap.BodyStructureMultiPart)
	if !ok || len(mp.Children) != 2 || mp.Subtype != "mixed" {
		t.Fatalf("BODYSTRUCTURE: %#v", m2[0].BodyStructure)
	}

	// Non-PEEK BODY[] sets \Seen and reports FLAGS.
	full := &goimap.FetchItemBodySection{}
	m3, err := c.Fetch(goimap.SeqSetNum(3), &goimap.FetchOptions{BodySection: []*goimap.FetchItemBodySection{full}}).Collect()
	if err != nil || len(m3) != 1 {
		t.Fatal(err)
	}
	if !bytes.Equal(m3[0].FindBodySection(full), []byte(bareLF)) {
		t.Errorf("bare-LF message not byte-exact: %q", m3[0].FindBodySection(full))
	}
	if !slices.Contains(m3[0].Flags, goimap.FlagSeen) {
		t.Errorf("FETCH BODY[] did not report \\Seen: %v", m3[0].Flags)
	}
	// A partial beyond the end is empty.
	beyond := &goimap.FetchItemBodySection{Peek: true, Partial: &goimap.SectionPartial{Offset: 100000, Size: 10}}
	last, err := c.Fetch(goimap.UIDSetNum(uids[3]), &goimap.FetchOptions{UID: true, BodySection: []*goimap.FetchItemBodySection{beyond}}).Collect()
	if err != nil || len(last) != 1 || last[0].UID != uids[3] || len(last[0].FindBodySection(beyond)) != 0 {
		t.Errorf("UID FETCH partial: %+v %v", last, err)
	}
}

func TestAppendErrors(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.AppendLimit = 1000 })
	c := e.alice()
	cmd := c.Append("Nope", 5, nil)
	cmd.Write([]byte("hello"))
	cmd.Close()
	if _, err := cmd.Wait(); err == nil || !strings.Contains(err.Error(), "TRYCREATE") {
		t.Errorf("APPEND to missing mailbox: %v", err)
	}
	big := strings.Repeat("x", 2000)
	cmd = c.Append("INBOX", int64(len(big)), nil)
	cmd.Write([]byte(big))
	cmd.Close()
	if _, err := cmd.Wait(); err == nil {
		t.Error("APPEND over APPENDLIMIT succeeded")
	}
	// The connection is still in step.
	if err := c.Noop().Wait(); err != nil {
		t.Fatalf("NOOP after refused APPEND: %v", err)
	}
	if !c.Caps().Has("APPENDLIMIT=1000") {
		caps, _ := c.Capability().Wait()
		if !caps.Has("APPENDLIMIT=1000") {
			t.Errorf("APPENDLIMIT not advertised: %v", caps)
		}
	}
}

func TestStoreCopyMoveExpungeSearch(t *testing.T) {
	e := newEnv(t)
	c := e.alice()
	for i := 1; i <= 6; i++ {
		appendMsg(t, c, "INBOX", testMessage(i), nil)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	res, err := c.Store(goimap.SeqSetNum(1, 2), &goimap.StoreFlags{Op: goimap.StoreFlagsAdd, Flags: []goimap.Flag{goimap.FlagSeen, "$Label1"}}, nil).Collect()
	if err != nil || len(res) != 2 || !slices.Contains(res[0].Flags, "$Label1") {
		t.Fatalf("STORE +FLAGS: %+v %v", res, err)
	}
	if _, err := c.Store(goimap.SeqSetNum(2), &goimap.StoreFlags{Op: goimap.StoreFlagsDel, Silent: true, Flags: []goimap.Flag{"$Label1"}}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Store(goimap.SeqSetNum(3), &goimap.StoreFlags{Op: goimap.StoreFlagsSet, Flags: []goimap.Flag{goimap.FlagDeleted}}, nil).Collect(); err != nil {
		t.Fatal(err)
	}

	search := func(crit *goimap.SearchCriteria) []uint32 {
		t.Helper()
		d, err := c.Search(crit, nil).Wait()
		if err != nil {
			t.Fatalf("SEARCH %+v: %v", crit, err)
		}
		return d.AllSeqNums()
	}
	cases := []struct {
		name string
		crit *goimap.SearchCriteria
		want []uint32
	}{
		{"ALL", &goimap.SearchCriteria{}, []uint32{1, 2, 3, 4, 5, 6}},
		{"SEEN", &goimap.SearchCriteria{Flag: []goimap.Flag{goimap.FlagSeen}}, []uint32{1, 2}},
		{"UNSEEN", &goimap.SearchCriteria{NotFlag: []goimap.Flag{goimap.FlagSeen}}, []uint32{3, 4, 5, 6}},
		{"KEYWORD", &goimap.SearchCriteria{Flag: []goimap.Flag{"$label1"}}, []uint32{1}},
		{"DELETED", &goimap.SearchCriteria{Flag: []goimap.Flag{goimap.FlagDeleted}}, []uint32{3}},
		{"SUBJECT", &goimap.SearchCriteria{Header: []goimap.SearchCriteriaHeaderField{{Key: "Subject", Value: "number 4"}}}, []uint32{4}},
		{"FROM", &goimap.SearchCriteria{Header: []goimap.SearchCriteriaHeaderField{{Key: "From", Value: "SENDER5@"}}}, []uint32{5}},
		{"BODY", &goimap.SearchCriteria{Body: []string{"message 6."}}, []uint32{6}},
		{"TEXT header", &goimap.SearchCriteria{Text: []string{"<m2@example"}}, []uint32{2}},
		{"NOT", &goimap.SearchCriteria{Not: []goimap.SearchCriteria{{Flag: []goimap.Flag{goimap.FlagSeen}}}}, []uint32{3, 4, 5, 6}},
		{"OR", &goimap.SearchCriteria{Or: [][2]goimap.SearchCriteria{{{SeqNum: []goimap.SeqSet{goimap.SeqSetNum(1)}}, {SeqNum: []goimap.SeqSet{goimap.SeqSetNum(6)}}}}}, []uint32{1, 6}},
		{"seq *", &goimap.SearchCriteria{SeqNum: []goimap.SeqSet{{goimap.SeqRange{Start: 5, Stop: 0}}}}, []uint32{5, 6}},
		{"UID *", &goimap.SearchCriteria{UID: []goimap.UIDSet{{goimap.UIDRange{Start: 5, Stop: 0}}}}, []uint32{5, 6}},
		{"HEADER present", &goimap.SearchCriteria{Header: []goimap.SearchCriteriaHeaderField{{Key: "Message-ID"}}}, []uint32{1, 2, 3, 4, 5, 6}},
		{"HEADER absent", &goimap.SearchCriteria{Header: []goimap.SearchCriteriaHeaderField{{Key: "X-Missing"}}}, nil},
		{"LARGER", &goimap.SearchCriteria{Larger: 1}, []uint32{1, 2, 3, 4, 5, 6}},
		{"SMALLER", &goimap.SearchCriteria{Smaller: 10}, nil},
		{"SENTSINCE", &goimap.SearchCriteria{SentSince: time.Date(2006, 1, 2, 0, 0, 0, 0, time.UTC)}, []uint32{1, 2, 3, 4, 5, 6}},
		{"SENTBEFORE", &goimap.SearchCriteria{SentBefore: time.Date(2006, 1, 2, 0, 0, 0, 0, time.UTC)}, nil},
		{"SINCE today", &goimap.SearchCriteria{Since: time.Now().UTC().Truncate(24 * time.Hour).Add(-24 * time.Hour)}, []uint32{1, 2, 3, 4, 5, 6}},
		{"BEFORE", &goimap.SearchCriteria{Before: time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)}, nil},
	}
	for _, tc := range cases {
		if got := search(tc.crit); !slices.Equal(got, tc.want) {
			t.Errorf("SEARCH %s = %v, want %v", tc.name, got, tc.want)
		}
	}
	// ESEARCH with MIN/MAX/COUNT (SEARCHRES, which imapclient cannot
	// send, is covered on the wire in TestStar).
	d, err := c.UIDSearch(&goimap.SearchCriteria{NotFlag: []goimap.Flag{goimap.FlagSeen}}, &goimap.SearchOptions{ReturnMin: true, ReturnMax: true, ReturnCount: true}).Wait()
	if err != nil || d.Min != 3 || d.Max != 6 || d.Count != 4 {
		t.Errorf("ESEARCH: %+v %v", d, err)
	}

	// COPY with COPYUID, then MOVE.
	cd, err := c.Copy(goimap.SeqSetNum(1, 2), "Archive").Wait()
	if err != nil || cd.UIDValidity == 0 || cd.SourceUIDs.String() != "1:2" || cd.DestUIDs.String() != "1:2" {
		t.Fatalf("COPY: %+v %v", cd, err)
	}
	if _, err := c.Copy(goimap.SeqSetNum(1), "Nope").Wait(); err == nil || !strings.Contains(err.Error(), "TRYCREATE") {
		t.Errorf("COPY to missing mailbox: %v", err)
	}
	md, err := c.Move(goimap.SeqSetNum(4), "Trash").Wait()
	if err != nil || md.UIDValidity == 0 || md.SourceUIDs.String() != "4" || md.DestUIDs.String() != "1" {
		t.Fatalf("MOVE: %+v %v", md, err)
	}
	st, _ := c.Status("Trash", &goimap.StatusOptions{NumMessages: true}).Wait()
	if *st.NumMessages != 1 {
		t.Errorf("Trash has %d", *st.NumMessages)
	}
	if got := search(&goimap.SearchCriteria{}); len(got) != 5 {
		t.Errorf("after MOVE: %v", got)
	}

	// EXPUNGE removes the \Deleted message (now seq 3).
	ex, err := c.Expunge().Collect()
	if err != nil || !slices.Equal(ex, []uint32{3}) {
		t.Errorf("EXPUNGE: %v %v", ex, err)
	}
	// UID EXPUNGE only touches the named UIDs.
	if _, err := c.Store(goimap.SeqSetNum(1, 2), &goimap.StoreFlags{Op: goimap.StoreFlagsAdd, Silent: true, Flags: []goimap.Flag{goimap.FlagDeleted}}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	f, _ := c.Fetch(goimap.SeqSetNum(2), &goimap.FetchOptions{UID: true}).Collect()
	ex, err = c.UIDExpunge(goimap.UIDSetNum(f[0].UID)).Collect()
	if err != nil || !slices.Equal(ex, []uint32{2}) {
		t.Errorf("UID EXPUNGE: %v %v", ex, err)
	}
	// CLOSE expunges the rest silently; UNSELECT would not.
	if err := c.UnselectAndExpunge().Wait(); err != nil {
		t.Fatal(err)
	}
	st, _ = c.Status("INBOX", &goimap.StatusOptions{NumMessages: true}).Wait()
	if *st.NumMessages != 2 {
		t.Errorf("INBOX after CLOSE: %d", *st.NumMessages)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Store(goimap.SeqSetNum(1), &goimap.StoreFlags{Op: goimap.StoreFlagsAdd, Silent: true, Flags: []goimap.Flag{goimap.FlagDeleted}}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	if err := c.Unselect().Wait(); err != nil {
		t.Fatal(err)
	}
	st, _ = c.Status("INBOX", &goimap.StatusOptions{NumMessages: true, NumDeleted: true}).Wait()
	if *st.NumMessages != 2 || *st.NumDeleted != 1 {
		t.Errorf("INBOX after UNSELECT: %d messages, %d deleted; want 2 and 1", *st.NumMessages, *st.NumDeleted)
	}
}

func TestExamineIsReadOnly(t *testing.T) {
	e := newEnv(t)
	c := e.alice()
	appendMsg(t, c, "INBOX", testMessage(1), &goimap.AppendOptions{Flags: []goimap.Flag{goimap.FlagDeleted}})
	appendMsg(t, c, "INBOX", testMessage(2), nil)
	sel, err := c.Select("INBOX", &goimap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil || sel.NumMessages != 2 {
		t.Fatal(sel, err)
	}
	full := &goimap.FetchItemBodySection{}
	if _, err := c.Fetch(goimap.SeqSetNum(2), &goimap.FetchOptions{BodySection: []*goimap.FetchItemBodySection{full}}).Collect(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Store(goimap.SeqSetNum(2), &goimap.StoreFlags{Op: goimap.StoreFlagsAdd, Flags: []goimap.Flag{goimap.FlagFlagged}}, nil).Collect(); err == nil {
		t.Error("STORE in EXAMINE succeeded")
	}
	if _, err := c.Expunge().Collect(); err == nil {
		t.Error("EXPUNGE in EXAMINE succeeded")
	}
	if _, err := c.Move(goimap.SeqSetNum(1), "Trash").Wait(); err == nil {
		t.Error("MOVE out of EXAMINE succeeded")
	}
	if err := c.UnselectAndExpunge().Wait(); err != nil {
		t.Fatalf("CLOSE: %v", err)
	}
	msgs, err := e.st.Messages(context.Background(), mustMailbox(t, e, "INBOX").ID)
	if err != nil || len(msgs) != 2 {
		t.Fatalf("CLOSE after EXAMINE expunged: %d %v", len(msgs), err)
	}
	for _, m := range msgs {
		if slices.Contains(m.Flags, store.FlagSeen) || slices.Contains(m.Flags, store.FlagFlagged) {
			t.Errorf("flags changed under EXAMINE: %v", m.Flags)
		}
	}
	// COPY out of a read-only mailbox is a read and is allowed.
	if _, err := c.Select("INBOX", &goimap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Copy(goimap.SeqSetNum(2), "Archive").Wait(); err != nil {
		t.Errorf("COPY from EXAMINE: %v", err)
	}
}

func mustMailbox(t *testing.T, e *env, name string) store.Mailbox {
	t.Helper()
	m, err := e.st.Mailbox(context.Background(), e.aliceID, name)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// updates records a client's unilateral EXISTS/EXPUNGE/FETCH responses.
type updates struct {
	mu       sync.Mutex
	exists   []uint32
	expunged []uint32
	flags    int
	ch       chan struct{}
}

// notifyWait is how long a test waits for an unsolicited update. It
// asserts that the update comes, not how fast: the 1 s target of issue #4
// is measured by bench/imap (tens of milliseconds there, a few here), and
// under make test's parallel packages one wait took over a second.
const notifyWait = 10 * time.Second

func newUpdates() *updates { return &updates{ch: make(chan struct{}, 100)} }

func (u *updates) handler() *imapclient.UnilateralDataHandler {
	return &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				u.mu.Lock()
				u.exists = append(u.exists, *d.NumMessages)
				u.mu.Unlock()
				u.ch <- struct{}{}
			}
		},
		Expunge: func(seq uint32) {
			u.mu.Lock()
			u.expunged = append(u.expunged, seq)
			u.mu.Unlock()
			u.ch <- struct{}{}
		},
		Fetch: func(m *imapclient.FetchMessageData) {
			m.Collect()
			u.mu.Lock()
			u.flags++
			u.mu.Unlock()
			u.ch <- struct{}{}
		},
	}
}

func (u *updates) wait(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.After(d)
	for {
		u.mu.Lock()
		ok := cond()
		u.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-u.ch:
		case <-deadline:
			u.mu.Lock()
			defer u.mu.Unlock()
			t.Fatalf("timed out; exists=%v expunged=%v flags=%d", u.exists, u.expunged, u.flags)
		}
	}
}

func TestConcurrentSessions(t *testing.T) {
	e := newEnv(t)
	a := e.alice()
	for i := 1; i <= 5; i++ {
		appendMsg(t, a, "INBOX", testMessage(i), nil)
	}
	ub := newUpdates()
	b := e.client(alice, alicePass, ub.handler())
	if _, err := a.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	// A deletes messages 2 and 4 and expunges them.
	if _, err := a.Store(goimap.SeqSetNum(2, 4), &goimap.StoreFlags{Op: goimap.StoreFlagsAdd, Silent: true, Flags: []goimap.Flag{goimap.FlagDeleted}}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	if ex, err := a.Expunge().Collect(); err != nil || !slices.Equal(ex, []uint32{4, 2}) && !slices.Equal(ex, []uint32{2, 3}) {
		t.Fatalf("EXPUNGE in A: %v %v", ex, err)
	}
	// B has not been told yet: FETCH (no expunges allowed) still uses its
	// old numbering, so seq 5 is still message 5 and seq 3 message 3.
	got, err := b.Fetch(goimap.SeqSetNum(3, 5), &goimap.FetchOptions{Envelope: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].SeqNum != 3 || got[0].Envelope.Subject != "message number 3" || got[1].SeqNum != 5 || got[1].Envelope.Subject != "message number 5" {
		for _, g := range got {
			t.Logf("seq %d: %v", g.SeqNum, g.Envelope.Subject)
		}
		t.Fatalf("B's FETCH before NOOP used the wrong numbering")
	}
	ub.mu.Lock()
	early := len(ub.expunged)
	ub.mu.Unlock()
	if early != 0 {
		t.Fatalf("EXPUNGE sent to B during FETCH")
	}
	// STORE by B on an expunged-elsewhere message must not hit another.
	if _, err := b.Store(goimap.SeqSetNum(4), &goimap.StoreFlags{Op: goimap.StoreFlagsAdd, Silent: true, Flags: []goimap.Flag{goimap.FlagFlagged}}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	// NOOP delivers the expunges.
	if err := b.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	ub.wait(t, notifyWait, func() bool { return len(ub.expunged) == 2 })
	got, err = b.Fetch(goimap.SeqSetNum(1, 2, 3), &goimap.FetchOptions{Envelope: true, Flags: true}).Collect()
	if err != nil || len(got) != 3 {
		t.Fatal(got, err)
	}
	for i, want := range []string{"message number 1", "message number 3", "message number 5"} {
		if got[i].Envelope.Subject != want {
			t.Errorf("B seq %d after NOOP: %q want %q", i+1, got[i].Envelope.Subject, want)
		}
		if slices.Contains(got[i].Flags, goimap.FlagFlagged) {
			t.Errorf("STORE on expunged seq 4 flagged %q", want)
		}
	}

	// B idles; A and SMTP-style delivery add messages; A flags one.
	idle, err := b.Idle()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := e.st.Deliver(context.Background(), e.aliceID, "INBOX", []byte(testMessage(99)), time.Now()); err != nil {
		t.Fatal(err)
	}
	ub.wait(t, notifyWait, func() bool { return slices.Contains(ub.exists, 4) })
	t.Logf("IDLE saw a delivered message after %v", time.Since(start))
	appendMsg(t, a, "INBOX", testMessage(100), nil)
	ub.wait(t, notifyWait, func() bool { return slices.Contains(ub.exists, 5) })
	if _, err := a.Store(goimap.SeqSetNum(1), &goimap.StoreFlags{Op: goimap.StoreFlagsAdd, Flags: []goimap.Flag{goimap.FlagAnswered}}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	ub.wait(t, notifyWait, func() bool { return ub.flags >= 1 })
	// An expunge in A during IDLE reaches B at once.
	if _, err := a.Store(goimap.SeqSetNum(1), &goimap.StoreFlags{Op: goimap.StoreFlagsAdd, Silent: true, Flags: []goimap.Flag{goimap.FlagDeleted}}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Expunge().Collect(); err != nil {
		t.Fatal(err)
	}
	ub.wait(t, notifyWait, func() bool { return len(ub.expunged) == 3 && ub.expunged[2] == 1 })
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
	got, err = b.Fetch(goimap.SeqSetNum(1, 2, 3, 4), &goimap.FetchOptions{Envelope: true}).Collect()
	if err != nil || len(got) != 4 || got[3].Envelope.Subject != "message number 100" || got[0].Envelope.Subject != "message number 3" {
		t.Fatalf("B after IDLE: %d %v", len(got), err)
	}
}

func TestManyConcurrentWriters(t *testing.T) {
	e := newEnv(t)
	const n = 4
	var clients []*imapclient.Client
	for i := 0; i < n; i++ {
		c := e.client(alice, alicePass, newUpdates().handler())
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 10; j++ {
				msg := testMessage(i*100 + j)
				cmd := c.Append("INBOX", int64(len(msg)), nil)
				cmd.Write([]byte(msg))
				cmd.Close()
				if _, err := cmd.Wait(); err != nil {
					t.Error(err)
					return
				}
				if j%3 == 0 {
					c.Store(goimap.SeqSetNum(1), &goimap.StoreFlags{Op: goimap.StoreFlagsAdd, Flags: []goimap.Flag{goimap.FlagSeen}}, nil).Collect()
				}
			}
		}()
	}
	wg.Wait()
	for i, c := range clients {
		if err := c.Noop().Wait(); err != nil {
			t.Fatal(err)
		}
		if got := c.Mailbox().NumMessages; got != 40 {
			t.Errorf("client %d sees %d messages", i, got)
		}
		all, err := c.Fetch(goimap.SeqSet{goimap.SeqRange{Start: 1, Stop: 0}}, &goimap.FetchOptions{UID: true}).Collect()
		if err != nil || len(all) != 40 {
			t.Errorf("client %d FETCH 1:*: %d %v", i, len(all), err)
		}
	}
}

func TestLimits(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxConnsPerAccount = 2; c.MaxConnsPerIP = 4 })
	e.alice()
	e.alice()
	c, err := imapclient.DialTLS(e.tlsAddr, &imapclient.Options{TLSConfig: e.clientTC})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(alice, alicePass).Wait(); err == nil || !strings.Contains(err.Error(), "LIMIT") {
		t.Errorf("third session of one account: %v", err)
	}
	// Bob may still log in from the same address (4 per IP).
	if err := c.Login(bob, bobPass).Wait(); err != nil {
		t.Errorf("bob: %v", err)
	}
	e.rawTLS()
	// The fifth connection from 127.0.0.1 is turned away.
	c5, err := net.Dial("tcp", e.tlsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c5.Close()
	r := &rawConn{t: t, c: c5, br: bufio.NewReader(c5)}
	if l, _ := r.line(); !strings.Contains(l, "BYE") {
		t.Errorf("fifth connection: %q", l)
	}
}

func TestIdleTimeout(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.IdleTimeout = 300 * time.Millisecond })
	r := e.rawTLS()
	r.login()
	start := time.Now()
	if _, closed := r.closed(); !closed {
		t.Fatal("idle connection not closed")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("closed after %v", d)
	}
}

// TestFetchManyBodies: a FETCH of more messages than the preparing
// goroutine runs ahead, of sizes that shrink and grow (so recycled body
// buffers are reused both ways) and one larger than maxPreload (served
// from its file), returns every body byte-exact and every header field
// from the cold and the warm header path alike.
func TestFetchManyBodies(t *testing.T) {
	e := newEnv(t)
	c := e.alice()
	sizes := []int{3000, 200, 9000, 50, maxPreload + 5000, 700, 12000, 1, 4000}
	var want []string
	for i := 0; i < 4*fetchPrepDepth; i++ {
		n := sizes[i%len(sizes)]
		m := fmt.Sprintf("Subject: message %d\r\nFrom: s%d@example.org\r\n\r\n", i, i) +
			strings.Repeat(fmt.Sprintf("%c", 'a'+i%26), n) + "\r\n"
		appendMsg(t, c, "INBOX", m, nil)
		want = append(want, m)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	all := goimap.SeqSet{goimap.SeqRange{Start: 1, Stop: 0}}
	hdr := &goimap.FetchItemBodySection{Specifier: goimap.PartSpecifierHeader, HeaderFields: []string{"Subject"}, Peek: true}
	for pass := 0; pass < 2; pass++ { // cold, then from the header cache
		got, err := c.Fetch(all, &goimap.FetchOptions{BodySection: []*goimap.FetchItemBodySection{hdr}}).Collect()
		if err != nil || len(got) != len(want) {
			t.Fatalf("pass %d: FETCH headers: %d messages, %v", pass, len(got), err)
		}
		for i, m := range got {
			if w := fmt.Sprintf("Subject: message %d\r\n\r\n", i); string(m.FindBodySection(hdr)) != w {
				t.Errorf("pass %d: message %d header fields %q, want %q", pass, i+1, m.FindBodySection(hdr), w)
			}
		}
	}
	body := &goimap.FetchItemBodySection{Peek: true}
	for pass := 0; pass < 2; pass++ {
		got, err := c.Fetch(all, &goimap.FetchOptions{BodySection: []*goimap.FetchItemBodySection{body}}).Collect()
		if err != nil || len(got) != len(want) {
			t.Fatalf("pass %d: FETCH bodies: %d messages, %v", pass, len(got), err)
		}
		for i, m := range got {
			if string(m.FindBodySection(body)) != want[i] {
				t.Errorf("pass %d: message %d body differs (%d bytes, want %d)", pass, i+1, len(m.FindBodySection(body)), len(want[i]))
			}
		}
	}
}
