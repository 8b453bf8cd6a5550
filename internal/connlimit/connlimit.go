// Package connlimit caps the connections a listener holds open, in all and
// per client address, so that one client cannot take every slot. Excess
// connections are closed at accept, before any byte is read.
package connlimit

import "net"

// Listener wraps a net.Listener with the caps.
type Listener struct {
	net.Listener
	counter *Counter
}

// New caps ln at max connections in all and perIP per client (an IPv4
// address or an IPv6 /64); 0 means no cap of that kind.
func New(ln net.Listener, max, perIP int) *Listener {
	return &Listener{Listener: ln, counter: NewCounter(max, perIP)}
}

// Accept returns the next connection within the caps; those over a cap are
// closed and not returned.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if release, err := l.counter.Acquire(ClientAddr(c.RemoteAddr())); err == nil {
			return &conn{Conn: c, release: release}, nil
		}
		c.Close()
	}
}

// Open returns the number of connections held now.
func (l *Listener) Open() int { return l.counter.Open() }

type conn struct {
	net.Conn
	release func() // idempotent
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.release()
	return err
}
