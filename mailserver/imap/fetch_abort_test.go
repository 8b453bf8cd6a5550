package imap

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestFetchToVanishedClient: a client that hangs up in the middle of a
// large FETCH makes the server's writes fail. The session must still end
// (its response writer released, so the library can answer and close),
// not hang holding the connection's write lock.
func TestFetchToVanishedClient(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	big := "Subject: big\r\n\r\n" + strings.Repeat(strings.Repeat("x", 998)+"\r\n", 4<<10)
	for i := 0; i < 8; i++ {
		if _, err := e.st.Deliver(ctx, e.aliceID, "INBOX", []byte(big), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	for _, cmd := range []string{"f1 FETCH 1 BODY.PEEK[]", "f2 FETCH 1:* BODY.PEEK[]", "f3 FETCH 1:* BINARY.PEEK[1]"} {
		r := e.rawTLS()
		r.login()
		r.send("s SELECT INBOX\r\n")
		r.until("s OK")
		r.send(cmd + "\r\n")
		r.c.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		e.srv.mu.Lock()
		n := len(e.srv.sessions)
		e.srv.mu.Unlock()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions still open after their clients hung up mid-FETCH", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
