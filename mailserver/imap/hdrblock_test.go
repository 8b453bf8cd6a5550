package imap

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// TestReadHeaderBlock: the header block ends after the first empty line
// (CRLF or bare LF), also when it straddles a read chunk; a body without
// one is all header.
func TestReadHeaderBlock(t *testing.T) {
	long := "X-Long: " + strings.Repeat("y", 8190) + "\r\n" // the blank line falls past the first 8 KiB
	cases := map[string]string{
		"":                                "",
		"\r\nbody":                        "\r\n",
		"\nbody":                          "\n",
		"Subject: a\r\n\r\nbody\r\n":      "Subject: a\r\n\r\n",
		"Subject: a\n\nbody\n":            "Subject: a\n\n",
		"Subject: a\r\nno blank line\r\n": "Subject: a\r\nno blank line\r\n",
		long + "\r\nbody":                 long + "\r\n",
	}
	for body, want := range cases {
		got, err := readHeaderBlock(io.NewSectionReader(strings.NewReader(body), 0, int64(len(body))))
		if err != nil || !bytes.Equal(got, []byte(want)) || got == nil {
			t.Errorf("readHeaderBlock(%.40q) = %.40q, %v; want %.40q", body, got, err, want)
		}
	}
}
