package smtp

import (
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"mailconf/internal/connlimit"
)

// limitListener wraps the listener the lead binds: it refuses connections
// over the per-IP and total limits before go-smtp sees them (go-smtp has no
// connection limits at all) and keeps a handle on every live connection so
// that Shutdown can end idle ones.
type limitListener struct {
	net.Listener
	srv *Server
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		tc, ok := l.srv.track(c)
		if ok {
			return tc, nil
		}
		go l.srv.refuse(c)
	}
}

// track registers c, or reports false when a limit is reached.
func (s *Server) track(c net.Conn) (*trackedConn, bool) {
	ip := connlimit.ClientAddr(c.RemoteAddr())
	release, err := s.limit.Acquire(ip)
	if err != nil {
		s.log.Warn("smtp connection refused", "remote", ip, "reason", err,
			"max_conns", s.cfg.MaxConns, "max_conns_per_ip", s.cfg.MaxConnsPerIP)
		return nil, false
	}
	tc := &trackedConn{Conn: c, srv: s, ip: ip, release: release}
	s.mu.Lock()
	// Under s.mu with the insertion: Shutdown either finds tc in conns or
	// tc starts out draining.
	tc.draining = s.draining
	s.conns[tc] = struct{}{}
	s.mu.Unlock()
	if s.cfg.Metrics != nil {
		s.cfg.Metrics.Connections.WithLabelValues(s.service).Inc()
	}
	return tc, true
}

func (s *Server) untrack(tc *trackedConn) {
	s.mu.Lock()
	delete(s.conns, tc)
	s.mu.Unlock()
	tc.release()
}

// refuse answers a connection over the limit. On implicit TLS a plaintext
// reply would only be a TLS alert to the client, so it is just closed.
func (s *Server) refuse(c net.Conn) {
	defer c.Close()
	if s.implicitTLS {
		return
	}
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, _ = c.Write([]byte("421 4.7.0 " + s.cfg.Hostname + " Too many connections, try again later\r\n"))
}

// trackedConn is the raw TCP connection under go-smtp (and under TLS on
// 465 and after STARTTLS). Its read deadline hook gives the server two
// things go-smtp lacks: ending idle connections at shutdown while a DATA
// transfer finishes, and dropping a connection after too many failed AUTHs.
type trackedConn struct {
	net.Conn
	srv     *Server
	ip      netip.Addr
	release func() // the connection's slot in srv.limit; idempotent

	mu       sync.Mutex
	inData   bool
	dataIdle time.Duration // per-read idle limit while inData
	dataEnd  time.Time     // cap on the whole DATA transfer
	draining bool
	dead     bool
}

// past is a deadline that has expired: reads fail at once with a timeout,
// and go-smtp answers "421 4.4.2 Idle timeout" and closes.
var past = time.Unix(1, 0)

// Read re-arms the read deadline before every read during DATA: go-smtp
// sets it once per command, which would make ReadTimeout a cap on the whole
// transfer, and its DATA reader fills whole buffers, so the session cannot
// re-arm it between reads either.
func (c *trackedConn) Read(b []byte) (int, error) {
	c.mu.Lock()
	dead, inData := c.dead, c.inData
	d := time.Now().Add(c.dataIdle)
	if d.After(c.dataEnd) {
		d = c.dataEnd
	}
	c.mu.Unlock()
	if dead {
		return 0, net.ErrClosed
	}
	if inData {
		_ = c.Conn.SetReadDeadline(d)
	}
	return c.Conn.Read(b)
}

func (c *trackedConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	if c.draining && !c.inData {
		t = past
	}
	c.mu.Unlock()
	return c.Conn.SetReadDeadline(t)
}

func (c *trackedConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.Conn.SetWriteDeadline(t)
}

func (c *trackedConn) Close() error {
	c.srv.untrack(c)
	return c.Conn.Close()
}

// beginData marks the DATA phase, during which reads time out only after
// idle without input (or at end), and shutdown waits for the transfer
// instead of cutting it.
func (c *trackedConn) beginData(idle time.Duration, end time.Time) {
	c.mu.Lock()
	c.inData, c.dataIdle, c.dataEnd = true, idle, end
	c.mu.Unlock()
}

func (c *trackedConn) endData() {
	c.mu.Lock()
	c.inData = false
	c.mu.Unlock()
}

// drain is called at shutdown: an idle connection is woken at once, a busy
// one on its next command read.
func (c *trackedConn) drain() {
	c.mu.Lock()
	c.draining = true
	idle := !c.inData
	c.mu.Unlock()
	if idle {
		_ = c.Conn.SetReadDeadline(past)
	}
}

// kill makes every further read fail, so go-smtp closes the connection
// after writing its current reply.
func (c *trackedConn) kill() {
	c.mu.Lock()
	c.dead = true
	c.mu.Unlock()
}

// underlying finds the trackedConn below a *tls.Conn.
func underlying(c net.Conn) *trackedConn {
	for c != nil {
		switch v := c.(type) {
		case *trackedConn:
			return v
		case interface{ NetConn() net.Conn }:
			c = v.NetConn()
		default:
			return nil
		}
	}
	return nil
}

// lingerClose closes after a reply the client may not have read yet: a
// plain close with unread input makes the kernel send a reset, which can
// destroy the reply before the client reads it. So the write side is shut
// first and pending input is discarded for a moment.
func (c *trackedConn) lingerClose() {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		_ = c.Conn.SetReadDeadline(time.Now().Add(time.Second))
		_, _ = io.CopyN(io.Discard, c.Conn, 1<<20)
	}
	_ = c.Close()
}
