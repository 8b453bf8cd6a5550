package apple

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"

	"mailconf/autoconfig"
)

// Path is where the profile is served.
const Path = "/profile.mobileconfig"

// ContentType makes Safari offer the profile for installation instead of
// showing XML (formats.md §3.4).
const ContentType = "application/x-apple-aspen-config"

// Handler serves /profile.mobileconfig.
type Handler struct {
	svc         *autoconfig.Service
	log         *slog.Logger
	signingCert func() *tls.Certificate
	domains     map[string]*domainProfile // by A-label domain
	signer      atomic.Pointer[signerEntry]
}

// signerEntry caches the parsed signing certificate; it is rebuilt when
// signingCert returns a different *tls.Certificate (e.g. after a reload).
type signerEntry struct {
	src     *tls.Certificate
	signer  *signer
	err     error
	expired atomic.Bool // an expiry was logged already
}

// New prepares the profile parts of every served domain. signingCert may be
// nil or return nil: profiles are then served unsigned. Domains without an
// incoming or an outgoing mail server get no profile (404), with a warning.
func New(svc *autoconfig.Service, signingCert func() *tls.Certificate) (*Handler, error) {
	if svc == nil || svc.Catalog == nil {
		return nil, errors.New("apple: New needs a Service with a Catalog")
	}
	log := svc.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Handler{
		svc:         svc,
		log:         log.With("component", "apple"),
		signingCert: signingCert,
		domains:     map[string]*domainProfile{},
	}
	for _, st := range svc.Catalog.Domains() {
		p, err := prepare(st)
		if errors.Is(err, ErrIncomplete) {
			h.log.Warn("no Apple profile for this domain", "domain", st.Domain, "err", err)
			continue
		}
		if err != nil {
			return nil, err
		}
		h.domains[st.Domain] = p
	}
	return h, nil
}

// Register adds GET and HEAD /profile.mobileconfig.
func (h *Handler) Register(e *echo.Echo) {
	e.GET(Path, h.serve)
	e.HEAD(Path, h.serve)
}

func (h *Handler) serve(c echo.Context) error {
	raw := c.QueryParam("emailaddress")
	if raw == "" {
		// The profile carries the address and login name, so unlike
		// autoconfig there is no placeholder form to fall back to.
		return h.fail(c, http.StatusBadRequest, "the emailaddress parameter is required, e.g. ?emailaddress=user@example.com")
	}
	t, err := h.svc.Resolve(raw, "")
	if err != nil {
		return h.fail(c, autoconfig.TargetStatus(err), err.Error())
	}
	p, ok := h.domains[t.Settings.Domain]
	if !ok {
		return h.fail(c, http.StatusNotFound, "no Apple profile is published for this domain")
	}
	body, err := p.render(*t.Addr)
	if err != nil {
		h.log.Error("render profile", "domain", t.Settings.Domain, "err", err)
		return h.fail(c, http.StatusServiceUnavailable, "the profile cannot be generated right now")
	}
	signed := false
	if s := h.currentSigner(); s != nil {
		der, err := s.sign(body)
		if err != nil {
			// An unsigned profile still sets up the account; refusing it
			// would leave the user with nothing.
			h.log.Error("sign profile; serving it unsigned", "domain", t.Settings.Domain, "err", err)
		} else {
			body, signed = der, true
		}
	}
	hdr := c.Response().Header()
	hdr.Set(echo.HeaderContentType, ContentType)
	hdr.Set(echo.HeaderContentDisposition, `attachment; filename="`+fileName(t.Settings.Domain)+`.mobileconfig"`)
	hdr.Set(echo.HeaderContentLength, strconv.Itoa(len(body)))
	// The profile names a mailbox and its login: no shared cache may keep it.
	hdr.Set(echo.HeaderCacheControl, "no-store")
	hdr.Set(echo.HeaderXContentTypeOptions, "nosniff")
	h.svc.Count(autoconfig.FormatMobileconfig, http.StatusOK)
	h.log.Debug("profile served", "domain", t.Settings.Domain, "signed", signed)
	c.Response().WriteHeader(http.StatusOK)
	if c.Request().Method == http.MethodHead {
		return nil
	}
	_, err = c.Response().Write(body)
	return err
}

// fail answers an error as plain text.
func (h *Handler) fail(c echo.Context, status int, msg string) error {
	h.svc.Count(autoconfig.FormatMobileconfig, status)
	c.Response().Header().Set(echo.HeaderXContentTypeOptions, "nosniff")
	return c.String(status, msg+"\n")
}

// currentSigner returns the signer for the current signing certificate, or
// nil to serve unsigned. Problems are logged once per certificate.
func (h *Handler) currentSigner() *signer {
	if h.signingCert == nil {
		return nil
	}
	cert := h.signingCert()
	if cert == nil {
		return nil
	}
	e := h.signer.Load()
	if e == nil || e.src != cert {
		e = &signerEntry{src: cert}
		e.signer, e.err = newSigner(cert)
		if e.err != nil {
			h.log.Error("signing certificate unusable; serving profiles unsigned", "err", e.err)
		}
		h.signer.Store(e)
	}
	if e.err != nil {
		return nil
	}
	if err := e.signer.valid(time.Now()); err != nil {
		if !e.expired.Swap(true) {
			h.log.Error("signing certificate not valid now; serving profiles unsigned", "err", err)
		}
		return nil
	}
	return e.signer
}

// fileName keeps only characters that need no quoting in a header; served
// domains are A-labels, so this changes nothing for them.
func fileName(domain string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '.', r == '-':
			return r
		case r >= 'A' && r <= 'Z':
			return r + ('a' - 'A')
		default:
			return '_'
		}
	}, domain)
}
