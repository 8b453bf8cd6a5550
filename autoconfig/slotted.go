package autoconfig

import (
	"bytes"
	"encoding/xml"
	"fmt"
)

// Slotted is an XML answer prepared when the config loads, with the login
// name left open: serving it copies the bytes between the slots and the
// escaped login, and marshals nothing (the Thunderbird and Autodiscover
// answers both work this way).
type Slotted struct {
	parts [][]byte // len(parts)-1 slots
	size  int
}

// NewSlotted cuts doc at every occurrence of slot, which must occur want
// times: a marker that also occurs in the data would otherwise put a login
// name where none belongs.
func NewSlotted(doc []byte, slot string, want int) (*Slotted, error) {
	parts := bytes.Split(doc, []byte(slot))
	if len(parts)-1 != want {
		return nil, fmt.Errorf("found %d username slots, want %d", len(parts)-1, want)
	}
	s := &Slotted{parts: parts}
	for _, p := range parts {
		s.size += len(p)
	}
	return s, nil
}

// Size is the length of the answer for a login name of n bytes that needs
// no escaping.
func (s *Slotted) Size(n int) int { return s.size + (len(s.parts)-1)*n }

// AppendTo appends the answer for login to dst, the login escaped as XML
// character data.
func (s *Slotted) AppendTo(dst []byte, login string) []byte {
	var esc []byte
	if !plainXMLText(login) {
		var b bytes.Buffer
		_ = xml.EscapeText(&b, []byte(login)) // a bytes.Buffer does not fail
		esc = b.Bytes()
	}
	for i, p := range s.parts {
		if i > 0 {
			if esc != nil {
				dst = append(dst, esc...)
			} else {
				dst = append(dst, login...)
			}
		}
		dst = append(dst, p...)
	}
	return dst
}

// plainXMLText reports whether s is printable ASCII that xml.EscapeText
// would leave as it is.
func plainXMLText(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c > 0x7e:
			return false
		case c == '&' || c == '<' || c == '>' || c == '"' || c == '\'':
			return false
		}
	}
	return true
}
