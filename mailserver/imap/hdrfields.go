package imap

import (
	"bytes"
	"strings"
)

// headerFieldsFast computes BODY[HEADER.FIELDS (keep)] of a message's
// header block straight from its bytes, as the library's
// imapserver.ExtractBodySection would (the raw lines of the matching
// fields in their order, then CRLF), without parsing the whole header
// into a map. ok is false for any block not in the plain form this
// handles (bare LF or CR, a first line that is a continuation, a line
// without a colon, an empty or invalid field name, no blank line at the
// end); the caller then uses the library.
func headerFieldsFast(hdr []byte, keep []string) (out []byte, ok bool) {
	return appendHeaderFields(nil, hdr, lowerFieldNames(keep))
}

// lowerFieldNames lower-cases requested field names as the library does
// (Unicode, so a non-ASCII request name that lower-cases to ASCII matches
// as there).
func lowerFieldNames(keep []string) []string {
	lower := make([]string, len(keep))
	for i, k := range keep {
		lower[i] = strings.ToLower(k)
	}
	return lower
}

// appendHeaderFields is headerFieldsFast appending to dst, with the names
// already lower-cased: a FETCH of many messages does both once.
func appendHeaderFields(dst, hdr []byte, lower []string) (out []byte, ok bool) {
	if len(hdr) < 2 || hdr[0] == ' ' || hdr[0] == '\t' {
		return nil, false
	}
	if len(hdr) == 2 {
		if string(hdr) != "\r\n" {
			return nil, false
		}
		return append(dst, '\r', '\n'), true
	}
	if !bytes.HasSuffix(hdr, []byte("\r\n\r\n")) {
		return nil, false
	}
	fields := hdr[:len(hdr)-2]
	out = dst
	include := false
	var keyBuf [64]byte
	for i := 0; i < len(fields); {
		j := bytes.IndexByte(fields[i:], '\n')
		if j < 1 || fields[i+j-1] != '\r' {
			return nil, false
		}
		line := fields[i : i+j+1]
		i += j + 1
		if bytes.IndexByte(line[:len(line)-2], '\r') >= 0 {
			return nil, false
		}
		if line[0] == ' ' || line[0] == '\t' {
			if include {
				out = append(out, line...)
			}
			continue
		}
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			return nil, false
		}
		key := bytes.Trim(line[:colon], " \t")
		if len(key) == 0 {
			return nil, false
		}
		lk := keyBuf[:0]
		for _, c := range key {
			if c < 33 || c > 126 {
				return nil, false
			}
			lk = append(lk, lowerASCII(c))
		}
		include = false
		for _, k := range lower {
			if k == string(lk) {
				include = true
				break
			}
		}
		if include {
			out = append(out, line...)
		}
	}
	return append(out, '\r', '\n'), true
}
