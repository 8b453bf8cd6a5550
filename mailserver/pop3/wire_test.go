package pop3

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
)

// encodeAll runs encode over raw with a given read-buffer size (16 is the
// smallest bufio allows, and splits lines and CRLFs at every position).
func encodeAll(t testing.TB, raw []byte, bufSize int, stuff bool, lines int) []byte {
	var out bytes.Buffer
	w := bufio.NewWriter(&out)
	if err := encode(w, bufio.NewReaderSize(bytes.NewReader(raw), bufSize), stuff, lines); err != nil {
		t.Fatal(err)
	}
	w.Flush()
	return out.Bytes()
}

// unstuff is what a client does with a multi-line reply body.
func unstuff(b []byte) []byte {
	var out bytes.Buffer
	for _, l := range bytes.SplitAfter(b, []byte("\r\n")) {
		if len(l) > 0 && l[0] == '.' {
			l = l[1:]
		}
		out.Write(l)
	}
	return out.Bytes()
}

func checkWire(t testing.TB, raw []byte) {
	want := []byte(wireForm(string(raw)))
	for _, size := range []int{16, 17, 64, 4096} {
		got := encodeAll(t, raw, size, false, -1)
		if !bytes.Equal(got, want) {
			t.Fatalf("buffer %d: wire form of %q\n got %q\nwant %q", size, raw, got, want)
		}
		n, err := wireSize(bufio.NewReaderSize(bytes.NewReader(raw), size))
		if err != nil || n != int64(len(want)) {
			t.Fatalf("buffer %d: wireSize(%q) = %d, %v; want %d", size, raw, n, err, len(want))
		}
		stuffed := encodeAll(t, raw, size, true, -1)
		if bytes.Contains(append([]byte("\r\n"), stuffed...), []byte("\r\n.\r\n")) {
			t.Fatalf("stuffed form of %q contains a terminator: %q", raw, stuffed)
		}
		if !bytes.Equal(unstuff(stuffed), want) {
			t.Fatalf("buffer %d: unstuffed RETR of %q = %q", size, raw, unstuff(stuffed))
		}
	}
}

func TestEncodeWireForm(t *testing.T) {
	long := strings.Repeat("x", 40) + "\r\n" + "." + strings.Repeat("y", 15) + "\r" + "\n" + strings.Repeat("z", 31) + "\r"
	for _, s := range append(samples, "", "\r\n", "\n", ".", "..\n.", "a\r", "a\r\r\n", "\r\r\r\n\n", long, strings.Repeat(".\r\n", 20)) {
		checkWire(t, []byte(s))
	}
}

func FuzzEncode(f *testing.F) {
	for _, s := range samples {
		f.Add([]byte(s))
	}
	f.Add([]byte("...\r\r\n\n.\r"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		checkWire(t, raw)
	})
}

func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"USER alice@example.com", "PASS pass word", "AUTH PLAIN =", "TOP 1 10", "retr 1", "LIST", "\x00", "UIDL  2 ", "a b c d"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		c, err := parseCommand(line)
		if err != nil {
			return
		}
		found := false
		for _, v := range verbs {
			found = found || v == c.verb
		}
		if !found {
			t.Fatalf("verb %q not in the list", c.verb)
		}
		if c.n > len(c.args) {
			t.Fatalf("%d args", c.n)
		}
		for i := range c.n {
			a := c.args[i]
			if len(a) == 0 || bytes.ContainsAny(a, " \x00\r\n") {
				t.Fatalf("arg %d = %q from %q", i, a, line)
			}
			if !bytes.Contains(line, a) {
				t.Fatalf("arg %q not from the line %q", a, line)
			}
		}
		if !bytes.HasSuffix(line, c.rest) {
			t.Fatalf("rest %q is not the tail of %q", c.rest, line)
		}
		if n, ok := parseNumber(c.rest); ok && (n < 0 || n > 999999999) {
			t.Fatalf("number %d out of range", n)
		}
	})
}

func TestParseCommand(t *testing.T) {
	cases := []struct {
		line, verb string
		args       []string
		err        error
	}{
		{"user Alice@Example.com", "USER", []string{"Alice@Example.com"}, nil},
		{"TOP 1 10", "TOP", []string{"1", "10"}, nil},
		{"LIST", "LIST", nil, nil},
		{"UIDL  2 ", "UIDL", []string{"2"}, nil},
		{"LIST 1 2 3", "", nil, errSyntax},
		{"RETR \x01", "", nil, errSyntax},
		{"XTND XMIT", "", nil, errUnknownCommand},
		{"", "", nil, errUnknownCommand},
		{"USERX a", "", nil, errUnknownCommand},
	}
	for _, tc := range cases {
		c, err := parseCommand([]byte(tc.line))
		if err != tc.err {
			t.Errorf("%q: err %v, want %v", tc.line, err, tc.err)
			continue
		}
		if err != nil {
			continue
		}
		var got []string
		for i := range c.n {
			got = append(got, string(c.args[i]))
		}
		if c.verb != tc.verb || strings.Join(got, "|") != strings.Join(tc.args, "|") {
			t.Errorf("%q: %s %q", tc.line, c.verb, got)
		}
	}
	c, _ := parseCommand([]byte("PASS  two  spaces\xff "))
	if string(c.rest) != " two  spaces\xff " {
		t.Errorf("PASS rest = %q", c.rest)
	}
	if allocs := testing.AllocsPerRun(100, func() { parseCommand([]byte("RETR 123")) }); allocs != 0 {
		t.Errorf("parseCommand allocates %.0f times", allocs)
	}
}
