package pop3

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"mailconf/mailserver/accounts"
	"mailconf/mailserver/store"
)

// past is an expired deadline: a blocked read returns at once.
var past = time.Unix(1, 0)

var (
	errDraining    = errors.New("server shutting down")
	errLineTooLong = errors.New("line too long")
	errLineFlood   = errors.New("line far too long")
)

// maxDiscard is how much of an overlong line is read and thrown away
// before the connection is given up on.
const maxDiscard = 64 << 10

type state int

const (
	stateAuthorization state = iota
	stateTransaction
)

// msg is one message of the maildrop snapshot.
type msg struct {
	uid     uint32
	size    int64            // wire size
	ref     store.MessageRef // the body file, opened without an index lookup
	deleted bool
	gone    bool // expunged by another session (IMAP) since the login
}

type session struct {
	srv      *Server
	raw      net.Conn // the TCP connection (deadlines are set here)
	conn     net.Conn // raw, or TLS over raw
	br       *bufio.Reader
	bw       *bufio.Writer
	ip       netip.Addr
	release  func() // the connection's slot in srv.limit; idempotent
	implicit bool
	tls      bool
	log      *slog.Logger

	dmu      sync.Mutex // orders drain against arming the read deadline
	draining bool

	state    state
	user     string // from USER, until PASS
	authFail int
	badCmds  int

	acct    store.Account
	mailbox store.Mailbox
	msgs    []msg
	locked  bool // holds srv.locks[acct.ID]; guarded by srv.mu
	// changes signals commits to the INBOX after the snapshot began;
	// modseq is the HIGHESTMODSEQ the snapshot's expunge knowledge is
	// current to. verify makes RETR ask the index again for every message
	// (after a failed catch-up), as a slower but always exact fallback.
	changes     <-chan struct{}
	stopChanges func()
	modseq      uint64
	verify      bool
	bodyR       *bufio.Reader
	scratch     []byte

	retrieved, deleted int
}

func newSession(s *Server, c net.Conn, ip netip.Addr, release func(), implicit bool) *session {
	return &session{
		srv: s, raw: c, conn: c, ip: ip, release: release, implicit: implicit,
		br:      bufio.NewReaderSize(c, 4096),
		bw:      bufio.NewWriterSize(c, 32<<10),
		log:     s.log.With("ip", ip.String(), "tls", implicit),
		scratch: make([]byte, 0, 128),
	}
}

// drain makes the session end at its next read (Shutdown).
func (c *session) drain() {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	c.draining = true
	_ = c.raw.SetReadDeadline(past)
}

func (c *session) isDraining() bool {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	return c.draining
}

func (c *session) armRead() error {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	if c.draining {
		return errDraining
	}
	return c.raw.SetReadDeadline(time.Now().Add(c.srv.cfg.IdleTimeout))
}

func (c *session) run() {
	defer c.srv.wg.Done()
	defer func() {
		// The maildrop is free before the client sees the close, so it
		// can log in again at once.
		c.srv.untrack(c)
		c.raw.Close()
		if c.stopChanges != nil {
			c.stopChanges()
		}
		c.log.Info("pop3 session end", "retrieved", c.retrieved, "deleted", c.deleted)
	}()
	if c.implicit {
		if !c.handshake() {
			return
		}
	}
	c.reply("+OK ", c.srv.cfg.Hostname, " POP3 ready")
	for {
		if !c.completeLineBuffered() {
			if err := c.flush(); err != nil {
				return
			}
		}
		line, err := c.readLine(maxCommandLine)
		if errors.Is(err, errLineTooLong) {
			if !c.bad("-ERR Line too long") {
				return
			}
			continue
		}
		if err != nil {
			c.readFailed(err)
			return
		}
		_ = c.raw.SetWriteDeadline(time.Now().Add(writeTimeout))
		if !c.dispatch(line) {
			_ = c.flush()
			return
		}
	}
}

// completeLineBuffered reports whether a whole command line is already
// read: then its reply is held back and sent with the next ones in one
// write (RFC 2449 PIPELINING).
func (c *session) completeLineBuffered() bool {
	n := c.br.Buffered()
	if n == 0 {
		return false
	}
	b, _ := c.br.Peek(n)
	return bytes.IndexByte(b, '\n') >= 0
}

func (c *session) flush() error {
	if c.bw.Buffered() == 0 {
		return nil
	}
	_ = c.raw.SetWriteDeadline(time.Now().Add(writeTimeout))
	return c.bw.Flush()
}

// readLine returns the next line without its line end. A line longer than
// limit is read and dropped (up to maxDiscard) and reported as
// errLineTooLong.
func (c *session) readLine(limit int) ([]byte, error) {
	if err := c.armRead(); err != nil {
		return nil, err
	}
	line, err := c.br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		dropped := len(line)
		for errors.Is(err, bufio.ErrBufferFull) {
			if dropped > maxDiscard {
				return nil, fmt.Errorf("pop3: %w (more than %d bytes)", errLineFlood, maxDiscard)
			}
			line, err = c.br.ReadSlice('\n')
			dropped += len(line)
		}
		if err != nil {
			return nil, err
		}
		return nil, errLineTooLong
	}
	if err != nil {
		return nil, err
	}
	if len(line) > limit {
		return nil, errLineTooLong
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

// readFailed says goodbye after a read error where that still makes sense.
func (c *session) readFailed(err error) {
	var ne net.Error
	switch {
	case errors.Is(err, errDraining), c.isDraining():
		c.reply("-ERR [SYS/TEMP] Server shutting down")
	case errors.As(err, &ne) && ne.Timeout():
		c.reply("-ERR Autologout; idle for too long")
	case errors.Is(err, errLineFlood):
		c.log.Warn("pop3 line flood", "err", err)
		c.reply("-ERR Line too long")
	default:
		return
	}
	_ = c.raw.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_ = c.bw.Flush()
}

// reply writes one status line (the parts concatenated) plus CRLF.
func (c *session) reply(parts ...string) {
	for _, p := range parts {
		c.bw.WriteString(p)
	}
	c.bw.WriteString("\r\n")
}

// bad answers a bad command; false means the connection must end.
func (c *session) bad(text string) bool {
	c.badCmds++
	if c.state == stateAuthorization && c.badCmds >= maxBadCommands {
		c.reply("-ERR Too many invalid commands")
		c.log.Warn("pop3 too many invalid commands")
		return false
	}
	c.reply(text)
	return true
}

func (c *session) handshake() bool {
	tc := tls.Server(c.raw, c.srv.cfg.TLS)
	ctx, cancel := context.WithTimeout(c.srv.ctx, handshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		c.log.Debug("pop3 tls handshake failed", "err", err)
		return false
	}
	c.conn = tc
	c.tls = true
	c.br.Reset(tc)
	c.bw.Reset(tc)
	return true
}

// dispatch runs one command; false ends the connection.
func (c *session) dispatch(line []byte) bool {
	cmd, err := parseCommand(line)
	if errors.Is(err, errUnknownCommand) {
		return c.bad("-ERR Unknown command")
	}
	if err != nil {
		return c.bad("-ERR Syntax error")
	}
	switch cmd.verb {
	case "CAPA":
		c.capa()
		return true
	case "QUIT":
		return c.quit()
	case "NOOP":
		if c.state != stateTransaction {
			return c.bad("-ERR Not logged in")
		}
		c.reply("+OK")
		return true
	case "APOP":
		return c.bad("-ERR APOP is not supported; use USER/PASS or AUTH PLAIN")
	}
	if c.state == stateAuthorization {
		switch cmd.verb {
		case "STLS":
			return c.stls(cmd)
		case "USER":
			return c.cmdUser(cmd)
		case "PASS":
			return c.cmdPass(cmd)
		case "AUTH":
			return c.cmdAuth(cmd)
		}
		return c.bad("-ERR Not logged in")
	}
	switch cmd.verb {
	case "STAT":
		return c.stat(cmd)
	case "LIST":
		return c.list(cmd)
	case "UIDL":
		return c.uidl(cmd)
	case "RETR":
		return c.retr(cmd, -1)
	case "TOP":
		return c.retr(cmd, 0)
	case "DELE":
		return c.dele(cmd)
	case "RSET":
		return c.rset(cmd)
	}
	return c.bad("-ERR Already logged in")
}

func (c *session) capa() {
	cfg := &c.srv.cfg
	c.reply("+OK Capability list follows")
	c.reply("TOP")
	c.reply("UIDL")
	c.reply("RESP-CODES")
	c.reply("AUTH-RESP-CODE")
	c.reply("PIPELINING")
	if c.tls {
		c.reply("USER")
		c.reply("SASL PLAIN")
	} else if c.state == stateAuthorization {
		c.reply("STLS")
	}
	switch {
	case cfg.Expire == ExpireNever:
		c.reply("EXPIRE NEVER")
	case cfg.Expire > 0:
		days := (cfg.Expire + 24*time.Hour - 1) / (24 * time.Hour)
		c.reply("EXPIRE ", strconv.FormatInt(int64(days), 10))
	}
	if cfg.LoginDelay > 0 {
		secs := (cfg.LoginDelay + time.Second - 1) / time.Second
		c.reply("LOGIN-DELAY ", strconv.FormatInt(int64(secs), 10))
	}
	c.reply("IMPLEMENTATION mailconf")
	c.reply(".")
}

func (c *session) stls(cmd command) bool {
	if c.tls {
		return c.bad("-ERR TLS is already active")
	}
	if cmd.n != 0 {
		return c.bad("-ERR Syntax error")
	}
	c.reply("+OK Begin TLS negotiation")
	if err := c.flush(); err != nil {
		return false
	}
	// RFC 2595 §4 and CVE-2011-0411: whatever the client sent after STLS
	// in plaintext must not be run as if it had come over TLS.
	if n := c.br.Buffered(); n > 0 {
		c.log.Warn("pop3 discarded plaintext pipelined after STLS", "bytes", n)
	}
	c.br.Reset(c.raw)
	if err := c.armRead(); err != nil {
		return false
	}
	if !c.handshake() {
		return false
	}
	c.user = ""
	c.log = c.log.With("stls", true)
	return true
}

const plaintextRefused = "-ERR [AUTH] Plaintext authentication disallowed on non-secure connections; use STLS"

func (c *session) cmdUser(cmd command) bool {
	if !c.tls {
		return c.bad(plaintextRefused)
	}
	if cmd.n != 1 {
		return c.bad("-ERR Syntax error")
	}
	// +OK for every name: the answer reveals nothing about which
	// accounts exist.
	c.user = string(cmd.args[0])
	c.reply("+OK")
	return true
}

func (c *session) cmdPass(cmd command) bool {
	if !c.tls {
		return c.bad(plaintextRefused)
	}
	if c.user == "" {
		return c.bad("-ERR USER first")
	}
	user := c.user
	c.user = ""
	return c.login(user, string(cmd.rest))
}

func (c *session) cmdAuth(cmd command) bool {
	if cmd.n == 0 {
		// RFC 1734 clients list the mechanisms with a bare AUTH.
		c.reply("+OK")
		if c.tls {
			c.reply("PLAIN")
		}
		c.reply(".")
		return true
	}
	if !c.tls {
		return c.bad(plaintextRefused)
	}
	if !equalFoldASCII(cmd.args[0], "PLAIN") {
		return c.bad("-ERR Unsupported authentication mechanism")
	}
	var resp []byte
	switch {
	case cmd.n == 2 && string(cmd.args[1]) == "=":
		resp = nil
	case cmd.n == 2:
		resp = cmd.args[1]
	default:
		c.reply("+ ")
		if err := c.flush(); err != nil {
			return false
		}
		line, err := c.readLine(maxSASLLine)
		if errors.Is(err, errLineTooLong) {
			return c.bad("-ERR Line too long")
		}
		if err != nil {
			c.readFailed(err)
			return false
		}
		if string(line) == "*" {
			c.reply("-ERR Authentication cancelled")
			return true
		}
		resp = line
	}
	dec := make([]byte, base64.StdEncoding.DecodedLen(len(resp)))
	n, err := base64.StdEncoding.Decode(dec, resp)
	if err != nil {
		return c.bad("-ERR Invalid base64 data")
	}
	dec = dec[:n]
	// RFC 4616: [authzid] NUL authcid NUL passwd.
	authz, rest, ok1 := bytes.Cut(dec, []byte{0})
	authc, pass, ok2 := bytes.Cut(rest, []byte{0})
	if !ok1 || !ok2 || bytes.IndexByte(pass, 0) >= 0 || len(authc) == 0 {
		return c.bad("-ERR [AUTH] Malformed PLAIN response")
	}
	if len(authz) > 0 && !bytes.EqualFold(authz, authc) {
		// Logging in as someone else (proxy authorization) is not offered.
		return c.authFailed()
	}
	user, password := string(authc), string(pass)
	clear(dec) // no copy of the password outlives the login
	return c.login(user, password)
}

func (c *session) authFailed() bool {
	c.authFail++
	if c.authFail >= maxAuthFailures {
		c.reply("-ERR [AUTH] Authentication failed; too many failures, closing")
		return false
	}
	c.reply("-ERR [AUTH] Authentication failed")
	return true
}

func (c *session) login(user, pass string) bool {
	ctx, cancel := context.WithTimeout(c.srv.ctx, backendTimeout)
	defer cancel()
	acct, err := c.srv.auth.Authenticate(ctx, "pop3", c.ip, user, pass)
	switch {
	case errors.Is(err, accounts.ErrAuthFailed):
		return c.authFailed()
	case errors.Is(err, accounts.ErrThrottled):
		c.reply("-ERR [LOGIN-DELAY] Too many failed logins; try again later")
		return false
	case err != nil:
		c.log.Error("pop3 authentication", "err", err)
		c.reply("-ERR [SYS/TEMP] Authentication temporarily unavailable")
		return true
	}
	c.acct = acct
	inUse, tooSoon := c.srv.lock(c, acct.ID)
	if inUse {
		c.log.Info("pop3 maildrop in use", "user", acct.Address)
		c.reply("-ERR [IN-USE] Mailbox is locked by another POP3 session")
		c.acct = store.Account{}
		return true
	}
	if tooSoon {
		c.reply("-ERR [LOGIN-DELAY] Logged in too recently; try again later")
		c.acct = store.Account{}
		return true
	}
	if err := c.snapshot(ctx); err != nil {
		c.srv.unlock(c)
		if c.stopChanges != nil {
			c.stopChanges()
			c.changes, c.stopChanges = nil, nil
		}
		c.log.Error("pop3 open maildrop", "user", acct.Address, "err", err)
		c.acct = store.Account{}
		c.reply("-ERR [SYS/TEMP] Mailbox temporarily unavailable")
		return true
	}
	c.state = stateTransaction
	c.log = c.log.With("user", acct.Address)
	c.reply("+OK Logged in")
	return true
}

// snapshot fixes the maildrop: INBOX as it is now, numbered 1..n in UID
// order, with wire sizes and body references. The mailbox is watched from
// before the listing on, so that an expunge by another session is noticed
// (syncExpunges) even though RETR no longer consults the index.
func (c *session) snapshot(ctx context.Context) error {
	mb, err := c.srv.st.Mailbox(ctx, c.acct.ID, store.Inbox)
	if err != nil {
		return err
	}
	c.changes, c.stopChanges = c.srv.st.Watch(mb.ID)
	// Read after the watch began: whatever commits later either signals
	// the watch or is already in this HIGHESTMODSEQ and the listing.
	if mb, err = c.srv.st.Mailbox(ctx, c.acct.ID, store.Inbox); err != nil {
		return err
	}
	refs, err := c.srv.st.MessageRefs(ctx, mb.ID)
	if err != nil {
		return err
	}
	msgs := make([]msg, 0, len(refs))
	for _, r := range refs {
		k := sizeKey{mb.ID, mb.UIDValidity, r.UID}
		size, ok := c.srv.cachedSize(k)
		if !ok {
			size, err = c.measure(r)
			if errors.Is(err, store.ErrNotFound) {
				continue // expunged meanwhile
			}
			if err != nil {
				return err
			}
			c.srv.storeSize(k, size)
		}
		msgs = append(msgs, msg{uid: r.UID, size: size, ref: r})
	}
	c.mailbox, c.msgs, c.modseq = mb, msgs, mb.HighestModSeq
	return nil
}

// syncExpunges marks the snapshot's messages that another session has
// expunged since the last check. It costs nothing unless the mailbox
// changed. If the catch-up fails, RETR falls back to an index lookup per
// message for the rest of the session.
func (c *session) syncExpunges(ctx context.Context) {
	if c.verify {
		return
	}
	select {
	case <-c.changes:
	default:
		return
	}
	_, vanished, highest, err := c.srv.st.Changes(ctx, c.mailbox.ID, c.modseq)
	if err != nil {
		c.log.Warn("pop3 expunge catch-up failed; checking every message", "err", err)
		c.verify = true
		return
	}
	c.modseq = highest
	for _, uid := range vanished {
		// Snapshot numbers are in UID order.
		i, found := slices.BinarySearchFunc(c.msgs, uid, func(m msg, u uint32) int { return cmp.Compare(m.uid, u) })
		if found {
			c.msgs[i].gone = true
		}
	}
}

func (c *session) bodyReader(b *store.Body) *bufio.Reader {
	if c.bodyR == nil {
		c.bodyR = bufio.NewReaderSize(b, 32<<10)
	} else {
		c.bodyR.Reset(b)
	}
	return c.bodyR
}

func (c *session) measure(r store.MessageRef) (int64, error) {
	b, err := c.srv.st.OpenRef(r)
	if err != nil {
		return 0, err
	}
	defer b.Close()
	return wireSize(c.bodyReader(b))
}

func (c *session) quit() bool {
	if c.state != stateTransaction {
		c.reply("+OK Logging out")
		return false
	}
	// UPDATE state.
	var gone []uint32
	for _, m := range c.msgs {
		if m.deleted {
			gone = append(gone, m.uid)
		}
	}
	if len(gone) == 0 {
		c.reply("+OK Logging out")
		return false
	}
	// The deletions are what the client asked for with QUIT; a shutdown
	// arriving now must not cut them off halfway.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.srv.ctx), backendTimeout)
	defer cancel()
	removed, err := c.srv.st.Remove(ctx, c.mailbox.ID, gone)
	if err != nil {
		c.log.Error("pop3 update", "err", err, "marked", len(gone))
		c.reply("-ERR [SYS/TEMP] Some deleted messages were not removed")
		return false
	}
	c.deleted = len(removed)
	c.reply("+OK Logging out, messages deleted")
	return false
}

// message resolves a message-number argument; on failure it has replied.
func (c *session) message(arg []byte) (*msg, int, bool) {
	n, ok := parseNumber(arg)
	if !ok || n < 1 || n > len(c.msgs) {
		c.reply("-ERR No such message")
		return nil, 0, false
	}
	m := &c.msgs[n-1]
	if m.deleted {
		c.reply("-ERR Message is deleted")
		return nil, 0, false
	}
	return m, n, true
}

func (c *session) totals() (count int, size int64) {
	for _, m := range c.msgs {
		if !m.deleted {
			count++
			size += m.size
		}
	}
	return count, size
}

// numLine writes "<prefix><a> <b>\r\n" without allocating.
func (c *session) numLine(prefix string, a int, b int64) {
	s := append(c.scratch[:0], prefix...)
	s = strconv.AppendInt(s, int64(a), 10)
	s = append(s, ' ')
	s = strconv.AppendInt(s, b, 10)
	s = append(s, '\r', '\n')
	c.bw.Write(s)
	c.scratch = s
}

func (c *session) uidlLine(prefix string, n int, m *msg) {
	s := append(c.scratch[:0], prefix...)
	s = strconv.AppendInt(s, int64(n), 10)
	s = append(s, ' ')
	s = appendUIDL(s, m.uid, c.mailbox.UIDValidity)
	s = append(s, '\r', '\n')
	c.bw.Write(s)
	c.scratch = s
}

func (c *session) stat(cmd command) bool {
	if cmd.n != 0 {
		return c.bad("-ERR Syntax error")
	}
	n, size := c.totals()
	c.numLine("+OK ", n, size)
	return true
}

func (c *session) list(cmd command) bool {
	switch cmd.n {
	case 0:
		n, size := c.totals()
		c.numLine("+OK ", n, size)
		for i := range c.msgs {
			if !c.msgs[i].deleted {
				c.numLine("", i+1, c.msgs[i].size)
			}
		}
		c.reply(".")
	case 1:
		if m, n, ok := c.message(cmd.args[0]); ok {
			c.numLine("+OK ", n, m.size)
		}
	default:
		return c.bad("-ERR Syntax error")
	}
	return true
}

func (c *session) uidl(cmd command) bool {
	switch cmd.n {
	case 0:
		c.reply("+OK")
		for i := range c.msgs {
			if !c.msgs[i].deleted {
				c.uidlLine("", i+1, &c.msgs[i])
			}
		}
		c.reply(".")
	case 1:
		if m, n, ok := c.message(cmd.args[0]); ok {
			c.uidlLine("+OK ", n, m)
		}
	default:
		return c.bad("-ERR Syntax error")
	}
	return true
}

// retr serves RETR (lines < 0) and TOP (the line count from the second
// argument).
func (c *session) retr(cmd command, lines int) bool {
	want := 1
	if lines >= 0 {
		want = 2
	}
	if cmd.n != want {
		return c.bad("-ERR Syntax error")
	}
	if lines >= 0 {
		var ok bool
		if lines, ok = parseNumber(cmd.args[1]); !ok {
			return c.bad("-ERR Syntax error")
		}
	}
	m, _, ok := c.message(cmd.args[0])
	if !ok {
		return true
	}
	ctx, cancel := context.WithTimeout(c.srv.ctx, backendTimeout)
	defer cancel()
	c.syncExpunges(ctx)
	var b *store.Body
	var err error
	switch {
	case m.gone:
		err = store.ErrNotFound
	case c.verify:
		b, err = c.srv.st.OpenMessage(ctx, c.mailbox.ID, m.uid)
	default:
		b, err = c.srv.st.OpenRef(m.ref)
	}
	if errors.Is(err, store.ErrNotFound) {
		c.reply("-ERR Message was removed by another session")
		return true
	}
	if err != nil {
		c.log.Error("pop3 open message", "uid", m.uid, "err", err)
		c.reply("-ERR [SYS/TEMP] Message temporarily unavailable")
		return true
	}
	defer b.Close()
	if lines < 0 {
		s := append(c.scratch[:0], "+OK "...)
		s = strconv.AppendInt(s, m.size, 10)
		s = append(s, " octets\r\n"...)
		c.bw.Write(s)
		c.scratch = s
	} else {
		c.reply("+OK")
	}
	return c.sendBody(b, lines, m)
}

func (c *session) sendBody(b *store.Body, lines int, m *msg) bool {
	if err := encode(c.bw, c.bodyReader(b), true, lines); err != nil {
		// Part of the message is on the wire; the reply cannot be
		// completed, so the connection ends.
		c.log.Error("pop3 send message", "uid", m.uid, "err", err)
		return false
	}
	c.bw.WriteString(".\r\n")
	if lines < 0 {
		c.retrieved++
	}
	return true
}

func (c *session) dele(cmd command) bool {
	if cmd.n != 1 {
		return c.bad("-ERR Syntax error")
	}
	if m, _, ok := c.message(cmd.args[0]); ok {
		m.deleted = true
		c.reply("+OK Marked to be deleted")
	}
	return true
}

func (c *session) rset(cmd command) bool {
	if cmd.n != 0 {
		return c.bad("-ERR Syntax error")
	}
	for i := range c.msgs {
		c.msgs[i].deleted = false
	}
	n, size := c.totals()
	c.numLine("+OK ", n, size)
	return true
}
