package autodiscover

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"mailconf/autoconfig"
)

// serveJSON answers Autodiscover v2: GET autodiscover.json?Email=A&Protocol=P
// or autodiscover.json/v1.0/A?Protocol=P. Only AutodiscoverV1 is offered
// (the hand-off to the POX URL); ActiveSync is not served, so it is an
// invalid protocol like any other, as Exchange answers.
func (h *Handler) serveJSON(c echo.Context) error {
	req := c.Request()
	email := query(c, "Email")
	if rest, ok := strings.CutPrefix(req.URL.Path, pathJSONAddr); ok {
		email = rest
	}
	proto := query(c, "Protocol")
	if !strings.EqualFold(proto, "AutodiscoverV1") {
		return h.jsonError(c, http.StatusBadRequest, jsonError{
			ErrorCode:    "InvalidProtocol",
			ErrorMessage: "The given protocol value '" + sanitizeProtocol(proto) + "' is invalid. Supported values are 'AutodiscoverV1'",
		})
	}
	t, err := h.svc.Resolve(email, req.Host)
	switch {
	case errors.Is(err, autoconfig.ErrAddress):
		return h.jsonError(c, http.StatusBadRequest, jsonError{ErrorCode: "InvalidUser", ErrorMessage: "The given email address is invalid."})
	case err != nil:
		return h.jsonError(c, http.StatusNotFound, jsonError{ErrorCode: "NotFound", ErrorMessage: "This domain is not served here."})
	}
	body, ok := h.json[t.Settings.Domain]
	if !ok {
		return h.jsonError(c, http.StatusNotFound, jsonError{ErrorCode: "NotFound", ErrorMessage: "This domain is not served here."})
	}
	h.svc.Count(autoconfig.FormatAutodiscoverJSON, http.StatusOK)
	// The answer depends only on the domain, never on the mailbox.
	c.Response().Header().Set("Cache-Control", "public, max-age=3600")
	return c.JSONBlob(http.StatusOK, body)
}

func (h *Handler) jsonError(c echo.Context, status int, e jsonError) error {
	h.svc.Count(autoconfig.FormatAutodiscoverJSON, status)
	body, err := json.Marshal(e)
	if err != nil {
		h.svc.Logger.Error("autodiscover json error document", "err", err)
		return c.Blob(status, echo.MIMETextPlainCharsetUTF8, []byte("invalid request\n"))
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSONBlob(status, body)
}

// query reads a parameter by name in any letter case: Outlook builds send
// Email/Protocol, other callers lower-case them.
func query(c echo.Context, name string) string {
	params := c.QueryParams()
	if v := params.Get(name); v != "" {
		return v
	}
	best := ""
	for k := range params {
		// The smallest matching key wins, so that the answer does not
		// depend on map order when a caller sends several spellings.
		if strings.EqualFold(k, name) && (best == "" || k < best) {
			best = k
		}
	}
	if best == "" {
		return ""
	}
	return params.Get(best)
}

// sanitizeProtocol keeps the echoed value short and alphanumeric, so the
// error never reflects markup or control characters.
func sanitizeProtocol(p string) string {
	var b strings.Builder
	for _, r := range p {
		if b.Len() >= 64 {
			break
		}
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
	}
	return b.String()
}
