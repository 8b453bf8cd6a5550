// Package web is the probe's HTTP face: the JSON API (POST /api/v1/probe,
// optionally streamed as server-sent events) and the /probe page for
// support staff and users, with the API's safety policy (SPEC §7,
// reference/probe.md §8):
//
//   - anonymous callers may probe addresses of served domains only; staff
//     (a bearer token) may probe any domain;
//   - probes per caller address and password tests per mailbox are rate
//     limited, and only a few probes run at once;
//   - the dialer refuses private, loopback and link-local addresses except
//     for this service's own hosts, and every port but mail and web ones;
//   - the password travels only in a POST body (never a URL), is sent only
//     over verified TLS (the probe core) and appears in no log, report,
//     event or error.
package web

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"mailconf/autoconfig"
	"mailconf/internal/metrics"
	"mailconf/probe"
	"mailconf/probe/netguard"
	"mailconf/probe/report"
	"mailconf/templates"
)

// Paths served by the handler.
const (
	PathAPI  = "/api/v1/probe"
	PathPage = "/probe"
)

// MaxBody caps a probe request body: an address and a password fit many
// times over.
const MaxBody = 16 << 10

// Limits are the API's rate and concurrency limits. Zero fields take the
// defaults.
type Limits struct {
	// CallerRuns probes per CallerWindow for one anonymous caller address
	// (IPv4 address or IPv6 /64). Default 10 per 10 minutes.
	CallerRuns   int
	CallerWindow time.Duration
	// MailboxLogins password tests per MailboxWindow for one mailbox, for
	// every caller including staff: servers lock accounts after a few
	// failures (reference/probe.md §8.3). Default 3 per 15 minutes.
	MailboxLogins int
	MailboxWindow time.Duration
	// Concurrent probes at once; more are refused with 503. Default 4.
	Concurrent int
	// Tracked keys per limiter (memory bound). Default 10000.
	Tracked int
}

func (l Limits) withDefaults() Limits {
	if l.CallerRuns <= 0 {
		l.CallerRuns = 10
	}
	if l.CallerWindow <= 0 {
		l.CallerWindow = 10 * time.Minute
	}
	if l.MailboxLogins <= 0 {
		l.MailboxLogins = 3
	}
	if l.MailboxWindow <= 0 {
		l.MailboxWindow = 15 * time.Minute
	}
	if l.Concurrent <= 0 {
		l.Concurrent = 4
	}
	if l.Tracked <= 0 {
		l.Tracked = 10000
	}
	return l
}

// Options configure the handler.
type Options struct {
	// Catalog holds the served domains: anonymous callers may probe these.
	Catalog *autoconfig.Catalog
	// OwnHosts are this service's own server host names (the configured
	// servers and the hostname): the dialer lets them reach loopback and
	// private addresses.
	OwnHosts []string
	// OwnPorts are this service's own listener ports, allowed in addition
	// to the standard mail and web ports (2993 in the embedded default).
	OwnPorts []int
	// RootCAs returns the trust anchors (the service's own certificate and
	// the system roots). It is asked at every run, so that a certificate
	// reloaded on SIGHUP is trusted from the next run on; nil means the
	// system roots.
	RootCAs func() *x509.CertPool
	// Resolver is "host:port" of the DNS resolver; "" is the system's.
	Resolver string
	// StaffTokens are the bearer tokens of staff (see LoadTokens).
	StaffTokens []string
	// EHLOName is the name the probe greets SMTP servers with.
	EHLOName string
	Metrics  *metrics.Metrics
	Logger   *slog.Logger
	// Now is the clock of the rate limits (default time.Now).
	Now    func() time.Time
	Limits Limits
	// Timeout bounds one probe (default 60 s).
	Timeout time.Duration
	// Configure adjusts every run's probe options last; hermetic tests map
	// logical ports to their listeners with it. Production leaves it nil.
	Configure func(*probe.Options)
}

// Handler serves the probe API and page.
type Handler struct {
	opts      Options
	log       *slog.Logger
	page      *template.Template
	callers   *limiter
	mailboxes *limiter
	slots     chan struct{}
	tokens    [][sha256.Size]byte
}

// New checks the options and parses the page templates once.
func New(opts Options) (*Handler, error) {
	if opts.Catalog == nil {
		return nil, errors.New("probe/web: New needs a Catalog")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 60 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	page, err := template.New("probe").Funcs(funcs).ParseFS(templates.FS, "base.html", "probe.html")
	if err != nil {
		return nil, fmt.Errorf("probe/web: parse templates: %w", err)
	}
	l := opts.Limits.withDefaults()
	h := &Handler{
		opts: opts, log: log, page: page,
		callers:   newLimiter(l.CallerRuns, l.CallerWindow, l.Tracked),
		mailboxes: newLimiter(l.MailboxLogins, l.MailboxWindow, l.Tracked),
		slots:     make(chan struct{}, l.Concurrent),
	}
	for _, t := range opts.StaffTokens {
		if t = strings.TrimSpace(t); t != "" {
			h.tokens = append(h.tokens, sha256.Sum256([]byte(t)))
		}
	}
	return h, nil
}

// LoadTokens reads staff bearer tokens, one per line; blank lines and
// lines starting with # are ignored.
func LoadTokens(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("probe: staff tokens: %w", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.ContainsAny(line, " \t") {
			return nil, fmt.Errorf("probe: staff tokens: %s: a token must not contain spaces", path)
		}
		out = append(out, line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("probe: staff tokens: %s: %w", path, err)
	}
	return out, nil
}

// Register adds POST /api/v1/probe and GET/POST /probe.
func (h *Handler) Register(e *echo.Echo) {
	e.POST(PathAPI, h.handleAPI)
	e.GET(PathPage, h.handlePage)
	e.HEAD(PathPage, h.handlePage)
	e.POST(PathPage, h.handlePageRun)
}

// apiError is an answer other than a report: status and a message that
// names the problem.
type apiError struct {
	Status     int    `json:"status"`
	Message    string `json:"error"`
	retryAfter time.Duration
}

func (e *apiError) Error() string { return e.Message }

func badRequest(format string, a ...any) *apiError {
	return &apiError{Status: http.StatusBadRequest, Message: fmt.Sprintf(format, a...)}
}

// input is one probe request, after the policy said yes.
type input struct {
	address  autoconfig.Address
	password report.Secret
	staff    bool
	caller   string
}

type requestBody struct {
	Address  string `json:"address"`
	Password string `json:"password"`
}

// readInput decodes the body (JSON or a form), authenticates staff and
// applies the policy and the rate limits.
func (h *Handler) readInput(c echo.Context) (*input, *apiError) {
	r := c.Request()
	q := r.URL.Query()
	if q.Has("password") || q.Has("token") {
		return nil, badRequest("a password or token must never be put in a URL; send it in the POST body")
	}
	ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return nil, badRequest("Content-Type: want application/json or application/x-www-form-urlencoded")
	}
	r.Body = http.MaxBytesReader(c.Response(), r.Body, MaxBody)
	var body requestBody
	var formToken string
	switch ct {
	case "application/json":
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&body); err != nil {
			return nil, bodyError(err)
		}
		if _, err := dec.Token(); !errors.Is(err, io.EOF) {
			return nil, badRequest("request body: want one JSON object and nothing after it")
		}
	case "application/x-www-form-urlencoded":
		if err := r.ParseForm(); err != nil {
			return nil, bodyError(err)
		}
		body.Address, body.Password = r.PostForm.Get("address"), r.PostForm.Get("password")
		formToken = r.PostForm.Get("token")
	default:
		return nil, badRequest("Content-Type %q: want application/json or application/x-www-form-urlencoded", ct)
	}

	in := &input{caller: callerKey(r.RemoteAddr), password: report.NewSecret(body.Password)}
	if body.Password == "" {
		in.password = report.Secret{}
	}
	token, hasToken := bearer(r.Header.Get("Authorization"))
	if formToken != "" {
		token, hasToken = formToken, true
	}
	if hasToken {
		if !h.staff(token) {
			return nil, &apiError{Status: http.StatusUnauthorized, Message: "the staff token is not valid"}
		}
		in.staff = true
	}
	if !utf8.ValidString(body.Address) || !utf8.ValidString(body.Password) {
		return nil, badRequest("address and password must be UTF-8 text")
	}
	addr, err := autoconfig.ParseAddress(strings.TrimSpace(body.Address))
	if err != nil {
		return nil, badRequest("address: %v", err)
	}
	in.address = addr
	if !in.staff {
		if _, ok := h.opts.Catalog.Lookup(addr.Domain); !ok {
			return nil, &apiError{Status: http.StatusForbidden, Message: fmt.Sprintf("%s is not a domain served here; only staff may probe other domains", addr.Domain)}
		}
	}
	now := h.opts.Now()
	if !in.staff {
		if ok, wait := h.callers.allow(in.caller, now); !ok {
			return nil, &apiError{Status: http.StatusTooManyRequests, Message: "too many probes from your address; try again later", retryAfter: wait}
		}
	}
	if !in.password.IsZero() {
		if ok, wait := h.mailboxes.allow(strings.ToLower(addr.String()), now); !ok {
			return nil, &apiError{Status: http.StatusTooManyRequests, Message: "too many login tests for this mailbox; try again later", retryAfter: wait}
		}
	}
	return in, nil
}

func bodyError(err error) *apiError {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return badRequest("request body larger than %d bytes", MaxBody)
	}
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return badRequest("request body: malformed JSON at byte %d", syn.Offset)
	case errors.As(err, &typ):
		return badRequest("request body: %q must be a %s", typ.Field, typ.Type)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("request body: incomplete JSON")
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		return badRequest("request body: %s; want address and password", strings.TrimPrefix(err.Error(), "json: "))
	}
	return badRequest("request body: cannot be read")
}

func bearer(header string) (string, bool) {
	if header == "" {
		return "", false
	}
	scheme, tok, _ := strings.Cut(header, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", true // present but not a bearer token: refused as invalid
	}
	return strings.TrimSpace(tok), true
}

// staff compares token with every configured token in constant time (on
// hashes, so that lengths leak nothing either).
func (h *Handler) staff(token string) bool {
	if token == "" {
		return false
	}
	sum := sha256.Sum256([]byte(token))
	ok := 0
	for _, t := range h.tokens {
		ok |= subtle.ConstantTimeCompare(sum[:], t[:])
	}
	return ok == 1
}

// options are the probe options for one run under the API's policy.
func (h *Handler) options(in *input) probe.Options {
	reason := "served_domain"
	if in.staff {
		reason = "staff"
	}
	var roots *x509.CertPool
	if h.opts.RootCAs != nil {
		roots = h.opts.RootCAs()
	}
	o := probe.Options{
		Resolver: h.opts.Resolver,
		RootCAs:  roots,
		Policy: netguard.Policy{
			AllowHosts: append([]string(nil), h.opts.OwnHosts...),
			AllowPorts: append([]int(nil), h.opts.OwnPorts...),
		},
		AuthAllowed: !in.password.IsZero(),
		AuthReason:  reason,
		Timeout:     h.opts.Timeout,
		EHLOName:    h.opts.EHLOName,
		Logger:      h.log,
		Published:   h.opts.Catalog,
	}
	if h.opts.Configure != nil {
		h.opts.Configure(&o)
	}
	return o
}

// acquire takes one of the concurrent-probe slots.
func (h *Handler) acquire() (release func(), _ *apiError) {
	select {
	case h.slots <- struct{}{}:
		return func() { <-h.slots }, nil
	default:
		return nil, &apiError{Status: http.StatusServiceUnavailable, Message: "too many probes are running; try again in a minute", retryAfter: time.Minute}
	}
}

// run probes (the caller holds a slot) and counts the result.
func (h *Handler) run(ctx context.Context, in *input, progress func(report.Step)) (*report.Report, *apiError) {
	opts := h.options(in)
	opts.Progress = progress
	rep, err := probe.Run(ctx, probe.Request{Address: in.address.String(), Password: in.password}, opts)
	if err != nil {
		return nil, badRequest("%v", err)
	}
	if h.opts.Metrics != nil {
		h.opts.Metrics.ProbeResults.WithLabelValues(string(rep.Summary.Status)).Inc()
	}
	h.log.Info("probe request", "id", rep.ID, "caller", in.caller, "address", rep.Input.AddressMasked,
		"staff", in.staff, "login", !in.password.IsZero(), "status", string(rep.Summary.Status), "duration_ms", rep.DurationMS)
	return rep, nil
}

func (h *Handler) refuse(c echo.Context, e *apiError) error {
	h.log.Info("probe refused", "caller", callerKey(c.Request().RemoteAddr), "status", e.Status, "reason", e.Message)
	if e.retryAfter > 0 {
		c.Response().Header().Set("Retry-After", strconv.Itoa(int(e.retryAfter.Round(time.Second)/time.Second)+1))
	}
	if e.Status == http.StatusUnauthorized {
		c.Response().Header().Set("WWW-Authenticate", `Bearer realm="mailconf probe"`)
	}
	return c.JSON(e.Status, e)
}

// handleAPI answers POST /api/v1/probe: the JSON report, or with
// ?stream=1 (or Accept: text/event-stream) the steps as server-sent events
// while they run, then the report.
func (h *Handler) handleAPI(c echo.Context) error {
	c.Response().Header().Set("Cache-Control", "no-store")
	in, aerr := h.readInput(c)
	if aerr != nil {
		return h.refuse(c, aerr)
	}
	r := c.Request()
	release, aerr := h.acquire()
	if aerr != nil {
		return h.refuse(c, aerr)
	}
	defer release()
	if r.URL.Query().Get("stream") == "1" || strings.Contains(r.Header.Get("Accept"), "text/event-stream") {
		return h.stream(c, in)
	}
	rep, aerr := h.run(r.Context(), in, nil)
	if aerr != nil {
		return h.refuse(c, aerr)
	}
	c.Response().Header().Set("Content-Type", "application/json; charset=utf-8")
	c.Response().WriteHeader(http.StatusOK)
	return report.JSON(c.Response(), rep)
}
