package pop3

import "errors"

// Command line limits. RFC 2449 §4 caps a command line at 255 octets
// including CRLF; RFC 1939 caps an argument at 40 characters, which a login
// name (a full address) can exceed, so arguments get the line limit only.
const (
	maxCommandLine = 255
	// maxSASLLine bounds a base64 line sent after a "+ " continuation; a
	// PLAIN response for a long address and password exceeds 255 octets,
	// which is why RFC 5034 lets it use the continuation.
	maxSASLLine = 2048
)

// verbs are the commands the server knows, in their canonical spelling.
var verbs = [...]string{
	"USER", "PASS", "AUTH", "STLS", "CAPA", "QUIT", "STAT", "LIST", "RETR",
	"DELE", "NOOP", "RSET", "TOP", "UIDL", "APOP",
}

var (
	errUnknownCommand = errors.New("unknown command")
	errSyntax         = errors.New("syntax error")
)

// command is a parsed command line. Its byte slices alias the read buffer
// and are valid only until the next read.
type command struct {
	verb string // one of verbs
	args [2][]byte
	n    int    // arguments present (at most 2 are kept)
	rest []byte // everything after "VERB " (PASS takes spaces in passwords)
}

// parseCommand splits a command line (without its line end). It does not
// allocate: the verb is matched case-insensitively against the fixed list
// and arguments are sub-slices of line. More than two arguments, control
// characters and 8-bit bytes are syntax errors; the password of PASS is
// taken verbatim from rest and may contain spaces and 8-bit bytes.
func parseCommand(line []byte) (command, error) {
	var c command
	i := 0
	for i < len(line) && line[i] != ' ' {
		i++
	}
	verb := line[:i]
	for _, v := range verbs {
		if equalFoldASCII(verb, v) {
			c.verb = v
			break
		}
	}
	if c.verb == "" {
		return command{}, errUnknownCommand
	}
	if i < len(line) {
		c.rest = line[i+1:]
	}
	if c.verb == "PASS" {
		return c, nil
	}
	for j := i; j < len(line); {
		if line[j] == ' ' {
			j++
			continue
		}
		k := j
		for k < len(line) && line[k] != ' ' {
			if b := line[k]; b < 0x21 || b > 0x7e {
				return command{}, errSyntax
			}
			k++
		}
		if c.n == len(c.args) {
			return command{}, errSyntax
		}
		c.args[c.n] = line[j:k]
		c.n++
		j = k
	}
	return c, nil
}

func equalFoldASCII(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// parseNumber reads a message number or a line count: ASCII digits only,
// no sign, at most 9 digits (so it fits an int everywhere).
func parseNumber(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 9 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}
