package imap

import (
	"bufio"
	"bytes"
	"errors"
	"io"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-message/textproto"

	"mailconf/mailserver/store"
)

func (ss *session) Fetch(w *imapserver.FetchWriter, set goimap.NumSet, opts *goimap.FetchOptions) error {
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
		// Others' changes first; then our \Seen change is reported in
		// this FETCH's own responses, not again by Poll.
		mb.syncLocked(ctx, nil)
		if _, err := ss.srv.st.StoreFlags(ctx, mb.id, targetUIDs(ts), store.FlagsAdd, []string{store.FlagSeen}); err != nil {
			mb.mu.Unlock()
			return imapError(err)
		}
		mb.syncLocked(ctx, sel.tracker)
	}
	mb.mu.Unlock()
	ts, err = ss.withInfo(ctx, sel, ts)
	if err != nil {
		return imapError(err)
	}
	needBody := opts.Envelope || opts.BodyStructure != nil || len(opts.BodySection) > 0 ||
		len(opts.BinarySection) > 0 || len(opts.BinarySectionSize) > 0
	for _, t := range ts {
		if t.seq == 0 {
			continue
		}
		var body *store.Body
		if needBody {
			body, err = ss.srv.st.OpenMessage(ctx, mb.id, t.uid)
			if errors.Is(err, store.ErrNotFound) {
				// Expunged meanwhile; the EXPUNGE follows at the next
				// legal point.
				continue
			}
			if err != nil {
				return internalErr("fetch", err)
			}
		}
		err := ss.fetchOne(w, t, body, opts, markSeen)
		if body != nil {
			body.Close()
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (ss *session) fetchOne(w *imapserver.FetchWriter, t target, body *store.Body, opts *goimap.FetchOptions, flags bool) error {
	rw := w.CreateMessage(t.seq)
	info := t.info
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
	if body == nil {
		return rw.Close()
	}
	cached := int64(-1)
	hdrEnd := func() int64 {
		if cached < 0 {
			cached = headerEnd(body)
		}
		return cached
	}
	if opts.Envelope {
		h, _ := textproto.ReadHeader(bufio.NewReader(io.NewSectionReader(body, 0, hdrEnd())))
		rw.WriteEnvelope(imapserver.ExtractEnvelope(h))
	}
	if opts.BodyStructure != nil {
		rw.WriteBodyStructure(imapserver.ExtractBodyStructure(io.NewSectionReader(body, 0, body.Size())))
	}
	for _, bs := range opts.BodySection {
		if err := writeBodySection(rw, bs, body, hdrEnd); err != nil {
			return err
		}
	}
	for _, bs := range opts.BinarySection {
		data := imapserver.ExtractBinarySection(io.NewSectionReader(body, 0, body.Size()), bs)
		wc := rw.WriteBinarySection(bs, int64(len(data)))
		if _, err := wc.Write(data); err != nil {
			wc.Close()
			return err
		}
		if err := wc.Close(); err != nil {
			return err
		}
	}
	for _, bs := range opts.BinarySectionSize {
		rw.WriteBinarySectionSize(bs, imapserver.ExtractBinarySectionSize(io.NewSectionReader(body, 0, body.Size()), bs))
	}
	return rw.Close()
}

// writeBodySection serves BODY[], BODY[HEADER] and BODY[TEXT] of the whole
// message straight from the stored bytes (byte-exact, partials applied to
// those bytes, mailserver.md §1.5(4)); sub-parts and HEADER.FIELDS go
// through the library's extractor.
func writeBodySection(rw *imapserver.FetchResponseWriter, bs *goimap.FetchItemBodySection, body *store.Body, hdrEnd func() int64) error {
	var off, n int64
	raw := len(bs.Part) == 0 && len(bs.HeaderFields) == 0 && len(bs.HeaderFieldsNot) == 0
	switch {
	case raw && bs.Specifier == goimap.PartSpecifierNone:
		off, n = 0, body.Size()
	case raw && bs.Specifier == goimap.PartSpecifierHeader:
		off, n = 0, hdrEnd()
	case raw && bs.Specifier == goimap.PartSpecifierText:
		off = hdrEnd()
		n = body.Size() - off
	default:
		src := io.NewSectionReader(body, 0, body.Size())
		if len(bs.Part) == 0 && bs.Specifier == goimap.PartSpecifierHeader {
			// HEADER.FIELDS of the message itself: only the header block
			// is parsed, not the whole body.
			src = io.NewSectionReader(body, 0, hdrEnd())
		}
		data := imapserver.ExtractBodySection(src, bs)
		wc := rw.WriteBodySection(bs, int64(len(data)))
		if _, err := wc.Write(data); err != nil {
			wc.Close()
			return err
		}
		return wc.Close()
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
	if _, err := io.Copy(wc, io.NewSectionReader(body, off, n)); err != nil {
		wc.Close()
		return err
	}
	return wc.Close()
}

// headerEnd returns the length of the header block including the blank
// line that ends it (CRLF or bare LF); a message without a blank line is
// all header.
func headerEnd(r *store.Body) int64 {
	size := r.Size()
	buf := make([]byte, 0, 8192)
	chunk := make([]byte, 8192)
	var off int64
	for off < size {
		n, err := r.ReadAt(chunk, off)
		buf = append(buf, chunk[:n]...)
		off += int64(n)
		if i := blankLine(buf); i >= 0 {
			return int64(i)
		}
		if err != nil || n == 0 {
			break
		}
		if len(buf) > 1<<20 {
			// Headers this long are not worth scanning further.
			return int64(len(buf))
		}
	}
	return size
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
