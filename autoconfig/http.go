package autoconfig

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"mailconf/internal/metrics"
)

// Service is what every format's handlers share: the catalog, metrics and
// the logger. Each format lives in its own subpackage (thunderbird,
// autodiscover, apple, setup) and registers its routes on an echo instance.
type Service struct {
	Catalog *Catalog
	Metrics *metrics.Metrics
	Logger  *slog.Logger
	// counters holds the request counter of every format and common status,
	// resolved once: Count runs on every request.
	counters map[counterKey]prometheus.Counter
	// bodies recycles answer buffers: net/http has copied a body once
	// Write returns, and a fresh buffer per answer was most of the
	// garbage the configuration handlers made.
	bodies sync.Pool
}

type counterKey struct {
	format string
	status int
}

// NewService checks its parts; a nil logger discards.
func NewService(cat *Catalog, m *metrics.Metrics, log *slog.Logger) (*Service, error) {
	if cat == nil || m == nil {
		return nil, errors.New("autoconfig: NewService needs a Catalog and Metrics")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Service{Catalog: cat, Metrics: m, Logger: log, counters: map[counterKey]prometheus.Counter{}}
	for _, f := range []string{FormatThunderbird, FormatAutodiscover, FormatAutodiscoverJSON, FormatMobileconfig, FormatSetup, FormatSettings} {
		for _, st := range []int{http.StatusOK, http.StatusBadRequest, http.StatusNotFound, http.StatusMethodNotAllowed} {
			s.counters[counterKey{f, st}] = m.AutoconfigRequests.WithLabelValues(f, strconv.Itoa(st))
		}
	}
	return s, nil
}

// Register adds the routes the root package owns (the settings API).
func (s *Service) Register(e *echo.Echo) {
	e.GET("/api/v1/settings", s.handleSettingsJSON)
	e.HEAD("/api/v1/settings", s.handleSettingsJSON)
}

// WriteBody answers with the bytes build appends to an empty buffer, under
// the given Content-Type and Cache-Control. The headers are set as
// net/http stores them, which saves canonicalising and copying them.
func (s *Service) WriteBody(c echo.Context, status int, contentType, cacheControl string, build func([]byte) []byte) error {
	bp, _ := s.bodies.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	body := build((*bp)[:0])
	w := c.Response()
	hdr := w.Header()
	hdr["Content-Type"] = []string{contentType}
	hdr["Cache-Control"] = []string{cacheControl}
	w.WriteHeader(status)
	_, err := w.Write(body)
	if cap(body) <= maxPooledBody {
		*bp = body
		s.bodies.Put(bp)
	}
	return err
}

// maxPooledBody keeps one unusually large answer from pinning its buffer.
const maxPooledBody = 64 << 10

// Metric labels for AutoconfigRequests, one per format.
const (
	FormatThunderbird      = "thunderbird"
	FormatAutodiscover     = "autodiscover"
	FormatAutodiscoverJSON = "autodiscover-json"
	FormatMobileconfig     = "mobileconfig"
	FormatSetup            = "setup"
	FormatSettings         = "settings"
)

// Count records one answered request of a format.
func (s *Service) Count(format string, status int) {
	if c, ok := s.counters[counterKey{format, status}]; ok {
		c.Inc()
		return
	}
	s.Metrics.AutoconfigRequests.WithLabelValues(format, strconv.Itoa(status)).Inc()
}

// Errors of target resolution.
var (
	ErrUnknownDomain = errors.New("this domain is not served here")
	ErrNoDomain      = errors.New("no email address given and the Host header names no served domain")
)

// Target is what a configuration request is about: a served domain and,
// when the request named one, a validated address of it.
type Target struct {
	Settings *Settings
	Addr     *Address // nil: no address given, use placeholders
}

// Resolve finds the target of a request: the address when one is given,
// else the domain the Host header names (autoconfig.D, autodiscover.D or
// D). Errors wrap ErrAddress, ErrUnknownDomain or ErrNoDomain.
func (s *Service) Resolve(address, host string) (Target, error) {
	if address != "" {
		a, err := ParseAddress(address)
		if err != nil {
			return Target{}, err
		}
		st, ok := s.Catalog.Lookup(a.Domain)
		if !ok {
			return Target{}, ErrUnknownDomain
		}
		return Target{Settings: st, Addr: &a}, nil
	}
	st, ok := s.hostDomain(host)
	if !ok {
		return Target{}, ErrNoDomain
	}
	return Target{Settings: st}, nil
}

// hostDomain maps a Host header to a served domain.
func (s *Service) hostDomain(host string) (*Settings, bool) {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if st, ok := s.Catalog.Lookup(host); ok {
		return st, true
	}
	for _, prefix := range []string{"autoconfig.", "autodiscover."} {
		if rest, ok := strings.CutPrefix(host, prefix); ok {
			if st, ok := s.Catalog.Lookup(rest); ok {
				return st, true
			}
		}
	}
	return nil, false
}

// TargetStatus maps a Resolve error to an HTTP status: 400 for a bad
// address, 404 for a domain not served.
func TargetStatus(err error) int {
	switch {
	case errors.Is(err, ErrAddress):
		return http.StatusBadRequest
	default:
		return http.StatusNotFound
	}
}

// settingsJSON is the /api/v1/settings answer: the model, plus the login
// name when an address was given.
type settingsJSON struct {
	*Settings
	Address  string `json:"address,omitempty"`
	LoginFor string `json:"login_name,omitempty"`
}

func (s *Service) handleSettingsJSON(c echo.Context) error {
	t, err := s.Resolve(c.QueryParam("emailaddress"), c.Request().Host)
	if err != nil {
		status := TargetStatus(err)
		s.Count(FormatSettings, status)
		return c.JSON(status, map[string]string{"error": err.Error()})
	}
	out := settingsJSON{Settings: t.Settings}
	if t.Addr != nil {
		out.Address = t.Addr.String()
		out.LoginFor = t.Settings.LoginName(*t.Addr)
	}
	s.Count(FormatSettings, http.StatusOK)
	return c.JSON(http.StatusOK, out)
}
