package imap

import (
	"net"
	"sync"
	"testing"
	"time"
)

// deadlineConn records the socket's write deadline at each write.
type deadlineConn struct {
	net.Conn // nil: only the methods below are used
	mu       sync.Mutex
	deadline time.Time
	sets     int
	writes   []time.Time // the deadline in force at each write
}

func (c *deadlineConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = t
	c.sets++
	return nil
}

func (c *deadlineConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes = append(c.writes, c.deadline)
	return len(p), nil
}

// TestGuardWriteDeadlines: every write reaches the socket under the
// deadline the library asked for last (or one at most deadlineSlack
// earlier, never later, and none when it asked for none), and the
// library's four deadline changes per response cost fewer socket updates
// (far fewer while a FETCH batches its responses).
func TestGuardWriteDeadlines(t *testing.T) {
	fc := &deadlineConn{}
	g := newGuard(fc, 0, 0, nil)
	check := func(what string, want time.Time) {
		t.Helper()
		got := fc.writes[len(fc.writes)-1]
		switch {
		case want.IsZero() && !got.IsZero():
			t.Fatalf("%s: written under deadline %v, want none", what, got)
		case !want.IsZero() && got.IsZero():
			t.Fatalf("%s: written without a deadline, want %v", what, want)
		case got.After(want) || want.Sub(got) > deadlineSlack:
			t.Fatalf("%s: written under %v, want %v (slack %v)", what, got, want, deadlineSlack)
		}
	}
	const responses = 1000
	for i := 0; i < responses; i++ {
		// What imapserver does around one FETCH response with a literal.
		resp := time.Now().Add(30 * time.Second)
		g.SetWriteDeadline(resp)
		g.Write([]byte("* 1 FETCH (BODY[] {3}\r\n"))
		check("response", resp)
		lit := time.Now().Add(5 * time.Minute)
		g.SetWriteDeadline(lit)
		g.Write([]byte("abc"))
		check("literal", lit)
		resp = time.Now().Add(30 * time.Second)
		g.SetWriteDeadline(resp)
		g.Write([]byte(")\r\n"))
		check("after the literal", resp)
		g.SetWriteDeadline(time.Time{})
	}
	// Asked for none: a write (our own reply) goes out without one.
	g.reply("* OK\r\n")
	check("reply with no deadline wanted", time.Time{})
	// A shorter deadline is applied at once, not kept at the longer one.
	short := time.Now().Add(2 * time.Second)
	g.SetWriteDeadline(time.Now().Add(time.Hour))
	g.Write([]byte("x"))
	g.SetWriteDeadline(short)
	g.Write([]byte("y"))
	check("shortened", short)
	// Unbatched, each response still moves the deadline out for its
	// literal and back, but the "none" between responses costs nothing.
	if asked := 4 * responses; fc.sets > asked/2+5 {
		t.Errorf("unbatched: %d socket deadline updates for %d asked", fc.sets, asked)
	}

	// Batched, as during a FETCH of many messages: the socket sees a
	// write per batchFlushSize bytes, each under a wanted deadline.
	fc2 := &deadlineConn{}
	g2 := newGuard(fc2, 0, 0, nil)
	g2.beginBatch()
	body := make([]byte, 2000)
	for i := 0; i < responses; i++ {
		g2.SetWriteDeadline(time.Now().Add(30 * time.Second))
		g2.Write([]byte("* 1 FETCH (BODY[] {2000}\r\n"))
		g2.SetWriteDeadline(time.Now().Add(5 * time.Minute))
		g2.Write(body)
		g2.SetWriteDeadline(time.Now().Add(30 * time.Second))
		g2.Write([]byte(")\r\n"))
		g2.SetWriteDeadline(time.Time{})
	}
	if err := g2.endBatch(); err != nil {
		t.Fatal(err)
	}
	for i, d := range fc2.writes {
		if d.IsZero() {
			t.Errorf("batched write %d went out without a deadline", i)
		}
	}
	if want := responses*2000/batchFlushSize + 2; len(fc2.writes) > want || fc2.sets > 2*want {
		t.Errorf("batched: %d socket writes and %d deadline updates for %d responses", len(fc2.writes), fc2.sets, responses)
	}
}
