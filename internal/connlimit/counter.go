package connlimit

import (
	"errors"
	"net"
	"net/netip"
	"sync"
)

// The reasons Counter.Acquire refuses a slot.
var (
	ErrTotal     = errors.New("connlimit: total connection limit reached")
	ErrPerClient = errors.New("connlimit: per-client connection limit reached")
)

// Counter is the bookkeeping under Listener, for servers that must answer a
// refused connection themselves (the mail protocols send a protocol-level
// "too many connections" line) or that share one cap across several
// listeners.
type Counter struct {
	max, perIP int

	mu    sync.Mutex
	total int
	byIP  map[netip.Prefix]int
}

// NewCounter caps at max connections in all and perIP per client (an IPv4
// address or an IPv6 /64); 0 means no cap of that kind.
func NewCounter(max, perIP int) *Counter {
	return &Counter{max: max, perIP: perIP, byIP: map[netip.Prefix]int{}}
}

// Acquire takes a slot for a connection from ip, or returns ErrTotal or
// ErrPerClient. release gives the slot back; calling it again does nothing,
// so it can sit on every path that ends a connection.
func (c *Counter) Acquire(ip netip.Addr) (release func(), err error) {
	key := clientKey(ip)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.max > 0 && c.total >= c.max {
		return nil, ErrTotal
	}
	if c.perIP > 0 && c.byIP[key] >= c.perIP {
		return nil, ErrPerClient
	}
	c.total++
	c.byIP[key]++
	var once sync.Once
	return func() { once.Do(func() { c.release(key) }) }, nil
}

// Open returns the number of slots held now.
func (c *Counter) Open() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total
}

func (c *Counter) release(key netip.Prefix) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total--
	if c.byIP[key]--; c.byIP[key] <= 0 {
		delete(c.byIP, key)
	}
}

// ClientAddr is the IP address of a connection's peer (IPv4-mapped IPv6
// unmapped), or the zero Addr when a is not an IP address and port.
func ClientAddr(a net.Addr) netip.Addr {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// clientKey groups addresses the way one host or one customer usually
// holds them: one IPv4 address, or an IPv6 /64. Every address that is not
// an IP (the zero Addr) shares one key.
func clientKey(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap()
	switch {
	case ip.Is4():
		return netip.PrefixFrom(ip, 32)
	case ip.Is6():
		p, _ := ip.Prefix(64)
		return p
	}
	return netip.Prefix{}
}
