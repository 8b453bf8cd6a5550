package imap

import (
	"slices"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
)

// TestSearchDates: SENTON/SENTSINCE/SENTBEFORE compare the Date field's
// date only, in the zone it was written in (RFC 3501 §6.4.4): a message
// sent late on 2 January in New York is on the 2nd, though it is already
// the 3rd in UTC. ON compares the internal date's day (the store keeps
// internal dates in UTC, so they are given in UTC here).
func TestSearchDates(t *testing.T) {
	e := newEnv(t)
	c := e.alice()
	appendMsg(t, c, "INBOX", "Subject: late\r\nDate: Mon, 02 Jan 2006 23:30:00 -0500\r\n\r\nbody\r\n",
		&goimap.AppendOptions{Time: time.Date(2021, 3, 4, 0, 30, 0, 0, time.UTC)})
	appendMsg(t, c, "INBOX", "Subject: early\r\nDate: Tue, 03 Jan 2006 00:30:00 +0100\r\n\r\nbody\r\n",
		&goimap.AppendOptions{Time: time.Date(2021, 3, 3, 23, 30, 0, 0, time.UTC)})
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	day := func(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }
	cases := []struct {
		name string
		crit goimap.SearchCriteria
		want []uint32
	}{
		{"SENTON 2-Jan", goimap.SearchCriteria{SentSince: day(2006, 1, 2), SentBefore: day(2006, 1, 3)}, []uint32{1}},
		{"SENTON 3-Jan", goimap.SearchCriteria{SentSince: day(2006, 1, 3), SentBefore: day(2006, 1, 4)}, []uint32{2}},
		{"SENTBEFORE 3-Jan", goimap.SearchCriteria{SentBefore: day(2006, 1, 3)}, []uint32{1}},
		{"SENTSINCE 3-Jan", goimap.SearchCriteria{SentSince: day(2006, 1, 3)}, []uint32{2}},
		{"ON 4-Mar", goimap.SearchCriteria{Since: day(2021, 3, 4), Before: day(2021, 3, 5)}, []uint32{1}},
		{"ON 3-Mar", goimap.SearchCriteria{Since: day(2021, 3, 3), Before: day(2021, 3, 4)}, []uint32{2}},
	}
	for _, tc := range cases {
		d, err := c.Search(&tc.crit, nil).Wait()
		if err != nil {
			t.Fatalf("SEARCH %s: %v", tc.name, err)
		}
		if got := d.AllSeqNums(); !slices.Equal(got, tc.want) {
			t.Errorf("SEARCH %s = %v, want %v", tc.name, got, tc.want)
		}
	}
}
