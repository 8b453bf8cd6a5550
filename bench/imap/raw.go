package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// rawConn is the bench's wire-level client for the read phases. The
// library client builds a structure per response item, and on this
// 2-core machine that cost, shared by both servers, capped both at the
// client's speed; this one reads literals into io.Discard and counts.
type rawConn struct {
	c   net.Conn
	r   *bufio.Reader
	tag int
}

// rawStats is what one command's untagged responses added up to.
type rawStats struct {
	responses int   // untagged responses of the expected kind
	literal   int64 // bytes inside literals
	numbers   int   // numbers in * SEARCH responses
}

func dialRaw(tg target) (*rawConn, error) {
	c, err := net.DialTimeout("tcp", tg.addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	rc := &rawConn{c: c, r: bufio.NewReaderSize(c, 64<<10)}
	if _, _, err := rc.readResponse(); err != nil { // greeting
		c.Close()
		return nil, err
	}
	for _, cmd := range []string{"LOGIN " + quote(tg.user) + " " + quote(tg.pass), "SELECT INBOX"} {
		if _, err := rc.run(cmd, ""); err != nil {
			c.Close()
			return nil, fmt.Errorf("%s: %w", cmd, err)
		}
	}
	return rc, nil
}

func quote(s string) string { return strconv.Quote(s) } // plain ASCII credentials only

func (rc *rawConn) Close() error { return rc.c.Close() }

// run sends one command and reads to its tagged completion, which must be
// OK. kind ("FETCH", "SEARCH") selects the untagged responses counted.
func (rc *rawConn) run(cmd, kind string) (rawStats, error) {
	rc.tag++
	tag := "r" + strconv.Itoa(rc.tag)
	if _, err := io.WriteString(rc.c, tag+" "+cmd+"\r\n"); err != nil {
		return rawStats{}, err
	}
	var st rawStats
	for {
		line, lit, err := rc.readResponse()
		if err != nil {
			return st, err
		}
		st.literal += lit
		if rest, ok := bytes.CutPrefix(line, []byte(tag+" ")); ok {
			if !bytes.HasPrefix(rest, []byte("OK")) {
				return st, fmt.Errorf("%s: %s", cmd, rest)
			}
			return st, nil
		}
		rest, ok := bytes.CutPrefix(line, []byte("* "))
		if !ok || kind == "" {
			continue
		}
		switch kind {
		case "FETCH":
			// "* 12 FETCH (...": a number, then the keyword.
			if sp := bytes.IndexByte(rest, ' '); sp > 0 && bytes.HasPrefix(rest[sp+1:], []byte("FETCH ")) {
				st.responses++
			}
		case "SEARCH":
			if nums, ok := bytes.CutPrefix(rest, []byte("SEARCH")); ok {
				st.responses++
				st.numbers += len(bytes.Fields(nums))
			}
		}
	}
}

// readResponse reads one whole response: its text with every literal
// replaced by "{}", and the literals' total size.
func (rc *rawConn) readResponse() (line []byte, literal int64, err error) {
	for {
		part, err := rc.readLine()
		if err != nil {
			return nil, literal, err
		}
		n, ok := literalSize(part)
		if !ok {
			return append(line, part...), literal, nil
		}
		line = append(line, part[:bytes.LastIndexByte(part, '{')]...)
		line = append(line, "{}"...)
		if _, err := io.CopyN(io.Discard, rc.r, n); err != nil {
			return nil, literal, fmt.Errorf("literal: %w", err)
		}
		literal += n
	}
}

// readLine returns a line without its CRLF; a long line (a SEARCH result)
// is put together from the reader's buffer-sized pieces.
func (rc *rawConn) readLine() ([]byte, error) {
	var long []byte
	for {
		b, err := rc.r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			long = append(long, b...)
			continue
		}
		if err != nil {
			return nil, err
		}
		if long != nil {
			b = append(long, b...)
		}
		return bytes.TrimSuffix(bytes.TrimSuffix(b, []byte("\n")), []byte("\r")), nil
	}
}

// literalSize reads a trailing {N} or {N+}.
func literalSize(line []byte) (int64, bool) {
	if len(line) < 3 || line[len(line)-1] != '}' {
		return 0, false
	}
	open := bytes.LastIndexByte(line, '{')
	if open < 0 {
		return 0, false
	}
	n, err := strconv.ParseInt(string(bytes.TrimSuffix(line[open+1:len(line)-1], []byte("+"))), 10, 64)
	return n, err == nil && n >= 0
}
