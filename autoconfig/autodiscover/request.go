package autodiscover

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"mime"
	"strings"
)

// maxBody caps an Autodiscover request (SPEC §5). Real requests are a few
// hundred bytes.
const maxBody = 64 << 10

// Autodiscover error codes (MS-OXDSCLI 2.2.4.1.1.3.2).
const (
	codeAddressNotFound   = 500
	codeInvalidRequest    = 600
	codeSchemaUnavailable = 601
)

// requestError is a request the server answers with an Autodiscover error
// document rather than settings.
type requestError struct {
	Code   int
	Reason string // for logs; never sent to the client
}

func (e *requestError) Error() string {
	return fmt.Sprintf("autodiscover: error %d: %s", e.Code, e.Reason)
}

func invalid(format string, args ...any) *requestError {
	return &requestError{Code: codeInvalidRequest, Reason: fmt.Sprintf(format, args...)}
}

// parsedRequest is a valid Outlook request.
type parsedRequest struct {
	EMailAddress string
}

// parseRequest validates the content type and body of a POST. Every
// failure is a *requestError: 600 for anything malformed, 601 when the
// client wants a response schema other than Outlook 2006a.
func parseRequest(contentType string, body []byte) (parsedRequest, *requestError) {
	if err := checkContentType(contentType); err != nil {
		return parsedRequest{}, err
	}
	if len(body) > maxBody {
		return parsedRequest{}, invalid("body longer than %d bytes", maxBody)
	}
	body = bytes.TrimPrefix(body, []byte("\xef\xbb\xbf"))

	// First pass: well-formedness, and no DTD anywhere (a DOCTYPE is the
	// carrier of entity-expansion and external-entity attacks; Go would
	// not expand them, but nothing legitimate sends one).
	d := newDecoder(body)
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return parsedRequest{}, invalid("not well-formed: %v", err)
		}
		if _, ok := tok.(xml.Directive); ok {
			return parsedRequest{}, invalid("DTDs and directives are not accepted")
		}
	}

	// Second pass: structure.
	d = newDecoder(body)
	var doc requestDoc
	var root *xml.StartElement
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return parsedRequest{}, invalid("not well-formed: %v", err)
		}
		switch t := tok.(type) {
		case xml.CharData:
			if len(bytes.TrimSpace(t)) > 0 {
				return parsedRequest{}, invalid("text outside the root element")
			}
		case xml.StartElement:
			if root != nil {
				return parsedRequest{}, invalid("more than one root element")
			}
			root = &t
			if t.Name.Local != "Autodiscover" {
				return parsedRequest{}, invalid("root element is %q, want Autodiscover", t.Name.Local)
			}
			// DecodeElement consumes through the matching end tag.
			if err := decodeRoot(d, &doc, &t); err != nil {
				return parsedRequest{}, err
			}
		}
	}
	if root == nil {
		return parsedRequest{}, invalid("no root element")
	}
	if len(doc.Requests) != 1 {
		return parsedRequest{}, invalid("want exactly one Request element, got %d", len(doc.Requests))
	}
	r := doc.Requests[0]
	if len(r.EMailAddress) != 1 || strings.TrimSpace(r.EMailAddress[0]) == "" {
		// LegacyDN alone names an Exchange mailbox, which this server has
		// no directory for.
		return parsedRequest{}, invalid("want exactly one non-empty EMailAddress")
	}
	if len(r.AcceptableResponseSchema) > 1 {
		return parsedRequest{}, invalid("more than one AcceptableResponseSchema")
	}
	schema := ""
	if len(r.AcceptableResponseSchema) == 1 {
		schema = strings.TrimSpace(r.AcceptableResponseSchema[0])
	}
	switch {
	case schema == "" && sameNS(root.Name.Space, nsRequestMobileSync):
		return parsedRequest{}, &requestError{Code: codeSchemaUnavailable, Reason: "mobilesync request without a response schema"}
	case schema == "", sameNS(schema, nsResponseOutlook):
	default:
		return parsedRequest{}, &requestError{Code: codeSchemaUnavailable, Reason: "response schema not served"}
	}
	return parsedRequest{EMailAddress: strings.TrimSpace(r.EMailAddress[0])}, nil
}

func newDecoder(body []byte) *xml.Decoder {
	d := xml.NewDecoder(bytes.NewReader(body))
	d.Strict = true
	// Entity stays nil: only the five predefined entities and character
	// references are understood.
	d.CharsetReader = func(label string, in io.Reader) (io.Reader, error) {
		switch strings.ToLower(label) {
		case "us-ascii", "ascii":
			return in, nil
		}
		return nil, fmt.Errorf("encoding %q is not supported", label)
	}
	return d
}

func decodeRoot(d *xml.Decoder, doc *requestDoc, start *xml.StartElement) *requestError {
	err := d.DecodeElement(doc, start)
	if err == nil {
		return nil
	}
	var se *xml.SyntaxError
	if errors.As(err, &se) {
		return invalid("not well-formed: %v", err)
	}
	return invalid("unexpected structure: %v", err)
}

// checkContentType accepts text/xml and application/xml with any
// parameters and casing. A missing header is tolerated: the body is still
// parsed strictly.
func checkContentType(ct string) *requestError {
	if strings.TrimSpace(ct) == "" {
		return nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return invalid("unparsable Content-Type")
	}
	switch mt {
	case "text/xml", "application/xml":
		return nil
	}
	return invalid("Content-Type %s is not XML", mt)
}

// sameNS compares namespace URIs, tolerating case and the https://
// spelling some Microsoft pages print.
func sameNS(got, want string) bool {
	got = strings.TrimSpace(got)
	if rest, ok := strings.CutPrefix(strings.ToLower(got), "https://"); ok {
		got = "http://" + rest
	}
	return strings.EqualFold(got, want)
}
