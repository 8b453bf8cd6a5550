package imap

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// bufferedLiteralLimit is go-imap's cap on literals outside APPEND.
const bufferedLiteralLimit = 4096

// maxLineLen bounds one command line (without literals) as the guard
// buffers it. go-imap itself stops at 50 KiB; Dovecot at 64 KiB.
const maxLineLen = 64 << 10

var errGuardClosed = errors.New("imap: connection closed by the literal guard")

// guardConn sits between the TLS layer (or the raw socket for plaintext
// test listeners) and go-imap's imapserver. It reads the client's plaintext
// command stream line by line and literal by literal, so that beta.8's
// literal defects (mailserver.md §1.5) never reach the library:
//
//   - a non-synchronizing literal larger than the library will accept closes
//     the connection before its bytes are handed over, so they can never be
//     parsed as commands;
//   - an oversized synchronizing literal is answered with a tagged NO here
//     and its line is dropped, so the library neither loses the reply nor
//     swallows the next command;
//   - the size of a literal announced before login is never used for
//     anything but this comparison, so nothing is allocated from it;
//   - if the library answers a command while bytes of its literal are still
//     unread (a command it rejected for another reason), the connection is
//     closed instead of letting the library run those bytes as commands.
//
// The guard hands bytes to the library at most one line at a time, so the
// library's bufio.Reader never reads ahead of the guard's bookkeeping.
type guardConn struct {
	net.Conn
	br *bufio.Reader

	appendLimit int64
	idleTimeout time.Duration
	authed      atomic.Bool
	release     func()
	closeOnce   sync.Once

	// Reader-side state, touched by the library's reading goroutine; the
	// fields shared with Write are under mu.
	out     []byte
	line    []byte
	tag     string
	cmd     string
	started bool // part of the current command was already handed over

	mu          sync.Mutex
	lit         int64 // literal bytes still to pass through unparsed
	syncPending bool  // a synchronizing literal awaits the library's "+"
	syncSize    int64
	contSeen    bool
	poisoned    bool

	wmu          sync.Mutex
	dropGreeting bool
	// While batching (a FETCH of many messages), responses collect in
	// wbuf and go out in batchFlushSize writes instead of one write per
	// message; endBatch sends the rest before the command's tagged
	// response.
	batching bool
	wbuf     []byte
	// Write deadlines are applied when bytes go to the socket, not when
	// the library asks: it sets one four times per FETCH response (30 s,
	// 5 min around a literal, 30 s, none), each a runtime timer update,
	// while its buffered writer reaches the socket once per many
	// responses. wantWD is the library's latest wish, setWD what the
	// socket has.
	wantWD, setWD time.Time
}

// deadlineSlack is how much earlier than asked a write deadline may fall
// so that a socket write need not move it: each response asks for
// "30 s from now", a few microseconds after the last.
const deadlineSlack = time.Second

// batchFlushSize is the write size while batching.
const batchFlushSize = 64 << 10

// batchWriteTimeout bounds endBatch's final write (the library's own
// response timeout is 30 s).
const batchWriteTimeout = 30 * time.Second

// beginBatch starts collecting responses (see guardConn.batching).
func (g *guardConn) beginBatch() {
	g.wmu.Lock()
	defer g.wmu.Unlock()
	g.batching = true
}

// endBatch sends what was collected and stops batching; the buffer is
// released so an idle connection holds none.
func (g *guardConn) endBatch() error {
	g.wmu.Lock()
	defer g.wmu.Unlock()
	g.batching = false
	var err error
	if len(g.wbuf) > 0 {
		g.setSocketWriteDeadline(time.Now().Add(batchWriteTimeout))
		_, err = g.Conn.Write(g.wbuf)
	}
	g.wbuf = nil
	return err
}

func newGuard(c net.Conn, appendLimit int64, idleTimeout time.Duration, release func()) *guardConn {
	c.SetWriteDeadline(time.Time{}) // so that setWD's zero is the truth
	return &guardConn{
		Conn:        c,
		br:          bufio.NewReaderSize(c, 4096),
		appendLimit: appendLimit,
		idleTimeout: idleTimeout,
		release:     release,
	}
}

// Close closes the connection and frees its per-IP slot once.
func (g *guardConn) Close() error {
	err := g.Conn.Close()
	g.closeOnce.Do(func() {
		if g.release != nil {
			g.release()
		}
	})
	return err
}

// SetReadDeadline caps every wait for client input at the configured idle
// timeout; the library's own 35-minute idle wait is longer.
func (g *guardConn) SetReadDeadline(t time.Time) error {
	if g.idleTimeout > 0 {
		limit := time.Now().Add(g.idleTimeout)
		if t.IsZero() || t.After(limit) {
			t = limit
		}
	}
	return g.Conn.SetReadDeadline(t)
}

// SetDeadline applies the same cap to the read side.
func (g *guardConn) SetDeadline(t time.Time) error {
	if err := g.SetWriteDeadline(t); err != nil {
		return err
	}
	return g.SetReadDeadline(t)
}

// SetWriteDeadline records the deadline for the next write to the socket
// (see wantWD).
func (g *guardConn) SetWriteDeadline(t time.Time) error {
	g.wmu.Lock()
	defer g.wmu.Unlock()
	g.wantWD = t
	return nil
}

// applyWriteDeadline gives the socket the wanted write deadline before a
// write, unless it already has one at most deadlineSlack earlier. Called
// with wmu held.
func (g *guardConn) applyWriteDeadline() {
	want, set := g.wantWD, g.setWD
	if want.Equal(set) {
		return
	}
	if !want.IsZero() && !set.IsZero() && !want.Before(set) && want.Sub(set) <= deadlineSlack {
		return
	}
	g.setSocketWriteDeadline(want)
}

// setSocketWriteDeadline sets the socket's write deadline now. Called
// with wmu held.
func (g *guardConn) setSocketWriteDeadline(t time.Time) {
	g.Conn.SetWriteDeadline(t)
	g.setWD = t
}

// writeSocket writes to the socket under the wanted deadline. Called with
// wmu held.
func (g *guardConn) writeSocket(p []byte) (int, error) {
	g.applyWriteDeadline()
	return g.Conn.Write(p)
}

func (g *guardConn) Read(p []byte) (int, error) {
	for {
		if len(g.out) > 0 {
			n := copy(p, g.out)
			g.out = g.out[n:]
			return n, nil
		}
		g.mu.Lock()
		if g.poisoned {
			g.mu.Unlock()
			return 0, errGuardClosed
		}
		if g.syncPending {
			if g.contSeen {
				g.lit = g.syncSize
			} else {
				// The library answered instead of asking for the literal:
				// the command is over and the client will not send it.
				g.started = false
			}
			g.syncPending, g.contSeen = false, false
		}
		lit := g.lit
		g.mu.Unlock()
		if lit > 0 {
			if int64(len(p)) > lit {
				p = p[:lit]
			}
			n, err := g.br.Read(p)
			g.mu.Lock()
			g.lit -= int64(n)
			g.mu.Unlock()
			return n, err
		}
		line, err := g.readLine()
		if err != nil {
			return 0, err
		}
		deliver, err := g.inspect(line)
		if err != nil {
			return 0, err
		}
		if deliver {
			g.out = line
		}
	}
}

// readLine reads one line including its LF, bounded by maxLineLen.
func (g *guardConn) readLine() ([]byte, error) {
	g.line = g.line[:0]
	for {
		chunk, err := g.br.ReadSlice('\n')
		if len(g.line)+len(chunk) > maxLineLen {
			g.bye("Command line too long")
			return nil, errGuardClosed
		}
		if err == nil {
			if len(g.line) == 0 {
				// The common case: the line sits in the buffer whole.
				return append([]byte(nil), chunk...), nil
			}
			g.line = append(g.line, chunk...)
			return append([]byte(nil), g.line...), nil
		}
		g.line = append(g.line, chunk...)
		if !errors.Is(err, bufio.ErrBufferFull) {
			if len(g.line) > 0 {
				// A last unterminated line: hand it over, the library
				// reports the syntax error and then sees EOF.
				return append([]byte(nil), g.line...), nil
			}
			return nil, err
		}
	}
}

// inspect looks at one client line and decides whether the library may
// see it. It returns an error when the connection must end.
func (g *guardConn) inspect(line []byte) (bool, error) {
	text := strings.TrimRight(string(line), "\r\n")
	if !g.started {
		g.tag, g.cmd = parseCommandStart(text)
	}
	size, nonSync, ok := trailingLiteral(text)
	if !ok {
		g.started = false
		return true, nil
	}
	limit := int64(bufferedLiteralLimit)
	if g.authed.Load() && g.cmd == "APPEND" {
		limit = g.appendLimit
	}
	if size > limit || size < 0 {
		if nonSync && !g.started && g.authed.Load() && g.cmd == "APPEND" && validTag(g.tag) && size >= 0 && size <= max(2*limit, 32<<20) {
			// An over-size message sent with LITERAL+: its bytes are
			// read and thrown away here, so the client gets its NO and
			// stays in step, and nothing in them is ever parsed.
			return false, g.discardLiteral(size, limit)
		}
		if nonSync || g.started || !validTag(g.tag) {
			// Its bytes are already on the way (or part of the command
			// was handed over): the only safe move is to hang up.
			g.bye(fmt.Sprintf("Literal of %s bytes exceeds the limit of %d", sizeText(size), limit))
			return false, errGuardClosed
		}
		g.started = false
		if err := g.reply(g.tag + " NO [TOOBIG] Literal exceeds the size limit of " + strconv.FormatInt(limit, 10) + " bytes\r\n"); err != nil {
			return false, err
		}
		return false, nil
	}
	g.started = true
	g.mu.Lock()
	if nonSync {
		g.lit = size
	} else {
		g.syncPending, g.syncSize, g.contSeen = true, size, false
	}
	g.mu.Unlock()
	return true, nil
}

func (g *guardConn) discardLiteral(n, limit int64) error {
	g.Conn.SetReadDeadline(time.Now().Add(5 * time.Minute))
	if _, err := io.CopyN(io.Discard, g.br, n); err != nil {
		return err
	}
	rest, err := g.readLine()
	if err != nil {
		return err
	}
	if _, _, ok := trailingLiteral(strings.TrimRight(string(rest), "\r\n")); ok {
		g.bye("Literal after a refused literal")
		return errGuardClosed
	}
	g.started = false
	return g.reply(g.tag + " NO [TOOBIG] Message exceeds the size limit of " + strconv.FormatInt(limit, 10) + " bytes\r\n")
}

func sizeText(n int64) string {
	if n < 0 {
		return "too many"
	}
	return strconv.FormatInt(n, 10)
}

// parseCommandStart returns the tag and the upper-case command name ("UID
// FETCH" for UID commands).
func parseCommandStart(line string) (tag, cmd string) {
	tag, rest, _ := strings.Cut(line, " ")
	name, rest, _ := strings.Cut(rest, " ")
	name = strings.ToUpper(name)
	if name == "UID" {
		sub, _, _ := strings.Cut(rest, " ")
		name += " " + strings.ToUpper(sub)
	}
	return tag, name
}

func validTag(tag string) bool {
	if tag == "" || tag[0] == '+' || tag[0] == '*' || len(tag) > 64 {
		return false
	}
	for i := 0; i < len(tag); i++ {
		c := tag[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`(){%"\`, c) >= 0 {
			return false
		}
	}
	return true
}

// trailingLiteral parses a literal announcement at the end of a line:
// "{N}", "{N+}" or "~{N}". A size too large for int64 is reported as -1.
func trailingLiteral(line string) (size int64, nonSync, ok bool) {
	if !strings.HasSuffix(line, "}") {
		return 0, false, false
	}
	open := strings.LastIndexByte(line, '{')
	if open < 0 {
		return 0, false, false
	}
	digits := line[open+1 : len(line)-1]
	if strings.HasSuffix(digits, "+") {
		nonSync = true
		digits = digits[:len(digits)-1]
	}
	if digits == "" {
		return 0, false, false
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, false, false
		}
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil {
		return -1, nonSync, true
	}
	return n, nonSync, true
}

// reply writes a response of the guard's own.
func (g *guardConn) reply(s string) error {
	g.wmu.Lock()
	defer g.wmu.Unlock()
	_, err := g.writeSocket([]byte(s))
	return err
}

// bye sends an untagged BYE and closes the connection.
func (g *guardConn) bye(text string) {
	g.mu.Lock()
	g.poisoned = true
	g.mu.Unlock()
	d := time.Now().Add(5 * time.Second)
	// On the socket at once, without wmu: a write blocked on a client
	// that does not read must give up within the same 5 s.
	g.Conn.SetWriteDeadline(d)
	g.SetWriteDeadline(d)
	g.reply("* BYE " + text + "\r\n")
	g.Close()
}

func (g *guardConn) Write(p []byte) (int, error) {
	g.wmu.Lock()
	defer g.wmu.Unlock()
	total := len(p)
	if g.dropGreeting {
		// After our own STARTTLS the library greets again; the client
		// expects no greeting there (RFC 9051 §6.2.1).
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			return total, nil
		}
		g.dropGreeting = false
		p = p[i+1:]
		if len(p) == 0 {
			return total, nil
		}
	}
	g.mu.Lock()
	if g.syncPending && !g.contSeen && len(p) > 0 && p[0] == '+' {
		g.contSeen = true
	}
	poison := g.lit > 0 && hasTaggedLine(p)
	if poison {
		g.poisoned = true
	}
	g.mu.Unlock()
	if g.batching && !poison {
		g.wbuf = append(g.wbuf, p...)
		if len(g.wbuf) >= batchFlushSize {
			_, err := g.writeSocket(g.wbuf)
			g.wbuf = g.wbuf[:0]
			if err != nil {
				return 0, err
			}
		}
		return total, nil
	}
	if len(g.wbuf) > 0 {
		_, err := g.writeSocket(g.wbuf)
		g.wbuf = g.wbuf[:0]
		if err != nil {
			return 0, err
		}
	}
	if _, err := g.writeSocket(p); err != nil {
		return 0, err
	}
	if poison {
		// The library finished a command whose literal it never read; it
		// would now parse that literal as commands.
		g.Conn.Close()
	}
	return total, nil
}

// hasTaggedLine reports whether p holds a line that is neither untagged
// ("*") nor a continuation ("+"). Writes start at a line start whenever the
// guard checks (no command response is in progress while a client literal
// is being transferred).
func hasTaggedLine(p []byte) bool {
	for start := 0; start < len(p); {
		if c := p[start]; c != '*' && c != '+' {
			return true
		}
		i := bytes.IndexByte(p[start:], '\n')
		if i < 0 {
			return false
		}
		start += i + 1
	}
	return false
}
