// Package config loads and validates mailconf's TOML configuration.
//
// It is the only package that reads the configuration file; every other
// package receives the typed, validated Config. Decoding is strict: unknown
// keys, wrong types and impossible values are errors that name the file and
// the line.
package config

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

//go:embed default.toml
var defaultTOML string

// DefaultName is the name used in errors for the embedded default.
const DefaultName = "(embedded default)"

// EnvVar names the environment variable that points at a config file.
const EnvVar = "MAILCONF_CONFIG"

// DefaultMessageSize is the message size limit when [limits] does not set one.
const DefaultMessageSize = 25 << 20

// Config is a loaded and validated configuration.
type Config struct {
	// Source is the file the config came from, or DefaultName.
	Source string `toml:"-"`

	DataDir  string   `toml:"data_dir"`
	Hostname string   `toml:"hostname"`
	TLS      TLS      `toml:"tls"`
	Listen   Listen   `toml:"listen"`
	Domains  []Domain `toml:"domain"`
	DNS      DNS      `toml:"dns"`
	Relay    Relay    `toml:"relay"`
	Probe    Probe    `toml:"probe"`
	Limits   Limits   `toml:"limits"`
	DKIM     DKIM     `toml:"dkim"`
}

// TLS names the certificate files. Neither set: a self-signed certificate
// is generated into DataDir.
type TLS struct {
	Cert string `toml:"cert"`
	Key  string `toml:"key"`
}

// SelfSigned reports whether no certificate files are configured.
func (t TLS) SelfSigned() bool { return t.Cert == "" && t.Key == "" }

// Listen holds one listen address per service; "" disables the service.
type Listen struct {
	HTTP        string `toml:"http"`
	HTTPS       string `toml:"https"`
	SMTP        string `toml:"smtp"`
	Submission  string `toml:"submission"`
	Submissions string `toml:"submissions"`
	IMAP        string `toml:"imap"`
	IMAPS       string `toml:"imaps"`
	POP3        string `toml:"pop3"`
	POP3S       string `toml:"pop3s"`
}

// Services returns the listeners as (service name, address) pairs in a
// fixed order, including disabled ones with an empty address.
func (l Listen) Services() []Service {
	return []Service{
		{"http", l.HTTP}, {"https", l.HTTPS},
		{"smtp", l.SMTP}, {"submission", l.Submission}, {"submissions", l.Submissions},
		{"imap", l.IMAP}, {"imaps", l.IMAPS},
		{"pop3", l.POP3}, {"pop3s", l.POP3S},
	}
}

// Service is one named listener.
type Service struct {
	Name string
	Addr string
}

// Domain is one served mail domain.
type Domain struct {
	// Name is the domain in A-label (punycode) form after validation.
	Name        string   `toml:"name"`
	DisplayName string   `toml:"display_name"`
	Username    string   `toml:"username"` // "address" or "localpart"
	CalDAV      string   `toml:"caldav"`
	CardDAV     string   `toml:"carddav"`
	Servers     []Server `toml:"server"`
}

// Username forms.
const (
	UsernameAddress   = "address"
	UsernameLocalpart = "localpart"
)

// Server is an explicitly published endpoint that replaces the built-in one.
type Server struct {
	Protocol string `toml:"protocol"` // imap | pop3 | smtp
	Host     string `toml:"host"`
	Port     int    `toml:"port"`
	Security string `toml:"security"` // tls | starttls
}

// DNS configures lookups (relay MX, probe, dns --check).
type DNS struct {
	Resolver string `toml:"resolver"`
}

// Relay configures outbound delivery.
type Relay struct {
	Smarthost    string `toml:"smarthost"`
	Username     string `toml:"username"`
	PasswordFile string `toml:"password_file"`
}

// Probe configures the probe's HTTP API.
type Probe struct {
	StaffTokensFile string `toml:"staff_tokens_file"`
}

// Limits bounds what clients may send.
type Limits struct {
	// MessageSize is the largest message accepted, in bytes.
	MessageSize int64 `toml:"message_size"`
}

// DKIM configures signing of outgoing mail.
type DKIM struct {
	// Selector is the DNS label under _domainkey; default "mailconf".
	Selector string `toml:"selector"`
}

// Domain returns the served domain with the given A-label name.
func (c *Config) Domain(name string) (*Domain, bool) {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	for i := range c.Domains {
		if c.Domains[i].Name == name {
			return &c.Domains[i], true
		}
	}
	return nil, false
}

// Resolve picks the config file the command line and environment ask for:
// the flag, else $MAILCONF_CONFIG, else ./mailconf.toml if it exists, else ""
// meaning the embedded default.
func Resolve(flag string) string {
	if flag != "" {
		return flag
	}
	if env := os.Getenv(EnvVar); env != "" {
		return env
	}
	if _, err := os.Stat("mailconf.toml"); err == nil {
		return "mailconf.toml"
	}
	return ""
}

// Load reads and validates the file at path, or the embedded default when
// path is "".
func Load(path string) (*Config, error) {
	if path == "" {
		return Parse(DefaultName, []byte(defaultTOML))
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data)
}

// Default returns the embedded default configuration.
func Default() *Config {
	c, err := Parse(DefaultName, []byte(defaultTOML))
	if err != nil {
		panic("config: embedded default is invalid: " + err.Error())
	}
	return c
}

// DefaultTOML returns the embedded default file, as a starting point for a
// production config.
func DefaultTOML() string { return defaultTOML }

// Parse decodes and validates data; name is used in error messages.
func Parse(name string, data []byte) (*Config, error) {
	var c Config
	md, err := toml.Decode(string(data), &c)
	if err != nil {
		var perr toml.ParseError
		if errors.As(err, &perr) {
			return nil, &Error{File: name, Line: perr.Position.Line, Msg: tomlMessage(perr)}
		}
		return nil, typeError(name, err)
	}
	lines := newLineIndex(string(data))
	if und := md.Undecoded(); len(und) > 0 {
		k := und[0]
		table, key := splitKey(k)
		msg := fmt.Sprintf("unknown key %q", key)
		if t := md.Type(k...); t == "Hash" || t == "ArrayHash" {
			msg = fmt.Sprintf("unknown table [%s]", strings.Join(k, "."))
		} else if table != "" {
			msg += fmt.Sprintf(" in [%s]", table)
		}
		return nil, &Error{File: name, Line: lines.first(k), Msg: msg}
	}
	c.Source = name
	v := validator{file: name, lines: lines, listen: c.Listen}
	v.config(&c)
	if v.err != nil {
		return nil, v.err
	}
	return &c, nil
}

// Error is a configuration error with its position.
type Error struct {
	File string
	Line int // 0 when unknown
	Msg  string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("config: %s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("config: %s: %s", e.File, e.Msg)
}

func tomlMessage(perr toml.ParseError) string {
	msg := perr.Message
	if msg == "" {
		msg = perr.Error()
	}
	// The library's messages for type mismatches name Go types; keep them but
	// drop the "toml: " prefix so the line reads like ours.
	msg = strings.TrimPrefix(msg, "toml: ")
	if i := strings.Index(msg, "\n"); i >= 0 {
		msg = msg[:i]
	}
	return msg
}

var decodeErrRE = regexp.MustCompile(`^toml: (?:line (\d+) )?\(last key "([^"]*)"\): (.*)$`)

// typeError turns the library's decode errors ("toml: line 3 (last key
// "x"): incompatible types: ...") into our one-line form.
func typeError(name string, err error) error {
	m := decodeErrRE.FindStringSubmatch(err.Error())
	if m == nil {
		return &Error{File: name, Msg: strings.TrimPrefix(err.Error(), "toml: ")}
	}
	line, _ := strconv.Atoi(m[1])
	msg := m[3]
	if strings.HasPrefix(msg, "incompatible types: ") {
		msg = strings.NewReplacer("incompatible types: TOML value has type ", "wrong type: the file has ",
			"; destination has type ", ", want ", "int64", "an integer", "float64", "a number",
			"[]interface {}", "an array", "map[string]interface {}", "a table").Replace(msg)
	}
	return &Error{File: name, Line: line, Msg: fmt.Sprintf("key %q: %s", m[2], msg)}
}

func splitKey(k toml.Key) (table, key string) {
	if len(k) == 0 {
		return "", ""
	}
	return strings.Join(k[:len(k)-1], "."), k[len(k)-1]
}
