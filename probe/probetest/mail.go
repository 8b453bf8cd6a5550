// Package probetest is the probe's hermetic world on loopback: scripted
// IMAP/POP3/SMTP servers that misbehave on demand, an authoritative DNS
// server, HTTP(S) discovery servers and certificates.
package probetest

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// Mail is a scripted mail server. The zero value of every field is the
// well-behaved default; each field makes it fail in one way.
type Mail struct {
	Proto    string // "imap", "pop3" or "smtp"
	Implicit bool   // TLS from the first byte
	Cert     *tls.Certificate
	// TLSConfig adjusts the server's TLS configuration (versions, client
	// certificates).
	TLSConfig  func(*tls.Config)
	User, Pass string

	Greeting      string // replaces the greeting line(s), "\n"-separated
	RawGreeting   []byte // sent as is instead of a greeting
	GreetDelay    time.Duration
	Silent        bool // accept and never speak
	CloseOnAccept bool // accept and close at once
	// Caps and CapsTLS replace the capability lists before/after TLS.
	Caps, CapsTLS []string
	// Replies replace the answer to a command verb ("AUTH", "AUTHENTICATE",
	// "LOGIN", "PASS", "EXAMINE", "MAIL", "STARTTLS", "STLS", "CAPA",
	// "EHLO", "CAPABILITY"); "TAG" is replaced by the IMAP tag. For the
	// login verbs it is the final answer whatever the credentials.
	Replies       map[string]string
	StartTLSExtra string // sent in the same write as the STARTTLS answer
	Injectable    bool   // executes commands pipelined before the TLS handshake
	ResetOnAuth   bool   // reset the connection when the login arrives

	mu     sync.Mutex
	logins int
}

// Logins is how many login attempts the server has seen.
func (m *Mail) Logins() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.logins
}

// Start listens on ip:0 (ip "" = 127.0.0.1) and returns the port.
func (m *Mail) Start(t testing.TB, ip string) int {
	t.Helper()
	if ip == "" {
		ip = "127.0.0.1"
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	done := make(chan struct{})
	t.Cleanup(func() { close(done); ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				go func() { <-done; c.Close() }()
				m.serve(c)
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

func (m *Mail) tlsConfig() *tls.Config {
	cfg := &tls.Config{Certificates: []tls.Certificate{*m.Cert}}
	if m.TLSConfig != nil {
		m.TLSConfig(cfg)
	}
	return cfg
}

type session struct {
	m       *Mail
	c       net.Conn
	r       *bufio.Reader
	tls     bool
	authed  bool
	userArg string
}

func (m *Mail) serve(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	if m.CloseOnAccept {
		return
	}
	s := &session{m: m, c: c}
	if m.Implicit && m.Cert != nil {
		tc := tls.Server(c, m.tlsConfig())
		if err := tc.Handshake(); err != nil {
			return
		}
		s.c, s.tls = tc, true
	}
	s.r = bufio.NewReader(s.c)
	if m.Silent {
		_, _ = s.r.ReadByte()
		return
	}
	time.Sleep(m.GreetDelay)
	switch {
	case m.RawGreeting != nil:
		_, _ = s.c.Write(m.RawGreeting)
		_, _ = s.r.ReadByte()
		return
	case m.Greeting != "":
		s.send(strings.Split(m.Greeting, "\n")...)
	default:
		s.send(map[string]string{"imap": "* OK [CAPABILITY IMAP4rev1] test ready", "pop3": "+OK test ready", "smtp": "220 mail.test ESMTP test"}[m.Proto])
	}
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			return
		}
		if !s.handle(strings.TrimRight(line, "\r\n")) {
			return
		}
	}
}

func (s *session) send(lines ...string) {
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l + "\r\n")
	}
	_, _ = s.c.Write([]byte(b.String()))
}

func (s *session) override(verb, tag string) ([]string, bool) {
	r, ok := s.m.Replies[verb]
	if !ok {
		return nil, false
	}
	return strings.Split(strings.ReplaceAll(r, "TAG", tag), "\n"), true
}

// upgrade answers STARTTLS with ok and runs the handshake. An injectable
// server keeps the bytes pipelined before the handshake and runs them
// afterwards, inside TLS - the bug class of the "No STARTTLS" study.
func (s *session) upgrade(ok string) bool {
	_, _ = s.c.Write([]byte(ok + "\r\n" + s.m.StartTLSExtra))
	pending := ""
	if n := s.r.Buffered(); n > 0 {
		b, _ := s.r.Peek(n)
		pending = string(b)
	}
	tc := tls.Server(s.c, s.m.tlsConfig())
	if err := tc.Handshake(); err != nil {
		return false
	}
	s.c, s.tls = tc, true
	s.r = bufio.NewReader(tc)
	if s.m.Injectable {
		for _, l := range strings.Split(strings.TrimRight(pending, "\r\n"), "\r\n") {
			if l != "" && !s.handle(l) {
				return false
			}
		}
	}
	return true
}

// checkPlain decodes a SASL PLAIN response and compares the credentials.
func (s *session) checkPlain(b64 string) bool {
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return false
	}
	parts := strings.Split(string(raw), "\x00")
	return len(parts) == 3 && parts[1] == s.m.User && parts[2] == s.m.Pass
}

func (s *session) countLogin() bool {
	s.m.mu.Lock()
	s.m.logins++
	s.m.mu.Unlock()
	if s.m.ResetOnAuth {
		if tc, ok := s.c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		if tc, ok := s.c.(*tls.Conn); ok {
			if nc, ok := tc.NetConn().(*net.TCPConn); ok {
				_ = nc.SetLinger(0)
			}
		}
		return false
	}
	return true
}

func (s *session) readLine() (string, bool) {
	l, err := s.r.ReadString('\n')
	if err != nil {
		return "", false
	}
	return strings.TrimRight(l, "\r\n"), true
}

func (s *session) caps(pre, post []string) []string {
	if s.tls || s.m.Cert == nil {
		if s.m.CapsTLS != nil {
			return s.m.CapsTLS
		}
		return post
	}
	if s.m.Caps != nil {
		return s.m.Caps
	}
	return pre
}

func (s *session) handle(line string) bool {
	switch s.m.Proto {
	case "imap":
		return s.imap(line)
	case "pop3":
		return s.pop3(line)
	}
	return s.smtp(line)
}

func (s *session) imap(line string) bool {
	tag, rest, _ := strings.Cut(line, " ")
	verb, args, _ := strings.Cut(rest, " ")
	verb = strings.ToUpper(verb)
	final := func(ok bool) bool {
		if r, found := s.override(verb, tag); found {
			s.send(r...)
			return true
		}
		if ok {
			s.authed = true
			s.send(tag + " OK Logged in")
		} else {
			s.send(tag + " NO [AUTHENTICATIONFAILED] Authentication failed.")
		}
		return true
	}
	switch verb {
	case "CAPABILITY":
		if r, ok := s.override(verb, tag); ok {
			s.send(r...)
			return true
		}
		c := s.caps([]string{"IMAP4rev1", "STARTTLS", "LOGINDISABLED"}, []string{"IMAP4rev1", "AUTH=PLAIN"})
		s.send("* CAPABILITY "+strings.Join(c, " "), tag+" OK done")
	case "STARTTLS":
		if r, ok := s.override(verb, tag); ok {
			s.send(r...)
			return true
		}
		return s.upgrade(tag + " OK Begin TLS negotiation now")
	case "AUTHENTICATE":
		if !s.countLogin() {
			return false
		}
		s.send("+ ")
		resp, ok := s.readLine()
		if !ok {
			return false
		}
		return final(s.checkPlain(resp))
	case "LOGIN":
		if !s.countLogin() {
			return false
		}
		f := strings.Fields(args)
		return final(len(f) == 2 && strings.Trim(f[0], `"`) == s.m.User && strings.Trim(f[1], `"`) == s.m.Pass)
	case "LIST":
		s.send(`* LIST (\Noselect) "/" ""`, tag+" OK LIST done")
	case "EXAMINE", "SELECT":
		if r, ok := s.override("EXAMINE", tag); ok {
			s.send(r...)
			return true
		}
		s.send("* 3 EXISTS", "* 0 RECENT", tag+" OK [READ-ONLY] EXAMINE done")
	case "LOGOUT":
		s.send("* BYE bye", tag+" OK LOGOUT done")
		return false
	case "NOOP":
		s.send(tag + " OK NOOP done")
	default:
		s.send(tag + " BAD unknown command")
	}
	return true
}

func (s *session) pop3(line string) bool {
	verb, args, _ := strings.Cut(line, " ")
	verb = strings.ToUpper(verb)
	final := func(ok bool) bool {
		if r, found := s.override(verb, ""); found {
			s.send(r...)
			return true
		}
		if ok {
			s.send("+OK logged in")
		} else {
			s.send("-ERR [AUTH] Authentication failed.")
		}
		return true
	}
	switch verb {
	case "CAPA":
		if r, ok := s.override(verb, ""); ok {
			s.send(r...)
			return true
		}
		c := s.caps([]string{"STLS", "TOP", "UIDL"}, []string{"TOP", "UIDL", "USER", "SASL PLAIN"})
		s.send(append(append([]string{"+OK capability list follows"}, c...), ".")...)
	case "STLS":
		if r, ok := s.override(verb, ""); ok {
			s.send(r...)
			return true
		}
		return s.upgrade("+OK Begin TLS negotiation")
	case "AUTH":
		if !s.countLogin() {
			return false
		}
		s.send("+ ")
		resp, ok := s.readLine()
		if !ok {
			return false
		}
		verb = "PASS"
		return final(s.checkPlain(resp))
	case "USER":
		s.send("+OK")
		s.userArg = args
	case "PASS":
		if !s.countLogin() {
			return false
		}
		return final(s.userArg == s.m.User && args == s.m.Pass)
	case "STAT":
		if r, ok := s.override(verb, ""); ok {
			s.send(r...)
			return true
		}
		s.send("+OK 2 320")
	case "QUIT":
		s.send("+OK bye")
		return false
	case "NOOP":
		s.send("+OK")
	default:
		s.send("-ERR unknown command")
	}
	return true
}

func (s *session) smtp(line string) bool {
	verb, args, _ := strings.Cut(line, " ")
	verb = strings.ToUpper(verb)
	if r, ok := s.override(verb, ""); ok && verb != "AUTH" {
		s.send(r...)
		return true
	}
	final := func(ok bool) bool {
		if r, found := s.override("AUTH", ""); found {
			s.send(r...)
			return true
		}
		if ok {
			s.send("235 2.7.0 Authentication successful")
		} else {
			s.send("535 5.7.8 Authentication credentials invalid")
		}
		return true
	}
	switch verb {
	case "EHLO":
		c := s.caps([]string{"PIPELINING", "STARTTLS"}, []string{"PIPELINING", "AUTH PLAIN LOGIN"})
		out := []string{"mail.test"}
		out = append(out, c...)
		lines := make([]string, len(out))
		for i, l := range out {
			sep := "-"
			if i == len(out)-1 {
				sep = " "
			}
			lines[i] = "250" + sep + l
		}
		s.send(lines...)
	case "STARTTLS":
		return s.upgrade("220 2.0.0 Ready to start TLS")
	case "AUTH":
		if !s.countLogin() {
			return false
		}
		mech, ir, _ := strings.Cut(args, " ")
		if strings.EqualFold(mech, "LOGIN") {
			s.send("334 VXNlcm5hbWU6")
			u, ok := s.readLine()
			if !ok {
				return false
			}
			s.send("334 UGFzc3dvcmQ6")
			p, ok := s.readLine()
			if !ok {
				return false
			}
			ub, _ := base64.StdEncoding.DecodeString(u)
			pb, _ := base64.StdEncoding.DecodeString(p)
			return final(string(ub) == s.m.User && string(pb) == s.m.Pass)
		}
		return final(s.checkPlain(ir))
	case "MAIL":
		s.send("250 2.1.0 Ok")
	case "RSET", "NOOP":
		s.send("250 2.0.0 Ok")
	case "QUIT":
		s.send("221 2.0.0 Bye")
		return false
	default:
		s.send("502 5.5.2 Error: command not recognized")
	}
	return true
}
