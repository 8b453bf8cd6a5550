package report

import (
	"fmt"
	"log/slog"
)

// Secret holds a password. Every way Go has of printing or encoding a value
// yields "[redacted]"; only Reveal returns the text, and only the protocol
// code that sends it calls Reveal.
type Secret struct {
	v string
}

const redacted = "[redacted]"

// NewSecret wraps a password.
func NewSecret(s string) Secret { return Secret{v: s} }

// Reveal returns the password for the wire.
func (s Secret) Reveal() string { return s.v }

// IsZero reports whether no password was given.
func (s Secret) IsZero() bool { return s.v == "" }

func (Secret) String() string   { return redacted }
func (Secret) GoString() string { return redacted }

// Format covers %v, %+v, %#v, %s, %q, %x and friends.
func (Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }
func (Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }
func (Secret) LogValue() slog.Value         { return slog.StringValue(redacted) }
