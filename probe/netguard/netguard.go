// Package netguard is the probe's only way onto the network: a dialer that
// refuses private, loopback, link-local and other special addresses and
// every port that is not a mail or web port (reference/probe.md §8.1).
//
// The address check runs in net.Dialer.Control, after resolution and just
// before connect(2), so neither DNS rebinding nor an HTTP redirect can slip
// a forbidden address past it, and a refused address never sees a packet.
package netguard

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// DefaultPorts are the mail and web ports the probe may reach.
var DefaultPorts = []int{25, 80, 110, 143, 443, 465, 587, 993, 995}

// Policy says what the probe may connect to.
type Policy struct {
	// Unrestricted disables every check: the CLI operator's own trust.
	Unrestricted bool
	// AllowHosts are host names (this service's own servers) exempt from
	// the address check.
	AllowHosts []string
	// AllowPrefixes are address ranges exempt from the address check.
	AllowPrefixes []netip.Prefix
	// AllowPorts are ports allowed in addition to DefaultPorts.
	AllowPorts []int
}

// BlockedError is returned for a refused connection.
type BlockedError struct {
	Addr netip.AddrPort
	Host string
	Port bool // the port, not the address, was refused
	Why  string
}

func (e *BlockedError) Error() string {
	what := "address"
	if e.Port {
		what = "port"
	}
	return fmt.Sprintf("netguard: %s %s (%s) refused: %s", what, e.Addr, e.Host, e.Why)
}

// IsBlocked reports whether err is a refusal by the guard, and whether it
// was the port.
func IsBlocked(err error) (blocked, port bool) {
	var be *BlockedError
	if errors.As(err, &be) {
		return true, be.Port
	}
	return false, false
}

// special are ranges that netip's predicates do not cover.
var special = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("2001:db8::/32"),
	netip.MustParsePrefix("2001::/23"),
	netip.MustParsePrefix("100::/64"),
}

var (
	nat64  = netip.MustParsePrefix("64:ff9b::/96")
	sixTo4 = netip.MustParsePrefix("2002::/16")
)

// Forbidden says why ip may not be dialled, or "" if it may.
func Forbidden(ip netip.Addr) string {
	ip = ip.Unmap()
	switch {
	case !ip.IsValid():
		return "invalid address"
	case ip.IsUnspecified():
		return "unspecified address"
	case ip.IsLoopback():
		return "loopback address"
	case ip.IsPrivate():
		return "private address"
	case ip.IsLinkLocalUnicast():
		return "link-local address"
	case ip.IsMulticast(), ip.IsLinkLocalMulticast(), ip.IsInterfaceLocalMulticast():
		return "multicast address"
	}
	for _, p := range special {
		if p.Contains(ip) {
			return "special-purpose address " + p.String()
		}
	}
	if ip.Is6() {
		b := ip.As16()
		if nat64.Contains(ip) {
			if why := Forbidden(netip.AddrFrom4([4]byte(b[12:16]))); why != "" {
				return "NAT64 of " + why
			}
		}
		if sixTo4.Contains(ip) {
			if why := Forbidden(netip.AddrFrom4([4]byte(b[2:6]))); why != "" {
				return "6to4 of " + why
			}
		}
	}
	return ""
}

// Check applies the policy to one connection target; host is the name the
// connection is for ("" for none).
func (p Policy) Check(host string, ap netip.AddrPort) error {
	if p.Unrestricted {
		return nil
	}
	if !p.portAllowed(int(ap.Port())) {
		return &BlockedError{Addr: ap, Host: host, Port: true, Why: "not a mail or web port"}
	}
	if p.hostAllowed(host) {
		return nil
	}
	for _, pre := range p.AllowPrefixes {
		if pre.Contains(ap.Addr().Unmap()) {
			return nil
		}
	}
	if why := Forbidden(ap.Addr()); why != "" {
		return &BlockedError{Addr: ap, Host: host, Why: why}
	}
	return nil
}

func (p Policy) portAllowed(port int) bool {
	return slices.Contains(DefaultPorts, port) || slices.Contains(p.AllowPorts, port)
}

func (p Policy) hostAllowed(host string) bool {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "" {
		return false
	}
	for _, h := range p.AllowHosts {
		if strings.TrimSuffix(strings.ToLower(h), ".") == host {
			return true
		}
	}
	return false
}

// Dialer connects to already-resolved addresses under a policy.
type Dialer struct {
	Policy  Policy
	Timeout time.Duration // connect timeout; 0 means 5 s
	// PortMap redirects logical ports to other ports after the policy
	// check. Hermetic tests use it so that "autoconfig.example.test:443"
	// reaches a test server on a random port; production leaves it nil.
	PortMap map[int]int
}

// control checks the address the socket is about to connect to, so that
// nothing reaches a refused address whatever resolved or redirected to it.
// The port was checked in its logical form before PortMap; here the
// address is what matters.
func (d *Dialer) control(host string, port int) func(network, address string, _ syscall.RawConn) error {
	return func(network, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("netguard: parse %q: %w", address, err)
		}
		return d.Policy.Check(host, netip.AddrPortFrom(ap.Addr(), uint16(port)))
	}
}

// DialIP connects to ip:port for host. The policy is checked on the logical
// port first and on the address again inside Control, at connect time.
func (d *Dialer) DialIP(ctx context.Context, host string, ip netip.Addr, port int) (net.Conn, error) {
	logical := netip.AddrPortFrom(ip, uint16(port))
	if err := d.Policy.Check(host, logical); err != nil {
		return nil, err
	}
	dialPort := port
	if p, ok := d.PortMap[port]; ok {
		dialPort = p
	}
	timeout := d.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	nd := net.Dialer{Timeout: timeout, Control: d.control(host, port)}
	conn, err := nd.DialContext(ctx, "tcp", net.JoinHostPort(ip.String(), strconv.Itoa(dialPort)))
	if err != nil {
		return nil, err
	}
	return conn, nil
}
