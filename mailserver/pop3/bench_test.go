package pop3

import (
	"bytes"
	"fmt"
	"strconv"
	"testing"
)

// benchMessage is a 4 KiB message of 76-column CRLF lines, every tenth
// starting with '.', as bench/pop3 sends.
func benchMessage(i int) string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: bench@example.test\r\nTo: alice@example.com\r\nSubject: bench %d\r\n\r\n", i)
	for line := 0; b.Len() < 4096-80; line++ {
		if line%10 == 3 {
			b.WriteByte('.')
		}
		b.Write(bytes.Repeat([]byte{byte('a' + line%26)}, 74))
		b.WriteString("\r\n")
	}
	return b.String()
}

// BenchmarkRetr measures RETR of 4 KiB messages one command at a time
// over implicit TLS, client and server in one process (for -cpuprofile;
// bench/pop3 is the comparison with Dovecot).
func BenchmarkRetr(b *testing.B) {
	e := newEnv(b)
	const n = 200
	for i := range n {
		e.deliver(benchMessage(i))
	}
	c := e.login()
	b.SetBytes(4096)
	b.ResetTimer()
	for i := range b.N {
		c.send("RETR " + strconv.Itoa(i%n+1) + "\r\n")
		if l := c.line(); len(l) < 3 || l[:3] != "+OK" {
			b.Fatalf("RETR: %q", l)
		}
		c.body()
	}
}
