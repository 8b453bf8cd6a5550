package imap

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

// TestHeaderFieldsFastMatchesLibrary compares the fast HEADER.FIELDS
// extraction with the library's on hand-written and generated header
// blocks: wherever the fast path answers, the bytes must be identical.
func TestHeaderFieldsFastMatchesLibrary(t *testing.T) {
	blocks := []string{
		"\r\n",
		"Subject: hello\r\nFrom: a@b\r\n\r\n",
		"subject: lower\r\nSUBJECT: upper\r\nX-Other: 1\r\n\r\n",
		"Subject: folded\r\n  continued\r\n\tand tab\r\nTo: x\r\n\r\n",
		"Subject : spaced key\r\nFrom:no space\r\n\r\n",
		"Subject: bare lf\nFrom: x\n\n",
		"Subject: mixed\r\nFrom: x\n\r\n",
		" leading: continuation\r\n\r\n",
		"No colon here\r\nSubject: x\r\n\r\n",
		": empty key\r\nSubject: x\r\n\r\n",
		"Sub ject: space in key\r\n\r\n",
		"Subject: stray\rcr\r\n\r\n",
		"Subject: no blank line at the end\r\n",
		"Subject: =?utf-8?q?encoded?=\r\nFrom: \"Ünïcode\" <u@example.org>\r\n\r\n",
		"X-(odd)@key: value\r\nSubject: y\r\n\r\n",
		"Kelvin: k\r\n\r\n",
		"Subject:\r\n\r\n",
		"Subject: " + strings.Repeat("long ", 2000) + "\r\n\r\n",
	}
	r := rand.New(rand.NewPCG(7, 7))
	pieces := []string{"Subject: s\r\n", "From: f\r\n", " cont\r\n", "\tcont\r\n", "To: t\n", "Bad line\r\n", "X-A : b\r\n", "date: d\r\n", "\r", "Message-ID: <m@x>\r\n"}
	for i := 0; i < 300; i++ {
		var b strings.Builder
		for n := r.IntN(8); n > 0; n-- {
			b.WriteString(pieces[r.IntN(len(pieces))])
		}
		b.WriteString("\r\n")
		blocks = append(blocks, b.String())
	}
	lists := [][]string{{"Subject"}, {"subject", "FROM"}, {"From", "To", "Subject", "Date", "Message-ID"}, {"X-A"}, {"x-(odd)@key"}, {"\u212aelvin"}, {"Nothing"}}
	fast := 0
	for _, blk := range blocks {
		for _, l := range lists {
			got, ok := headerFieldsFast([]byte(blk), l)
			if !ok {
				continue
			}
			fast++
			want := imapserver.ExtractBodySection(bytes.NewReader([]byte(blk)), &goimap.FetchItemBodySection{Specifier: goimap.PartSpecifierHeader, HeaderFields: l})
			if !bytes.Equal(got, want) {
				t.Errorf("block %q fields %q:\nfast    %q\nlibrary %q", blk, l, got, want)
			}
		}
	}
	if fast < len(blocks) {
		t.Fatalf("fast path answered only %d times", fast)
	}
	for _, blk := range []string{"Subject: bare lf\nFrom: x\n\n", " leading: continuation\r\n\r\n", "No colon here\r\n\r\n", "Subject: no blank line at the end\r\n"} {
		if _, ok := headerFieldsFast([]byte(blk), []string{"Subject"}); ok {
			t.Errorf("fast path took the irregular block %q", blk)
		}
	}
}
