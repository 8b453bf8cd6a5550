package imap

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-message/textproto"

	"mailconf/mailserver/store"
)

func (ss *session) Fetch(w *imapserver.FetchWriter, set goimap.NumSet, opts *goimap.FetchOptions) (retErr error) {
	sel, err := ss.selected()
	if err != nil {
		return err
	}
	ctx, cancel := ss.ctx()
	defer cancel()
	markSeen := false
	if !sel.readOnly {
		for _, bs := range opts.BodySection {
			markSeen = markSeen || !bs.Peek
		}
		for _, bs := range opts.BinarySection {
			markSeen = markSeen || !bs.Peek
		}
	}
	mb := sel.mb
	mb.mu.Lock()
	ts := sel.resolveLocked(set)
	if markSeen && len(ts) > 0 {
		// Our \Seen change is reported in this FETCH's own responses,
		// not again by Poll.
		infos, err := mb.storeFlagsLocked(ctx, targetUIDs(ts), store.FlagsAdd, []string{store.FlagSeen}, sel.tracker)
		if err != nil {
			mb.mu.Unlock()
			return imapError(err)
		}
		// Report the flags as stored; targets expunged meanwhile by a
		// writer outside IMAP keep their last known entry.
		k := 0
		for i := range ts {
			for k < len(infos) && infos[k].UID < ts[i].uid {
				k++
			}
			if k < len(infos) && infos[k].UID == ts[i].uid {
				ts[i].e.Flags = infos[k].Flags
			}
		}
	}
	mb.mu.Unlock()
	needFull := opts.BodyStructure != nil || len(opts.BinarySection) > 0 || len(opts.BinarySectionSize) > 0
	needHeader := opts.Envelope
	for _, bs := range opts.BodySection {
		if len(bs.Part) == 0 && bs.Specifier == goimap.PartSpecifierHeader {
			needHeader = true
		} else {
			needFull = true
		}
	}
	sc := &fetchScratch{lower: map[*goimap.FetchItemBodySection][]string{}}
	if !needFull && !needHeader {
		// Index data only: one message value serves them all, as nothing
		// is read for it.
		m := message{srv: ss.srv}
		for i := range ts {
			if ts[i].seq == 0 {
				continue
			}
			m.e = &ts[i].e
			if err := ss.fetchOne(w, &ts[i], &m, opts, markSeen, sc); err != nil {
				return err
			}
		}
		return nil
	}
	if len(ts) > 1 {
		ss.g.beginBatch()
		defer func() {
			// The batched responses are only on the wire once this
			// write succeeds.
			if err := ss.g.endBatch(); err != nil && retErr == nil {
				retErr = fmt.Errorf("imap: fetch: send responses: %w", err)
			}
		}()
	}
	// A helper goroutine opens the next messages' files (and reads their
	// header blocks) while this one encodes and writes: on two cores the
	// open system calls and the response encoding overlap.
	ready, stop, recycle := prepareMessages(ctx, ss.srv, ts, needFull)
	defer stop()
	for p := range ready {
		m, err := p.m, p.err
		if errors.Is(err, store.ErrNotFound) {
			// Expunged meanwhile; the EXPUNGE follows at the next
			// legal point.
			continue
		}
		if err != nil {
			m.close()
			return internalErr("fetch", err)
		}
		err = ss.fetchOne(w, p.t, m, opts, markSeen, sc)
		m.close()
		recycle(m.data) // written out: the encoder copied it
		if err != nil {
			return err
		}
	}
	return imapError(ctx.Err())
}

// fetchPrepDepth is how many messages the preparing goroutine may run
// ahead of the writer (open files per FETCH at most).
const fetchPrepDepth = 8

type prepared struct {
	t   *target
	m   *message
	err error
}

// prepareMessages loads (needFull) or reads the header block of each
// visible target in order, ahead of the caller. stop must be called; it
// ends the goroutine and closes what the caller did not consume. The
// caller hands each loaded body back through recycle once written, so a
// FETCH of many messages reuses a few buffers instead of one per message.
func prepareMessages(ctx context.Context, srv *Server, ts []target, needFull bool) (ready <-chan prepared, stop func(), recycle func([]byte)) {
	ctx, cancel := context.WithCancel(ctx)
	ch := make(chan prepared, fetchPrepDepth)
	free := make(chan []byte, fetchPrepDepth+2)
	recycle = func(b []byte) {
		if b == nil {
			return
		}
		select {
		case free <- b[:0]:
		default:
		}
	}
	go func() {
		defer close(ch)
		for i := range ts {
			t := &ts[i]
			if t.seq == 0 {
				continue
			}
			m := &message{srv: srv, e: &t.e}
			var buf []byte
			select {
			case buf = <-free:
			default:
			}
			var err error
			if needFull {
				err = m.load(buf)
			} else {
				if !m.cachedHeader() {
					if t.e.Size <= maxPreload {
						// A first FETCH of headers: reading the small
						// body whole is one read into a recycled buffer,
						// cheaper than an open file and reads up to the
						// blank line.
						err = m.load(buf)
					}
					if err == nil {
						_, err = m.readHeader() // a copy goes to the cache
					}
				}
				// The header is all this FETCH needs.
				m.close()
				if m.data != nil {
					recycle(m.data)
					m.data, m.sr = nil, nil
				} else {
					recycle(buf)
				}
			}
			select {
			case ch <- prepared{t: t, m: m, err: err}:
			case <-ctx.Done():
				m.close()
				return
			}
		}
	}()
	return ch, func() {
		cancel()
		for p := range ch {
			p.m.close()
		}
	}, recycle
}

// message gives lazy access to one message's bytes for FETCH and SEARCH:
// the header block from the server's cache when it is there, the body
// file only when something needs it.
type message struct {
	srv     *Server
	e       *store.IndexEntry
	file    *store.Body
	sr      *io.SectionReader // the body: the open file, or data
	data    []byte
	err     error
	hdr     []byte
	hdrDone bool
}

func (m *message) open() (*io.SectionReader, error) {
	if m.sr == nil && m.err == nil {
		m.file, m.err = m.srv.st.OpenEntry(*m.e)
		if m.err == nil {
			m.sr = m.file.SectionReader
		}
	}
	return m.sr, m.err
}

// maxPreload is the largest body the preparing goroutine reads whole;
// larger ones are copied from the file by the writer.
const maxPreload = 64 << 10

// load reads a small body into buf (reused when large enough), so the
// goroutine writing the response only copies bytes; a larger body is
// opened and copied from its file by the writer.
func (m *message) load(buf []byte) error {
	if m.e.Size > maxPreload {
		_, err := m.open()
		return err
	}
	data, err := m.srv.st.ReadEntry(*m.e, buf)
	if err != nil {
		m.err = err
		return err
	}
	m.data, m.sr = data, io.NewSectionReader(bytes.NewReader(data), 0, int64(len(data)))
	return nil
}

// header returns the header block including the blank line that ends it
// (the whole message if it has none).
func (m *message) header() ([]byte, error) {
	if m.hdrDone || m.cachedHeader() {
		return m.hdr, nil
	}
	return m.readHeader()
}

// cachedHeader takes the header block from the server's cache if it is
// there.
func (m *message) cachedHeader() bool {
	h, ok := m.srv.hdrs.get(m.e.BodyKey())
	if ok {
		m.hdr, m.hdrDone = h, true
	}
	return ok
}

// readHeader reads the header block from the body and caches it.
func (m *message) readHeader() ([]byte, error) {
	b, err := m.open()
	if err != nil {
		return nil, err
	}
	h, err := readHeaderBlock(b)
	if err != nil {
		return nil, err
	}
	m.srv.hdrs.put(m.e.BodyKey(), h)
	m.hdr, m.hdrDone = h, true
	return h, nil
}

// close releases the file; a loaded body stays readable.
func (m *message) close() {
	if m.file != nil {
		m.file.Close()
		m.file = nil
		if m.data == nil {
			m.sr = nil
		}
	}
}

// fetchScratch is what one FETCH command reuses from message to message.
type fetchScratch struct {
	copyBuf []byte                                    // io.CopyBuffer's, for bodies served from their file
	lower   map[*goimap.FetchItemBodySection][]string // HEADER.FIELDS names, lower-cased at first use
	fields  []byte                                    // the last HEADER.FIELDS answer
}

// fetchOne writes one message's FETCH response. The response writer holds
// the connection's write lock until closed, so it is closed on every path:
// left open after a failed write, the library could never answer the
// command or close the connection.
func (ss *session) fetchOne(w *imapserver.FetchWriter, t *target, m *message, opts *goimap.FetchOptions, flags bool, sc *fetchScratch) error {
	rw := w.CreateMessage(t.seq)
	if err := writeFetchItems(rw, t, m, opts, flags, sc); err != nil {
		rw.Close()
		return err
	}
	return rw.Close()
}

func writeFetchItems(rw *imapserver.FetchResponseWriter, t *target, m *message, opts *goimap.FetchOptions, flags bool, sc *fetchScratch) error {
	info := &t.e
	if opts.UID {
		rw.WriteUID(goimap.UID(t.uid))
	}
	if opts.Flags || flags {
		rw.WriteFlags(imapFlags(info.Flags))
	}
	if opts.InternalDate {
		rw.WriteInternalDate(info.InternalDate)
	}
	if opts.RFC822Size {
		rw.WriteRFC822Size(info.Size)
	}
	if opts.Envelope {
		hdr, err := m.header()
		if err != nil {
			return internalErr("fetch", err)
		}
		h, _ := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(hdr)))
		rw.WriteEnvelope(imapserver.ExtractEnvelope(h))
	}
	var body *io.SectionReader
	if opts.BodyStructure != nil || len(opts.BinarySection) > 0 || len(opts.BinarySectionSize) > 0 {
		var err error
		if body, err = m.open(); err != nil {
			return internalErr("fetch", err)
		}
	}
	// The extractors read from the start: each gets its own reader.
	whole := func() *io.SectionReader { return io.NewSectionReader(body, 0, body.Size()) }
	if opts.BodyStructure != nil {
		rw.WriteBodyStructure(imapserver.ExtractBodyStructure(whole()))
	}
	for _, bs := range opts.BodySection {
		if err := writeBodySection(rw, bs, m, sc); err != nil {
			return err
		}
	}
	for _, bs := range opts.BinarySection {
		data := imapserver.ExtractBinarySection(whole(), bs)
		if err := writeLiteral(rw.WriteBinarySection(bs, int64(len(data))), data); err != nil {
			return err
		}
	}
	for _, bs := range opts.BinarySectionSize {
		rw.WriteBinarySectionSize(bs, imapserver.ExtractBinarySectionSize(whole(), bs))
	}
	return nil
}

// writeLiteral writes data as one literal and closes it.
func writeLiteral(wc io.WriteCloser, data []byte) error {
	if _, err := wc.Write(data); err != nil {
		wc.Close()
		return err
	}
	return wc.Close()
}

// writeBodySection serves BODY[], BODY[HEADER] and BODY[TEXT] of the whole
// message straight from the stored bytes (byte-exact, partials applied to
// those bytes, mailserver.md §1.5(4)); sub-parts and HEADER.FIELDS go
// through the library's extractor, HEADER.FIELDS of the message itself
// over the header block alone.
func writeBodySection(rw *imapserver.FetchResponseWriter, bs *goimap.FetchItemBodySection, m *message, sc *fetchScratch) error {
	headerOnly := len(bs.Part) == 0 && bs.Specifier == goimap.PartSpecifierHeader
	var hdr []byte
	var body *io.SectionReader
	var err error
	if headerOnly || len(bs.Part) == 0 && bs.Specifier == goimap.PartSpecifierText {
		if hdr, err = m.header(); err != nil {
			return internalErr("fetch", err)
		}
	}
	if !headerOnly {
		if body, err = m.open(); err != nil {
			return internalErr("fetch", err)
		}
	}
	var off, n int64
	raw := len(bs.Part) == 0 && len(bs.HeaderFields) == 0 && len(bs.HeaderFieldsNot) == 0
	switch {
	case raw && bs.Specifier == goimap.PartSpecifierNone:
		off, n = 0, body.Size()
	case raw && bs.Specifier == goimap.PartSpecifierHeader:
		off, n = 0, int64(len(hdr))
	case raw && bs.Specifier == goimap.PartSpecifierText:
		off = int64(len(hdr))
		n = body.Size() - off
	default:
		if headerOnly && len(bs.HeaderFields) > 0 && len(bs.HeaderFieldsNot) == 0 && bs.Partial == nil {
			lower, ok := sc.lower[bs]
			if !ok {
				lower = lowerFieldNames(bs.HeaderFields)
				sc.lower[bs] = lower
			}
			// The encoder copies the answer, so the next message reuses
			// its bytes.
			if data, ok := appendHeaderFields(sc.fields[:0], hdr, lower); ok {
				sc.fields = data
				return writeLiteral(rw.WriteBodySection(bs, int64(len(data))), data)
			}
		}
		var src io.Reader
		if headerOnly {
			src = bytes.NewReader(hdr)
		} else {
			src = io.NewSectionReader(body, 0, body.Size())
		}
		data := imapserver.ExtractBodySection(src, bs)
		return writeLiteral(rw.WriteBodySection(bs, int64(len(data))), data)
	}
	if p := bs.Partial; p != nil {
		if p.Offset >= n {
			off, n = off+n, 0
		} else {
			off += p.Offset
			n = min(n-p.Offset, p.Size)
		}
	}
	wc := rw.WriteBodySection(bs, n)
	switch {
	case headerOnly:
		_, err = wc.Write(hdr[off : off+n])
	case m.data != nil:
		// A preloaded body goes to the encoder in one write, without a
		// reader and copy buffer in between.
		_, err = wc.Write(m.data[off : off+n])
	default:
		if sc.copyBuf == nil {
			sc.copyBuf = make([]byte, 32<<10)
		}
		_, err = io.CopyBuffer(wc, io.NewSectionReader(body, off, n), sc.copyBuf)
	}
	if err != nil {
		wc.Close()
		return err
	}
	return wc.Close()
}

// readHeaderBlock reads the header block of a body, including the blank
// line that ends it (CRLF or bare LF). A body without a blank line is all
// header; headers longer than 1 MiB are not scanned further. The bytes
// scanned are the answer, so nothing is read twice.
func readHeaderBlock(b *io.SectionReader) ([]byte, error) {
	size := b.Size()
	var buf []byte
	chunk := make([]byte, min(size, 8192))
	for off := int64(0); off < size; {
		n, err := b.ReadAt(chunk, off)
		buf = append(buf, chunk[:n]...)
		off += int64(n)
		if i := blankLine(buf); i >= 0 {
			// A copy of its own: the cache keeps it, not the scan buffer.
			return bytes.Clone(buf[:i]), nil
		}
		if len(buf) > 1<<20 {
			break
		}
		if err != nil && !(errors.Is(err, io.EOF) && off == size) {
			return nil, fmt.Errorf("imap: read header: %w", err)
		}
	}
	return append([]byte{}, buf...), nil
}

// blankLine returns the offset just after the first empty line.
func blankLine(b []byte) int {
	if bytes.HasPrefix(b, []byte("\r\n")) {
		return 2
	}
	if bytes.HasPrefix(b, []byte("\n")) {
		return 1
	}
	for i := 0; i < len(b); {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1
		}
		k := i + j + 1
		if k < len(b) && b[k] == '\n' {
			return k + 1
		}
		if k+1 < len(b) && b[k] == '\r' && b[k+1] == '\n' {
			return k + 2
		}
		i = k
	}
	return -1
}
