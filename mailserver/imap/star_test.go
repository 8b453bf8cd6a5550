package imap

import (
	"strings"
	"testing"
)

// TestStar checks "*" in sequence and UID sets on the wire.
func TestStar(t *testing.T) {
	e := newEnv(t)
	c := e.alice()
	appendMsg(t, c, "INBOX", testMessage(1), nil)
	appendMsg(t, c, "INBOX", testMessage(2), nil)
	r := e.rawTLS()
	r.login()
	r.send("a SELECT INBOX\r\n")
	r.until("a OK")
	r.send("b UID FETCH * (UID)\r\n")
	if got := strings.Join(r.until("b "), "|"); got != "* 2 FETCH (UID 2)|b OK UID FETCH completed" {
		t.Errorf("UID FETCH *: %q", got)
	}
	r.send("c FETCH 2:* (UID)\r\n")
	if got := strings.Join(r.until("c "), "|"); got != "* 2 FETCH (UID 2)|c OK FETCH completed" {
		t.Errorf("FETCH 2:*: %q", got)
	}
	r.send("d UID FETCH 5:* (UID)\r\n")
	if got := strings.Join(r.until("d "), "|"); got != "* 2 FETCH (UID 2)|d OK UID FETCH completed" {
		t.Errorf("UID FETCH 5:* (RFC 9051: * is the largest UID): %q", got)
	}
	r.send("e SEARCH 1:*\r\n")
	if got := strings.Join(r.until("e "), "|"); got != "* SEARCH 1 2|e OK SEARCH completed" {
		t.Errorf("SEARCH 1:*: %q", got)
	}
	r.send("f UID SEARCH RETURN (SAVE) UID 2\r\n")
	r.until("f OK")
	r.send("g FETCH $ (UID)\r\n")
	if got := strings.Join(r.until("g "), "|"); got != "* 2 FETCH (UID 2)|g OK FETCH completed" {
		t.Errorf("FETCH $: %q", got)
	}
	r.send("h UID SEARCH UID $\r\n")
	if got := strings.Join(r.until("h "), "|"); got != "* SEARCH 2|h OK UID SEARCH completed" {
		t.Errorf("UID SEARCH UID $: %q", got)
	}
}

// TestLsub checks IMAP4rev1's LSUB on the wire: only subscribed mailboxes,
// pattern applied.
func TestLsub(t *testing.T) {
	e := newEnv(t)
	c := e.alice()
	for _, n := range []string{"Work", "Work/Projects", "Personal"} {
		if err := c.Create(n, nil).Wait(); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"Work/Projects", "Personal"} {
		if err := c.Subscribe(n).Wait(); err != nil {
			t.Fatal(err)
		}
	}
	r := e.rawTLS()
	r.login()
	r.send(`a LSUB "" "*"` + "\r\n")
	lines := r.until("a ")
	var got []string
	for _, l := range lines[:len(lines)-1] {
		if !strings.HasPrefix(l, "* LSUB ") {
			t.Fatalf("LSUB answered %q", l)
		}
		got = append(got, strings.Trim(l[strings.LastIndexByte(l, ' ')+1:], `"`))
	}
	// The default folders are subscribed from the start; Work is not.
	if want := "Archive Drafts INBOX Junk Personal Sent Trash Work/Projects"; strings.Join(got, " ") != want || !strings.HasPrefix(lines[len(lines)-1], "a OK") {
		t.Errorf("LSUB \"\" *: %q, want %s", lines, want)
	}
	r.send(`b LSUB "" "Work/%"` + "\r\n")
	if lines := r.until("b "); len(lines) != 2 || !strings.HasSuffix(lines[0], ` "Work/Projects"`) {
		t.Errorf("LSUB \"\" Work/%%: %q", lines)
	}
}
