package store

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// System flags, in their canonical spelling.
const (
	FlagSeen     = `\Seen`
	FlagAnswered = `\Answered`
	FlagFlagged  = `\Flagged`
	FlagDeleted  = `\Deleted`
	FlagDraft    = `\Draft`
)

// ErrBadFlag is returned for a flag that is not a system flag or a valid
// keyword atom.
var ErrBadFlag = errors.New("invalid flag")

// maxFlags bounds how many distinct flags one message carries.
const maxFlags = 64

var systemFlags = map[string]string{
	`\seen`: FlagSeen, `\answered`: FlagAnswered, `\flagged`: FlagFlagged,
	`\deleted`: FlagDeleted, `\draft`: FlagDraft,
}

// FlagOp says how StoreFlags combines the given flags with the stored ones.
type FlagOp int

// Flag operations (IMAP STORE FLAGS, +FLAGS, -FLAGS).
const (
	FlagsSet FlagOp = iota
	FlagsAdd
	FlagsRemove
)

// canonFlag returns a flag's canonical spelling: system flags in their
// standard case, keywords as given (they compare case-insensitively).
// \Recent is session state, not stored: it yields "".
func canonFlag(f string) (string, error) {
	if f == "" || len(f) > 100 {
		return "", fmt.Errorf("store: %w: %q", ErrBadFlag, f)
	}
	if f[0] == '\\' {
		if c, ok := systemFlags[strings.ToLower(f)]; ok {
			return c, nil
		}
		if strings.EqualFold(f, `\Recent`) {
			return "", nil
		}
		return "", fmt.Errorf("store: %w: %q", ErrBadFlag, f)
	}
	for i := 0; i < len(f); i++ {
		c := f[i]
		// atom-char of RFC 9051 minus resp-specials; keywords are ASCII.
		if c <= 0x20 || c >= 0x7f || strings.IndexByte(`(){%*"\]`, c) >= 0 {
			return "", fmt.Errorf("store: %w: %q", ErrBadFlag, f)
		}
	}
	return f, nil
}

// flagSet is a normalized set keyed by lower-case flag.
type flagSet map[string]string

func parseFlagList(flags []string) (flagSet, error) {
	fs := flagSet{}
	for _, f := range flags {
		c, err := canonFlag(f)
		if err != nil {
			return nil, err
		}
		if c != "" {
			fs[strings.ToLower(c)] = c
		}
	}
	if len(fs) > maxFlags {
		return nil, fmt.Errorf("store: %w: more than %d flags", ErrBadFlag, maxFlags)
	}
	return fs, nil
}

// decodeFlags reads the stored column (space-separated canonical flags).
func decodeFlags(col string) flagSet {
	fs := flagSet{}
	for _, f := range strings.Fields(col) {
		fs[strings.ToLower(f)] = f
	}
	return fs
}

func (fs flagSet) list() []string {
	out := make([]string, 0, len(fs))
	for _, f := range fs {
		out = append(out, f)
	}
	sort.Strings(out)
	return out
}

func (fs flagSet) encode() string { return strings.Join(fs.list(), " ") }

func (fs flagSet) has(f string) bool {
	_, ok := fs[strings.ToLower(f)]
	return ok
}

func (fs flagSet) apply(op FlagOp, arg flagSet) flagSet {
	out := flagSet{}
	switch op {
	case FlagsSet:
		for k, v := range arg {
			out[k] = v
		}
	case FlagsAdd:
		for k, v := range fs {
			out[k] = v
		}
		for k, v := range arg {
			if _, ok := out[k]; !ok {
				out[k] = v
			}
		}
	case FlagsRemove:
		for k, v := range fs {
			if _, ok := arg[k]; !ok {
				out[k] = v
			}
		}
	}
	return out
}
