package autoconfig

import (
	"bytes"
	"encoding/xml"
	"strings"
	"testing"
)

func TestSlotted(t *testing.T) {
	doc := []byte("<a><u><?slot?></u><v><?slot?></v></a>")
	s, err := NewSlotted(doc, "<?slot?>", 2)
	if err != nil {
		t.Fatal(err)
	}
	for login, want := range map[string]string{
		"alice":             "<a><u>alice</u><v>alice</v></a>",
		"o'neil&co":         "<a><u>o&#39;neil&amp;co</u><v>o&#39;neil&amp;co</v></a>",
		"<x>":               "<a><u>&lt;x&gt;</u><v>&lt;x&gt;</v></a>",
		"jos\u00e9":         "<a><u>jos\u00e9</u><v>jos\u00e9</v></a>",
		"":                  "<a><u></u><v></v></a>",
		"bad\xffutf8\x01\n": "<a><u>bad\uFFFDutf8\uFFFD&#xA;</u><v>bad\uFFFDutf8\uFFFD&#xA;</v></a>",
	} {
		if got := string(s.AppendTo([]byte("prefix:"), login)); got != "prefix:"+want {
			t.Errorf("AppendTo(%q) = %q, want %q", login, got, "prefix:"+want)
		}
	}
	if got := s.Size(5); got != len("<a><u>alice</u><v>alice</v></a>") {
		t.Errorf("Size(5) = %d", got)
	}
	if _, err := NewSlotted(doc, "<?slot?>", 3); err == nil {
		t.Error("a wrong slot count was accepted")
	}
}

// FuzzSlottedEscape: every login comes out exactly as xml.EscapeText
// writes it, whichever path AppendTo takes.
func FuzzSlottedEscape(f *testing.F) {
	for _, s := range []string{"alice", "o'neil&co", "\x00\xff", "\u2028", "a\tb\r\n"} {
		f.Add(s)
	}
	s, err := NewSlotted([]byte("[<?s?>]"), "<?s?>", 1)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, login string) {
		var want bytes.Buffer
		want.WriteString("[")
		if err := xml.EscapeText(&want, []byte(login)); err != nil {
			t.Fatal(err)
		}
		want.WriteString("]")
		if got := s.AppendTo(nil, login); !bytes.Equal(got, want.Bytes()) {
			t.Errorf("AppendTo(%q) = %q, want %q", login, got, want.Bytes())
		}
		if strings.Contains(login, "<?s?>") && bytes.Contains(s.AppendTo(nil, login), []byte("<?s?>")) {
			t.Errorf("a login reproduced the slot marker: %q", login)
		}
	})
}
