// Package autodiscover serves Microsoft Autodiscover for IMAP/POP3/SMTP
// accounts: the POX XML protocol (MS-OXDSCLI, Outlook response schema
// 2006a) and the Autodiscover v2 JSON hand-off that points newer Outlook
// builds at the POX endpoint.
//
// Every served domain's settings document is marshalled once, when the
// handler is built; a request only splices the XML-escaped login name in.
package autodiscover

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"mailconf/autoconfig"
)

// Canonical paths; requests in any letter case are rewritten to these.
const (
	pathPOX      = "/autodiscover/autodiscover.xml"
	pathJSON     = "/autodiscover/autodiscover.json"
	pathJSONAddr = "/autodiscover/autodiscover.json/v1.0/"
)

const contentTypeXML = "text/xml; charset=utf-8"

// loginSlot marks where the login name goes; see the thunderbird package
// for why a processing instruction cannot collide with escaped data.
const loginSlot = "<?mailconf-login?>"

// Handler answers POX and v2 JSON Autodiscover requests.
type Handler struct {
	svc      *autoconfig.Service
	docs     map[string]*autoconfig.Slotted // POX settings by A-label domain
	json     map[string][]byte              // v2 AutodiscoverV1 answer by domain
	serverID uint32                         // the Error/@Id value
	now      func() time.Time
	// requests recycles request body buffers (see readBody).
	requests sync.Pool
}

// New marshals the POX settings and the v2 JSON answer of every domain in
// svc's catalog.
func New(svc *autoconfig.Service) (*Handler, error) {
	if svc == nil || svc.Catalog == nil {
		return nil, errors.New("autodiscover: New needs a Service with a Catalog")
	}
	h := &Handler{svc: svc, docs: map[string]*autoconfig.Slotted{}, json: map[string][]byte{}, now: time.Now}
	id := fnv.New32a()
	for _, st := range svc.Catalog.Domains() {
		d, err := prepare(st)
		if err != nil {
			return nil, fmt.Errorf("autodiscover: domain %s: %w", st.Domain, err)
		}
		h.docs[st.Domain] = d
		j, err := json.Marshal(jsonSettings{Protocol: "AutodiscoverV1", URL: "https://autodiscover." + st.Domain + pathPOX})
		if err != nil {
			return nil, fmt.Errorf("autodiscover: domain %s: json: %w", st.Domain, err)
		}
		h.json[st.Domain] = j
		id.Write([]byte(st.Domain + "\n"))
	}
	// Exchange puts a hash of the server's name in Error/@Id; a hash of
	// the served domains is as stable and reveals nothing new.
	h.serverID = id.Sum32()
	return h, nil
}

// Register adds the POX route (every method, so that non-POST methods get
// a deliberate 405), the two v2 JSON routes, and a pre-routing rewrite
// that makes all of them case-insensitive.
func (h *Handler) Register(e *echo.Echo) {
	e.Pre(canonicalPath)
	e.Any(pathPOX, h.servePOX)
	e.GET(pathJSON, h.serveJSON)
	e.HEAD(pathJSON, h.serveJSON)
	e.GET(pathJSONAddr+"*", h.serveJSON)
	e.HEAD(pathJSONAddr+"*", h.serveJSON)
}

// canonicalPath rewrites Autodiscover paths sent in any letter case
// (/AutoDiscover/AutoDiscover.xml is common) to the registered spelling.
// Only the fixed prefix is touched; an address after v1.0/ keeps its case.
func canonicalPath(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		u := c.Request().URL
		for _, p := range [...]string{pathPOX, pathJSON, pathJSONAddr} {
			exact := p != pathJSONAddr
			if fixed, ok := rewrite(u.Path, p, exact); ok {
				u.Path = fixed
				if u.RawPath != "" {
					if raw, ok := rewrite(u.RawPath, p, exact); ok {
						u.RawPath = raw
					} else {
						u.RawPath = ""
					}
				}
				break
			}
		}
		return next(c)
	}
}

func rewrite(path, canonical string, exact bool) (string, bool) {
	if len(path) < len(canonical) || !strings.EqualFold(path[:len(canonical)], canonical) {
		return "", false
	}
	if exact && len(path) != len(canonical) {
		return "", false
	}
	if path[:len(canonical)] == canonical {
		return path, true // already canonical: no new string
	}
	return canonical + path[len(canonical):], true
}

func prepare(st *autoconfig.Settings) (*autoconfig.Slotted, error) {
	login := &slot{Raw: loginSlot}
	acct := &account{AccountType: "email", Action: "settings"}
	for _, p := range []autoconfig.Protocol{autoconfig.IMAP, autoconfig.POP3, autoconfig.SMTP} {
		// One Protocol per service: the preferred endpoint (implicit TLS
		// first). Outlook reads one entry per type.
		ep, ok := st.Preferred(p)
		if !ok {
			continue
		}
		pr := protocol{
			Type:           strings.ToUpper(string(p)),
			Server:         ep.Host,
			Port:           ep.Port,
			DomainRequired: "off",
			LoginName:      login,
			// Outlook's default is on; off prevents it from trying NTLM.
			SPA: "off",
			// on for STARTTLS too: Thunderbird reads SSL=off as plain text.
			SSL:          "on",
			Encryption:   encryption(ep.Security),
			AuthRequired: "on",
		}
		if p == autoconfig.SMTP {
			pr.UsePOPAuth = "off"
			pr.SMTPLast = "off"
		}
		acct.Protocols = append(acct.Protocols, pr)
	}
	if len(st.Incoming) == 0 || len(st.Outgoing) == 0 {
		return nil, errors.New("needs at least one incoming and one outgoing server")
	}
	// eM Client picks up DAV entries (clients.md §2.3); Outlook and
	// Thunderbird ignore types they do not know.
	for _, dav := range []struct{ typ, url string }{{"CalDAV", st.CalDAV}, {"CardDAV", st.CardDAV}} {
		if dav.url == "" {
			continue
		}
		acct.Protocols = append(acct.Protocols, protocol{
			Type: dav.typ, Server: dav.url, DomainRequired: "off", LoginName: login,
			SPA: "off", SSL: "on", AuthRequired: "on",
		})
	}
	doc := responseDoc{Response: response{
		XMLName: xml.Name{Space: nsResponseOutlook, Local: "Response"},
		Account: acct,
	}}
	b, err := marshal(doc)
	if err != nil {
		return nil, err
	}
	return autoconfig.NewSlotted(b, loginSlot, len(acct.Protocols))
}

// encryption maps the neutral security mode: SSL is implicit TLS, TLS is
// STARTTLS (formats.md §6).
func encryption(s autoconfig.Security) string {
	if s == autoconfig.TLS {
		return "SSL"
	}
	return "TLS"
}

func marshal(doc responseDoc) ([]byte, error) {
	body, err := xml.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("autodiscover: marshal: %w", err)
	}
	out := make([]byte, 0, len(xml.Header)+len(body)+1)
	out = append(out, xml.Header...)
	out = append(out, body...)
	return append(out, '\n'), nil
}

func (h *Handler) servePOX(c echo.Context) error {
	req := c.Request()
	if req.Method != http.MethodPost {
		// Thunderbird re-POSTs to the https URL only if the GET it made
		// while following the http redirect failed (formats.md §2.2).
		h.svc.Count(autoconfig.FormatAutodiscover, http.StatusMethodNotAllowed)
		c.Response().Header().Set(echo.HeaderAllow, http.MethodPost)
		return c.Blob(http.StatusMethodNotAllowed, echo.MIMETextPlainCharsetUTF8, []byte("POST an Autodiscover request to this URL\n"))
	}
	bp, body, err := h.readBody(c)
	defer h.requests.Put(bp)
	if err != nil {
		return h.poxError(c, http.StatusOK, &requestError{Code: codeInvalidRequest, Reason: "reading body: " + err.Error()})
	}
	pr, rerr := parseRequest(req.Header.Get(echo.HeaderContentType), body)
	if rerr != nil {
		return h.poxError(c, http.StatusOK, rerr)
	}
	t, err := h.svc.Resolve(pr.EMailAddress, req.Host)
	switch {
	case errors.Is(err, autoconfig.ErrAddress):
		return h.poxError(c, http.StatusOK, &requestError{Code: codeInvalidRequest, Reason: "bad EMailAddress"})
	case err != nil:
		// Not served here: 404 lets Outlook and Thunderbird move on to
		// their next candidate URL; the body is still the XML error.
		return h.poxError(c, http.StatusNotFound, &requestError{Code: codeAddressNotFound, Reason: "domain not served"})
	}
	d, ok := h.docs[t.Settings.Domain]
	if !ok || t.Addr == nil {
		return h.poxError(c, http.StatusNotFound, &requestError{Code: codeAddressNotFound, Reason: "domain not prepared"})
	}
	login := t.Settings.LoginName(*t.Addr)
	h.svc.Count(autoconfig.FormatAutodiscover, http.StatusOK)
	return h.svc.WriteBody(c, http.StatusOK, contentTypeXML, "no-store", func(b []byte) []byte { return d.AppendTo(b, login) })
}

// readBody reads the request body, up to maxBody, into a recycled buffer:
// nothing parsed from it outlives the request (the parsers copy what they
// keep). The caller puts bp back when done with body.
func (h *Handler) readBody(c echo.Context) (bp *[]byte, body []byte, err error) {
	bp, _ = h.requests.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	if cap(*bp) < minBodyBuffer {
		*bp = make([]byte, 0, minBodyBuffer)
	}
	// MaxBytesReader also makes the server close the connection instead
	// of draining an oversized body, but only when given net/http's own
	// writer (it recognises that type), not echo's wrapper.
	r := http.MaxBytesReader(c.Response().Writer, c.Request().Body, maxBody)
	b := (*bp)[:0]
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, rerr := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			err = rerr
			break
		}
	}
	*bp = b[:0]
	return bp, b, err
}

// minBodyBuffer holds the request Outlook and Thunderbird send (about
// 350 bytes) with room to spare.
const minBodyBuffer = 2 << 10

// poxError answers with an Autodiscover error document. 600/601 are
// provider errors (Response in the outer namespace); 500 is an account
// error in the 2006a body.
func (h *Handler) poxError(c echo.Context, status int, e *requestError) error {
	h.svc.Logger.Debug("autodiscover request refused", "format", autoconfig.FormatAutodiscover, "code", e.Code, "reason", e.Reason, "status", status)
	body, err := h.errorDoc(e.Code)
	if err != nil {
		// Marshalling fixed values cannot fail in practice; answer
		// cleanly anyway.
		h.svc.Logger.Error("autodiscover error document", "err", err)
		h.svc.Count(autoconfig.FormatAutodiscover, http.StatusBadRequest)
		return c.Blob(http.StatusBadRequest, echo.MIMETextPlainCharsetUTF8, []byte("invalid request\n"))
	}
	h.svc.Count(autoconfig.FormatAutodiscover, status)
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.Blob(status, contentTypeXML, body)
}

var errorMessages = map[int]string{
	codeAddressNotFound:   "The email address can't be found.",
	codeInvalidRequest:    "Invalid Request",
	codeSchemaUnavailable: "Provider is not available",
}

func (h *Handler) errorDoc(code int) ([]byte, error) {
	e := &errorElem{
		Time:      h.now().UTC().Format("15:04:05.0000000"),
		ID:        h.serverID,
		ErrorCode: code,
		Message:   errorMessages[code],
	}
	var doc responseDoc
	if code == codeAddressNotFound {
		doc.Response = response{XMLName: xml.Name{Space: nsResponseOutlook, Local: "Response"}, Account: &account{Error: e}}
	} else {
		doc.Response = response{XMLName: xml.Name{Space: nsResponse, Local: "Response"}, Error: e}
	}
	return marshal(doc)
}
