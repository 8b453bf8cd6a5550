package check

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"mailconf/probe/report"
)

const (
	maxLine            = 8192 // longer lines are protocol violations
	maxTranscriptLines = 400
)

var errLineTooLong = errors.New("line too long")

// wire is one connection with its transcript. It is used by one goroutine.
type wire struct {
	conn    net.Conn
	r       *bufio.Reader
	tls     bool
	start   time.Time
	lines   []report.Line
	dropped int
	timeout time.Duration // per read/write
}

func newWire(c net.Conn, start time.Time, timeout time.Duration) *wire {
	return &wire{conn: c, r: bufio.NewReaderSize(c, maxLine), start: start, timeout: timeout}
}

func (w *wire) record(dir, text string) {
	if len(w.lines) >= maxTranscriptLines {
		w.dropped++
		return
	}
	w.lines = append(w.lines, report.Line{TMS: time.Since(w.start).Milliseconds(), Dir: dir, TLS: w.tls, Text: printable(text)})
}

func (w *wire) note(format string, args ...any) { w.record("*", fmt.Sprintf(format, args...)) }

// readLine reads one CRLF- or LF-terminated line within d (0: the wire's
// command timeout).
func (w *wire) readLine(d time.Duration) (string, error) {
	if d <= 0 {
		d = w.timeout
	}
	_ = w.conn.SetReadDeadline(time.Now().Add(d))
	line, err := w.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		w.record("S", string(line[:120])+"…")
		return "", errLineTooLong
	}
	if err != nil {
		if len(line) > 0 {
			w.record("S", string(line))
		}
		// The partial line lets a caller recognise binary greetings that
		// never end in a newline (a TLS record).
		return string(line), err
	}
	s := strings.TrimRight(string(line), "\r\n")
	w.record("S", s)
	return s, nil
}

// write sends one command line. shown replaces the line in the transcript
// when it carries credentials.
func (w *wire) write(line, shown string) error {
	if shown == "" {
		shown = line
	}
	w.record("C", shown)
	_ = w.conn.SetWriteDeadline(time.Now().Add(w.timeout))
	_, err := w.conn.Write([]byte(line + "\r\n"))
	return err
}

// writeRaw sends bytes as one write (the STARTTLS injection test needs two
// commands in one segment).
func (w *wire) writeRaw(b string, shown ...string) error {
	for _, s := range shown {
		w.record("C", s)
	}
	_ = w.conn.SetWriteDeadline(time.Now().Add(w.timeout))
	_, err := w.conn.Write([]byte(b))
	return err
}

// upgrade switches to a TLS connection. Bytes still buffered from the
// plaintext phase are dropped with the old reader (the STARTTLS step has
// already counted them as a finding).
func (w *wire) upgrade(c net.Conn) {
	w.conn = c
	w.r = bufio.NewReaderSize(c, maxLine)
	w.tls = true
}

func (w *wire) transcript(id, endpoint, ip string) report.Transcript {
	t := report.Transcript{ID: id, Endpoint: endpoint, IP: ip, Lines: w.lines}
	if w.dropped > 0 {
		t.Lines = append(t.Lines, report.Line{TMS: time.Since(w.start).Milliseconds(), Dir: "*", Text: fmt.Sprintf("(%d more lines not kept)", w.dropped)})
	}
	if t.Lines == nil {
		t.Lines = []report.Line{}
	}
	return t
}

// printable escapes control and non-ASCII bytes so binary garbage (a TLS
// record on a plaintext port) stays readable and cannot forge lines.
func printable(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\r' || c == '\n':
			continue
		case c < 0x20 || c >= 0x7f:
			fmt.Fprintf(&b, "\\x%02x", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
