package pop3

import (
	"context"
	"strings"
	"testing"

	"mailconf/mailserver/store"
)

// RETR opens bodies from the login snapshot without asking the index, so
// an expunge by another session must still be noticed when the body
// survives it (shared with a copy in another mailbox) and when it does not.
func TestExpungeOfSharedBodyDuringSession(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	u1 := e.deliver("Subject: 1\r\n\r\nshared\r\n")
	u2 := e.deliver("Subject: 2\r\n\r\nalone\r\n")
	e.deliver("Subject: 3\r\n\r\nkept\r\n")
	var other store.Mailbox
	for _, name := range []string{"Trash", "Archive", "Sent", "Drafts"} {
		if mb, err := e.st.Mailbox(ctx, e.alice.ID, name); err == nil {
			other = mb
			break
		}
	}
	if other.ID == 0 {
		var err error
		if other, err = e.st.CreateMailbox(ctx, e.alice.ID, "Kept", ""); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.st.Copy(ctx, e.inbox.ID, []uint32{u1}, other.ID); err != nil {
		t.Fatal(err)
	}
	c := e.login()
	// Read once before the expunge: the session has the body open path.
	c.expectOK("RETR 1")
	if got := string(c.body()); !strings.Contains(got, "shared") {
		t.Fatalf("RETR 1 before expunge: %q", got)
	}
	if _, err := e.st.Remove(ctx, e.inbox.ID, []uint32{u1, u2}); err != nil {
		t.Fatal(err)
	}
	c.expectErr("RETR 1", "-ERR Message was removed")
	c.expectErr("TOP 1 0", "-ERR Message was removed")
	c.expectErr("RETR 2", "-ERR Message was removed")
	c.expectOK("RETR 3")
	if got := string(c.body()); !strings.Contains(got, "kept") {
		t.Errorf("RETR 3: %q", got)
	}
	// A delivery also signals the mailbox; it must not disturb the snapshot.
	e.deliver("Subject: 4\r\n\r\nnew\r\n")
	c.expectOK("RETR 3")
	c.body()
	c.expectErr("RETR 4", "-ERR No such message")
	c.expectOK("DELE 1")
	c.expectOK("DELE 3")
	c.expectOK("QUIT")
	if got := e.inboxUIDs(); len(got) != 1 {
		t.Errorf("left after QUIT: %v, want only the new delivery", got)
	}
	// The copy in the other mailbox is untouched.
	if b, err := e.st.ReadMessage(ctx, other.ID, 1); err != nil || !strings.Contains(string(b), "shared") {
		t.Errorf("copy in %s: %q %v", other.Name, b, err)
	}
}
