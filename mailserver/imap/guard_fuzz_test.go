package imap

import (
	"io"
	"net"
	"testing"
	"time"
)

// FuzzGuard feeds hostile bytes through the literal guard as a client would
// send them: it must never panic or hang, and it never passes on more bytes
// than the client sent.
func FuzzGuard(f *testing.F) {
	for _, s := range []string{
		"a1 LOGIN u p\r\n",
		"a APPEND INBOX {5000+}\r\nDELETE x\r\n",
		"a APPEND INBOX {5}\r\nhello\r\n",
		"a LOGIN {400000000}\r\n",
		"a LOGIN {400000000+}\r\n",
		"* {3}\r\nabc\r\n",
		"a SEARCH {-1}\r\n",
		"a SEARCH {99999999999999999999}\r\n",
		"\r\n\n\r\x00",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		srv, cli := net.Pipe()
		g := newGuard(srv, 1<<20, 5*time.Second, nil)
		go io.Copy(io.Discard, cli) // the guard's own replies
		go func() {
			cli.Write(in)
			cli.Close()
		}()
		done := make(chan int)
		go func() {
			total := 0
			buf := make([]byte, 512)
			for {
				n, err := g.Read(buf)
				total += n
				if err != nil {
					break
				}
			}
			done <- total
		}()
		select {
		case total := <-done:
			if total > len(in) {
				t.Fatalf("guard passed on %d bytes of %d", total, len(in))
			}
		case <-time.After(10 * time.Second):
			t.Fatal("guard hung")
		}
		g.Close()
	})
}
