package config

import (
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// lineIndex remembers on which line each key of a TOML file stands, so that
// validation errors (which the TOML library cannot place) name the line.
//
// Paths use "#i" for the i-th element of an array of tables, e.g.
// "domain#1.server#0.port". The unindexed form ("domain.server.port") maps
// to the first occurrence, which is what the library's key lists give.
type lineIndex struct {
	indexed map[string]int
	plain   map[string]int
}

func newLineIndex(src string) *lineIndex {
	li := &lineIndex{indexed: map[string]int{}, plain: map[string]int{}}
	counts := map[string]int{} // indexed array path -> elements seen
	prefix, plainPrefix := "", ""
	for n, raw := range strings.Split(src, "\n") {
		line := strings.TrimSpace(stripComment(raw))
		lineNo := n + 1
		switch {
		case line == "":
		case strings.HasPrefix(line, "[["):
			name := strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(line, "[["), "]]"))
			parent, last := "", name
			if i := strings.LastIndex(name, "."); i >= 0 {
				parent, last = name[:i], name[i+1:]
			}
			// Attach to the current element of the parent array, if the
			// header nests inside the table we are in.
			base := ""
			if parent != "" {
				base = indexedParent(prefix, parent)
			}
			arr := join(base, last)
			idx := counts[arr]
			counts[arr] = idx + 1
			prefix = arr + "#" + strconv.Itoa(idx)
			plainPrefix = name
			li.set(prefix, plainPrefix, lineNo)
		case strings.HasPrefix(line, "["):
			name := strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(line, "["), "]"))
			prefix, plainPrefix = name, name
			li.set(prefix, plainPrefix, lineNo)
		default:
			eq := strings.Index(line, "=")
			if eq <= 0 {
				continue
			}
			key := strings.Trim(strings.TrimSpace(line[:eq]), `"'`)
			li.set(join(prefix, key), join(plainPrefix, key), lineNo)
		}
	}
	return li
}

// indexedParent finds the indexed form of parent within the current prefix:
// with prefix "domain#2" and parent "domain" it returns "domain#2".
func indexedParent(prefix, parent string) string {
	var parts []string
	for _, p := range strings.Split(prefix, ".") {
		parts = append(parts, p)
		plain := make([]string, len(parts))
		for i, q := range parts {
			plain[i] = strings.SplitN(q, "#", 2)[0]
		}
		if strings.Join(plain, ".") == parent {
			return strings.Join(parts, ".")
		}
	}
	return parent
}

func (li *lineIndex) set(indexed, plain string, line int) {
	if _, ok := li.indexed[indexed]; !ok {
		li.indexed[indexed] = line
	}
	if _, ok := li.plain[plain]; !ok {
		li.plain[plain] = line
	}
}

// at returns the line of an indexed path, falling back to its enclosing
// tables; 0 when nothing is known.
func (li *lineIndex) at(path string) int {
	for path != "" {
		if l, ok := li.indexed[path]; ok {
			return l
		}
		i := strings.LastIndex(path, ".")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0
}

// first returns the line of the first occurrence of a library key.
func (li *lineIndex) first(k toml.Key) int {
	return li.plain[strings.Join(k, ".")]
}

func join(a, b string) string {
	if a == "" {
		return b
	}
	return a + "." + b
}

// stripComment removes a trailing # comment that is not inside a string.
func stripComment(s string) string {
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == '\\' && quote == '"' {
				i++
			} else if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '#':
			return s[:i]
		}
	}
	return s
}
