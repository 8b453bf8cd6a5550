package connlimit

import (
	"io"
	"net"
	"testing"
	"time"
)

func TestCaps(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := New(raw, 3, 2)
	defer l.Close()
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	dial := func(local string) net.Conn {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
		c, err := d.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	closedByServer := func(c net.Conn) bool {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err := c.Read(make([]byte, 1))
		return err == io.EOF
	}
	a1, a2 := dial("127.0.0.1"), dial("127.0.0.1")
	s1, s2 := <-accepted, <-accepted
	a3 := dial("127.0.0.1") // third from one address: over the per-IP cap
	if !closedByServer(a3) {
		t.Error("a third connection from one address was not closed")
	}
	b1 := dial("127.0.0.2")
	<-accepted
	b2 := dial("127.0.0.2") // fourth in all: over the total cap
	if !closedByServer(b2) {
		t.Error("a connection over the total cap was not closed")
	}
	if n := l.Open(); n != 3 {
		t.Errorf("Open = %d, want 3", n)
	}
	// Closing frees the slot for the same address.
	s1.Close()
	a1.Close()
	a4 := dial("127.0.0.1")
	select {
	case c := <-accepted:
		c.Close()
	case <-time.After(2 * time.Second):
		t.Error("a freed slot was not reused")
	}
	for _, c := range []net.Conn{a2, s2, b1, a4} {
		c.Close()
	}
}
