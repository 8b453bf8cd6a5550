package pop3

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// The wire form of a message.
//
// The store keeps bodies byte-exact as received, and a body may contain
// bare LF line ends (IMAP APPEND from a Unix client, a local tool). POP3
// has only CRLF lines, so every line is sent with CRLF: a line ending in
// LF or CRLF goes out ending in CRLF, and a last line without any line end
// gets one. A CR not followed by LF is content and passes through. The
// octet counts of STAT, LIST and the RETR "+OK" line are the sizes of this
// form before dot-stuffing (RFC 1939 §11), computed by the same code that
// sends it (encode with stuff=false into a counter), so they always equal
// what RETR delivers once the client has removed the stuffed dots.

// lineSink is where encode puts the wire form: a *bufio.Writer for RETR
// and TOP, a byte counter for sizes.
type lineSink interface {
	Write(p []byte) (int, error)
	WriteString(s string) (int, error)
	WriteByte(c byte) error
}

// counter counts bytes and discards them.
type counter struct{ n int64 }

func (c *counter) Write(p []byte) (int, error)       { c.n += int64(len(p)); return len(p), nil }
func (c *counter) WriteString(s string) (int, error) { c.n += int64(len(s)); return len(s), nil }
func (c *counter) WriteByte(byte) error              { c.n++; return nil }

// encode copies the message from r to w in wire form: CRLF line ends, a
// line end added after an unterminated last line, and, when stuff is set,
// a '.' added before every line that starts with '.'. bodyLines < 0 sends
// the whole message; otherwise only the header, the empty line ending it,
// and the first bodyLines lines of the body (TOP). The terminating ".\r\n"
// is the caller's.
func encode(w lineSink, r *bufio.Reader, stuff bool, bodyLines int) error {
	bol := true        // at the start of a line
	pendingCR := false // a CR ending a partial read, not yet known to start a CRLF
	inBody := false    // past the empty line that ends the header
	left := bodyLines
	lineLen := 0 // bytes of the current line written so far, to spot the empty line
	for {
		frag, err := r.ReadSlice('\n')
		if len(frag) > 0 {
			if bol {
				if inBody && bodyLines >= 0 {
					if left == 0 {
						return nil
					}
					left--
				}
				if stuff && frag[0] == '.' {
					if err := w.WriteByte('.'); err != nil {
						return err
					}
				}
				lineLen = 0
			}
			if n := len(frag); !pendingCR && n >= 2 && frag[n-2] == '\r' && frag[n-1] == '\n' {
				// Already in wire form (the common case): one write per line.
				if _, err := w.Write(frag); err != nil {
					return err
				}
				lineLen += n - 2
				if !inBody && lineLen == 0 {
					inBody = true
				}
				bol = true
				goto next
			}
			complete := frag[len(frag)-1] == '\n'
			content := frag
			if complete {
				content = frag[:len(frag)-1]
				if len(content) > 0 && content[len(content)-1] == '\r' {
					content = content[:len(content)-1]
				} else if len(content) == 0 && pendingCR {
					// The CR held back from the previous fragment
					// was the first half of this CRLF.
					pendingCR = false
				}
			}
			if pendingCR {
				if err := w.WriteByte('\r'); err != nil {
					return err
				}
				lineLen++
				pendingCR = false
			}
			if !complete && content[len(content)-1] == '\r' {
				content = content[:len(content)-1]
				pendingCR = true
			}
			if _, err := w.Write(content); err != nil {
				return err
			}
			lineLen += len(content)
			if complete {
				if _, err := w.WriteString("\r\n"); err != nil {
					return err
				}
				if !inBody && lineLen == 0 {
					inBody = true
				}
			}
			bol = complete
		}
	next:
		switch {
		case err == nil, errors.Is(err, bufio.ErrBufferFull):
		case errors.Is(err, io.EOF):
			if pendingCR {
				if err := w.WriteByte('\r'); err != nil {
					return err
				}
			}
			if !bol {
				if _, err := w.WriteString("\r\n"); err != nil {
					return err
				}
			}
			return nil
		default:
			return fmt.Errorf("pop3: read message: %w", err)
		}
	}
}

// wireSize is the octet count of a message's wire form, before stuffing.
func wireSize(r *bufio.Reader) (int64, error) {
	var c counter
	if err := encode(&c, r, false, -1); err != nil {
		return 0, err
	}
	return c.n, nil
}

// appendHex8 appends v as eight upper-case hex digits.
func appendHex8(b []byte, v uint32) []byte {
	const digits = "0123456789ABCDEF"
	for shift := 28; shift >= 0; shift -= 4 {
		b = append(b, digits[(v>>uint(shift))&0xF])
	}
	return b
}

// appendUIDL appends a message's unique id: UID then UIDVALIDITY, each as
// eight hex digits, Dovecot's default pop3_uidl_format %08Xu%08Xv. The
// store never reuses a UID under one UIDVALIDITY and changes UIDVALIDITY
// whenever UIDs cannot be kept, so the id is stable forever and never
// names another message; IMAP and POP3 agree on it.
func appendUIDL(b []byte, uid, uidValidity uint32) []byte {
	return appendHex8(appendHex8(b, uid), uidValidity)
}
