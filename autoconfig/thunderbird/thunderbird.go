// Package thunderbird serves Mozilla's autoconfig format (config-v1.1.xml),
// read by Thunderbird desktop, Thunderbird for Android / K-9 and most other
// clients that configure IMAP/POP3/SMTP from an address.
//
// Every served domain's document is marshalled once, when the handler is
// built; a request only splices the XML-escaped login name into the
// prepared bytes.
package thunderbird

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"mailconf/autoconfig"
)

// Paths the handler answers. Thunderbird requests the first two (formats.md
// §1.1); the IETF draft names the third (A5); Nine requests the ISPDB-style
// /v1.1/ alias (clients.md §2.3).
var paths = [...]string{
	"/mail/config-v1.1.xml",
	"/.well-known/autoconfig/mail/config-v1.1.xml",
	"/.well-known/mail-v1.xml",
	"/v1.1/mail/config-v1.1.xml",
}

// Placeholders Thunderbird expands inside <username> (formats.md §1.3.5).
const (
	placeholderAddress = "%EMAILADDRESS%"
	placeholderLocal   = "%EMAILLOCALPART%"
)

// contentType must start with text/xml for Thunderbird to parse the body.
const contentType = "text/xml; charset=utf-8"

// usernameSlot marks where the login name goes. It is written through an
// innerxml field, so it is the only processing instruction in the
// document: character data from the config is always escaped and can never
// produce a literal "<?".
const usernameSlot = "<?mailconf-username?>"

// Handler serves the autoconfig document of every served domain.
type Handler struct {
	svc  *autoconfig.Service
	docs map[string]*autoconfig.Slotted // by A-label domain
}

// New marshals the document of every domain in svc's catalog.
func New(svc *autoconfig.Service) (*Handler, error) {
	if svc == nil || svc.Catalog == nil {
		return nil, fmt.Errorf("thunderbird: New needs a Service with a Catalog")
	}
	h := &Handler{svc: svc, docs: map[string]*autoconfig.Slotted{}}
	for _, st := range svc.Catalog.Domains() {
		d, err := prepare(st)
		if err != nil {
			return nil, fmt.Errorf("thunderbird: domain %s: %w", st.Domain, err)
		}
		h.docs[st.Domain] = d
	}
	return h, nil
}

// Register routes every method of every autoconfig path to the handler,
// so that methods other than GET and HEAD get a counted 405 too.
func (h *Handler) Register(e *echo.Echo) {
	for _, p := range paths {
		e.Any(p, h.serve)
	}
}

func prepare(st *autoconfig.Settings) (*autoconfig.Slotted, error) {
	if len(st.Incoming) == 0 || len(st.Outgoing) == 0 {
		// Thunderbird rejects a file without both (formats.md §1.5 item 6).
		return nil, fmt.Errorf("needs at least one incoming and one outgoing server")
	}
	cfg := build(st)
	body, err := xml.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("marshal: %w", err)
	}
	var buf bytes.Buffer
	buf.WriteString(xml.Header)
	buf.Write(body)
	buf.WriteByte('\n')
	return autoconfig.NewSlotted(buf.Bytes(), usernameSlot, slotCount(cfg))
}

func build(st *autoconfig.Settings) *clientConfig {
	slot := &username{Raw: usernameSlot}
	p := emailProvider{
		ID:               st.Domain,
		Domains:          []string{st.Domain},
		DisplayName:      st.DisplayName,
		DisplayShortName: shortName(st),
		Incoming:         servers(st.Incoming, slot),
		Outgoing:         servers(st.Outgoing, slot),
	}
	cfg := &clientConfig{Version: "1.1", Provider: p}
	if st.CardDAV != "" {
		cfg.AddressBooks = append(cfg.AddressBooks, davService{Type: "carddav", URL: st.CardDAV, Authentication: authHTTPBasic, Username: slot})
	}
	if st.CalDAV != "" {
		cfg.Calendars = append(cfg.Calendars, davService{Type: "caldav", URL: st.CalDAV, Authentication: authHTTPBasic, Username: slot})
	}
	return cfg
}

// servers maps endpoints to server elements, in order; incoming and
// outgoing servers have the same shape.
func servers(eps []autoconfig.Endpoint, slot *username) []server {
	out := make([]server, 0, len(eps))
	for _, ep := range eps {
		out = append(out, server{
			Type:           string(ep.Protocol),
			Hostname:       ep.Host,
			Port:           ep.Port,
			SocketType:     socketType(ep.Security),
			Username:       slot,
			Authentication: []string{authPasswordCleartext},
		})
	}
	return out
}

func slotCount(c *clientConfig) int {
	return len(c.Provider.Incoming) + len(c.Provider.Outgoing) + len(c.AddressBooks) + len(c.Calendars)
}

// socketType maps the neutral security mode. Only SSL and STARTTLS are ever
// emitted: "plain" makes Thunderbird for Android reject the whole file.
func socketType(s autoconfig.Security) string {
	if s == autoconfig.TLS {
		return "SSL"
	}
	return "STARTTLS"
}

// shortName keeps the display name when it fits the draft's 20-character
// maximum for displayShortName, else falls back to the domain's first label.
func shortName(st *autoconfig.Settings) string {
	const max = 20
	if n := utf8.RuneCountInString(st.DisplayName); n > 0 && n <= max {
		return st.DisplayName
	}
	label := st.Domain
	if i := strings.IndexByte(label, '.'); i > 0 {
		label = label[:i]
	}
	if len(label) > max {
		label = label[:max]
	}
	return label
}

// loginName is what goes into <username>: the literal login when the
// request named an address, else the placeholder Thunderbird expands.
func loginName(t autoconfig.Target) string {
	if t.Addr != nil {
		return t.Settings.LoginName(*t.Addr)
	}
	if t.Settings.Username == autoconfig.UsernameLocalpart {
		return placeholderLocal
	}
	return placeholderAddress
}

func (h *Handler) serve(c echo.Context) error {
	req := c.Request()
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		h.svc.Count(autoconfig.FormatThunderbird, http.StatusMethodNotAllowed)
		c.Response().Header().Set(echo.HeaderAllow, "GET, HEAD")
		return c.Blob(http.StatusMethodNotAllowed, echo.MIMETextPlainCharsetUTF8, []byte("method not allowed\n"))
	}
	t, err := h.svc.Resolve(autoconfig.QueryValue(req.URL.RawQuery, "emailaddress"), req.Host)
	if err != nil {
		status := autoconfig.TargetStatus(err)
		h.svc.Logger.Debug("autoconfig request refused", "format", autoconfig.FormatThunderbird, "host", req.Host, "status", status, "err", err)
		return h.fail(c, status)
	}
	d, ok := h.docs[t.Settings.Domain]
	if !ok {
		// The catalog and the prepared documents come from the same
		// config; a miss means the domain is not served by this handler.
		return h.fail(c, http.StatusNotFound)
	}
	login := loginName(t)
	// The body carries the caller's address: keep it out of caches.
	cache := "no-store"
	if t.Addr == nil {
		cache = "public, max-age=3600"
		c.Response().Header().Set("Vary", "Host")
	}
	h.svc.Count(autoconfig.FormatThunderbird, http.StatusOK)
	return h.svc.WriteBody(c, http.StatusOK, contentType, cache, func(b []byte) []byte { return d.AppendTo(b, login) })
}

// fail answers with a fixed plain-text message: nothing from the request is
// reflected.
func (h *Handler) fail(c echo.Context, status int) error {
	h.svc.Count(autoconfig.FormatThunderbird, status)
	msg := "this domain is not served here\n"
	if status == http.StatusBadRequest {
		msg = "invalid email address\n"
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.Blob(status, echo.MIMETextPlainCharsetUTF8, []byte(msg))
}
