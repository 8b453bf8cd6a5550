// Package setup serves the setup web page: a form for the email address, the
// settings in the words people see in their mail program, step-by-step
// instructions per program, and the Apple profile download with a QR code.
//
// It replaces the hosting company's static help page, which asked people to
// work out host names, ports and SMTP-Auth by themselves.
package setup

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/skip2/go-qrcode"

	"mailconf/autoconfig"
	"mailconf/templates"
)

// Paths served by the handler.
const (
	PathSetup = "/setup"
	PathQR    = "/setup/qr.png"
	// PathProfile is the Apple profile endpoint (served by the apple
	// package); the page links to it and the QR code encodes it.
	PathProfile = "/profile.mobileconfig"
)

// QRSize is the width and height of the QR code PNG in pixels.
const QRSize = 256

// QRLevel is the error correction level of the QR code: medium keeps the
// code small enough to scan from a laptop screen.
const QRLevel = qrcode.Medium

const contentTypeHTML = "text/html; charset=utf-8"

// Every page is built from the templates and our own values only: no
// scripts, no third-party resources, inline styles.
const contentSecurityPolicy = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

// Handler serves the setup page and its QR code.
type Handler struct {
	svc  *autoconfig.Service
	page *template.Template
}

// New parses the page templates once.
func New(svc *autoconfig.Service) (*Handler, error) {
	if svc == nil {
		return nil, errors.New("setup: New needs a Service")
	}
	page, err := template.ParseFS(templates.FS, "base.html", "setup.html")
	if err != nil {
		return nil, fmt.Errorf("setup: parse templates: %w", err)
	}
	return &Handler{svc: svc, page: page}, nil
}

// Register adds the page routes: / and /setup (GET, HEAD) and the QR code.
func (h *Handler) Register(e *echo.Echo) {
	for _, p := range []string{"/", PathSetup} {
		e.GET(p, h.handlePage)
		e.HEAD(p, h.handlePage)
	}
	e.GET(PathQR, h.handleQR)
	e.HEAD(PathQR, h.handleQR)
}

// pageData is what setup.html renders.
type pageData struct {
	Input string // the address as typed, shown again in the form
	Error *pageError
	S     *view // nil: the form only
}

type pageError struct {
	Title, Text string
}

// view is a domain's settings in the terms a person sees in a mail program.
type view struct {
	DisplayName  string
	Domain       string
	Address      string // "" when no address was given: placeholders
	Login        string // "" with placeholders
	LoginIsLocal bool

	IMAP, POP3, SMTP *serverView
	// Incoming is the server the short instructions name: IMAP when
	// offered, else POP3.
	Incoming *serverView

	CalDAV, CardDAV string

	ProfileURL string // relative; "" without an address
	QRURL      string
}

type serverView struct {
	ID, Title    string
	Name         string // IMAP, POP3, SMTP
	Host         string
	Port         int
	Security     string
	Outgoing     bool
	Alternatives []altView
}

type altView struct {
	Host     string
	Port     int
	Security string
	SameHost bool
}

// securityLabel is the wording of Thunderbird, Outlook and most other
// programs' security menus (formats.md §6: implicit TLS vs STARTTLS).
func securityLabel(s autoconfig.Security) string {
	if s == autoconfig.TLS {
		return "SSL/TLS"
	}
	return "STARTTLS"
}

func newServerView(st *autoconfig.Settings, p autoconfig.Protocol) *serverView {
	eps := st.Endpoints(p)
	if len(eps) == 0 {
		return nil
	}
	first := eps[0]
	v := &serverView{
		ID:       string(p),
		Name:     strings.ToUpper(string(p)),
		Host:     first.Host,
		Port:     first.Port,
		Security: securityLabel(first.Security),
	}
	switch p {
	case autoconfig.IMAP:
		v.Title = "Incoming mail server (IMAP)"
	case autoconfig.POP3:
		v.Title = "Incoming mail server (POP3)"
	default:
		v.Title = "Outgoing mail server (SMTP)"
		v.Outgoing = true
	}
	for _, e := range eps[1:] {
		v.Alternatives = append(v.Alternatives, altView{Host: e.Host, Port: e.Port, Security: securityLabel(e.Security), SameHost: e.Host == first.Host})
	}
	return v
}

func newView(t autoconfig.Target) *view {
	st := t.Settings
	v := &view{
		DisplayName:  st.DisplayName,
		Domain:       st.Domain,
		LoginIsLocal: st.Username == autoconfig.UsernameLocalpart,
		IMAP:         newServerView(st, autoconfig.IMAP),
		POP3:         newServerView(st, autoconfig.POP3),
		SMTP:         newServerView(st, autoconfig.SMTP),
		CalDAV:       st.CalDAV,
		CardDAV:      st.CardDAV,
	}
	v.Incoming = v.IMAP
	if v.Incoming == nil {
		v.Incoming = v.POP3
	}
	if t.Addr != nil {
		a := t.Addr.String()
		v.Address = a
		v.Login = st.LoginName(*t.Addr)
		q := url.Values{"emailaddress": {a}}.Encode()
		v.ProfileURL = PathProfile + "?" + q
		v.QRURL = PathQR + "?" + q
	}
	return v
}

func (h *Handler) handlePage(c echo.Context) error {
	input := c.QueryParam("emailaddress")
	data := pageData{Input: input}
	status := http.StatusOK
	t, err := h.svc.Resolve(input, c.Request().Host)
	switch {
	case err == nil:
		data.S = newView(t)
	case errors.Is(err, autoconfig.ErrNoDomain):
		// No address and a Host that names no served domain: the form.
	default:
		status = autoconfig.TargetStatus(err)
		data.Error = describe(err, input)
	}
	var buf bytes.Buffer
	if err := h.page.ExecuteTemplate(&buf, "base", data); err != nil {
		h.svc.Logger.Error("setup: render page", "err", err)
		h.svc.Count(autoconfig.FormatSetup, http.StatusInternalServerError)
		return echo.NewHTTPError(http.StatusInternalServerError, "the setup page could not be rendered")
	}
	h.svc.Count(autoconfig.FormatSetup, status)
	hdr := c.Response().Header()
	hdr.Set("Content-Security-Policy", contentSecurityPolicy)
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "no-referrer")
	// The page may show an address; keep it out of shared caches.
	hdr.Set("Cache-Control", "private, no-cache")
	return c.Blob(status, contentTypeHTML, buf.Bytes())
}

// describe turns a Resolve error into words for the page.
func describe(err error, input string) *pageError {
	if errors.Is(err, autoconfig.ErrAddress) {
		why := strings.TrimPrefix(err.Error(), autoconfig.ErrAddress.Error()+": ")
		return &pageError{
			Title: "This is not an email address we can look up.",
			Text:  "Please check what you typed (" + why + "). An email address looks like name@example.com.",
		}
	}
	domain := ""
	if a, perr := autoconfig.ParseAddress(input); perr == nil {
		domain = a.Domain
	}
	return &pageError{
		Title: "No settings for " + domain + " here.",
		Text:  "This service does not handle mail for " + domain + ". Check the part of your address after the @, or ask whoever runs your email for their setup page.",
	}
}

// profileURL is the absolute profile URL for the QR code: the phone that
// scans it must reach the same server the browser did.
func profileURL(c echo.Context, a autoconfig.Address) string {
	scheme := c.Scheme()
	if scheme != "http" && scheme != "https" {
		scheme = "https"
	}
	u := url.URL{
		Scheme:   scheme,
		Host:     c.Request().Host,
		Path:     PathProfile,
		RawQuery: url.Values{"emailaddress": {a.String()}}.Encode(),
	}
	return u.String()
}

func (h *Handler) handleQR(c echo.Context) error {
	c.Response().Header().Set("X-Content-Type-Options", "nosniff")
	input := c.QueryParam("emailaddress")
	if input == "" {
		return c.String(http.StatusBadRequest, "emailaddress is required\n")
	}
	t, err := h.svc.Resolve(input, c.Request().Host)
	if err != nil {
		return c.String(autoconfig.TargetStatus(err), err.Error()+"\n")
	}
	png, err := qrcode.Encode(profileURL(c, *t.Addr), QRLevel, QRSize)
	if err != nil {
		// Only content too long for a QR code fails; addresses are capped
		// at 254 bytes, so the URL always fits.
		h.svc.Logger.Error("setup: QR code", "err", err)
		return c.String(http.StatusBadRequest, "the profile link does not fit in a QR code\n")
	}
	c.Response().Header().Set("Cache-Control", "private, max-age=3600")
	return c.Blob(http.StatusOK, "image/png", png)
}
