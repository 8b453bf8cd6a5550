// Package connlimit caps the connections a listener holds open, in all and
// per client address, so that one client cannot take every slot. Excess
// connections are closed at accept, before any byte is read.
package connlimit

import (
	"net"
	"net/netip"
	"sync"
)

// Listener wraps a net.Listener with the caps.
type Listener struct {
	net.Listener
	max, perIP int

	mu    sync.Mutex
	total int
	byIP  map[netip.Prefix]int
}

// New caps ln at max connections in all and perIP per client (an IPv4
// address or an IPv6 /64); 0 means no cap of that kind.
func New(ln net.Listener, max, perIP int) *Listener {
	return &Listener{Listener: ln, max: max, perIP: perIP, byIP: map[netip.Prefix]int{}}
}

// Accept returns the next connection within the caps; those over a cap are
// closed and not returned.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key := clientKey(c.RemoteAddr())
		if l.acquire(key) {
			return &conn{Conn: c, release: func() { l.release(key) }}, nil
		}
		c.Close()
	}
}

// Open returns the number of connections held now.
func (l *Listener) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

func (l *Listener) acquire(key netip.Prefix) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if (l.max > 0 && l.total >= l.max) || (l.perIP > 0 && l.byIP[key] >= l.perIP) {
		return false
	}
	l.total++
	l.byIP[key]++
	return true
}

func (l *Listener) release(key netip.Prefix) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.byIP[key]--; l.byIP[key] <= 0 {
		delete(l.byIP, key)
	}
}

func clientKey(a net.Addr) netip.Prefix {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Prefix{}
	}
	ip := ap.Addr().Unmap()
	if ip.Is4() {
		return netip.PrefixFrom(ip, 32)
	}
	p, _ := ip.Prefix(64)
	return p
}

type conn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
