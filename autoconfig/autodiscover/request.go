package autodiscover

import (
	"bytes"
	"encoding/xml"
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

	doc, rootSpace, ok := fastParse(body)
	if !ok {
		var rerr *requestError
		if doc, rootSpace, rerr = fullParse(body); rerr != nil {
			return parsedRequest{}, rerr
		}
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
	case schema == "" && sameNS(rootSpace, nsRequestMobileSync):
		return parsedRequest{}, &requestError{Code: codeSchemaUnavailable, Reason: "mobilesync request without a response schema"}
	case schema == "", sameNS(schema, nsResponseOutlook):
	default:
		return parsedRequest{}, &requestError{Code: codeSchemaUnavailable, Reason: "response schema not served"}
	}
	return parsedRequest{EMailAddress: strings.TrimSpace(r.EMailAddress[0])}, nil
}

// fullParse reads any request with encoding/xml in one token pass:
// well-formedness, no DTD anywhere (a DOCTYPE is the carrier of
// entity-expansion and external-entity attacks; Go would not expand them,
// but nothing legitimate sends one), and the few elements Autodiscover
// needs, matched by local name. It returns the root element's namespace.
func fullParse(body []byte) (requestDoc, string, *requestError) {
	d := newDecoder(body)
	var doc requestDoc
	var root *xml.Name
	var field *[]string // the element whose text is being collected
	var text strings.Builder
	depth, rootDone, inRequest := 0, false, false
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return requestDoc{}, "", invalid("not well-formed: %v", err)
		}
		switch t := tok.(type) {
		case xml.Directive:
			return requestDoc{}, "", invalid("DTDs and directives are not accepted")
		case xml.CharData:
			if depth == 0 && len(bytes.TrimSpace(t)) > 0 {
				return requestDoc{}, "", invalid("text outside the root element")
			}
			if field != nil && depth == 3 {
				text.Write(t)
			}
		case xml.StartElement:
			depth++
			switch depth {
			case 1:
				if rootDone {
					return requestDoc{}, "", invalid("more than one root element")
				}
				if t.Name.Local != "Autodiscover" {
					return requestDoc{}, "", invalid("root element is %q, want Autodiscover", t.Name.Local)
				}
				name := t.Name
				root = &name
			case 2:
				inRequest = t.Name.Local == "Request"
				if inRequest {
					doc.Requests = append(doc.Requests, requestElem{})
				}
			case 3:
				if n := len(doc.Requests); inRequest && field == nil {
					r := &doc.Requests[n-1]
					switch t.Name.Local {
					case "EMailAddress":
						field = &r.EMailAddress
					case "LegacyDN":
						field = &r.LegacyDN
					case "AcceptableResponseSchema":
						field = &r.AcceptableResponseSchema
					}
					text.Reset()
				}
			}
		case xml.EndElement:
			if depth == 3 && field != nil {
				*field = append(*field, text.String())
				field = nil
			}
			depth--
			if depth == 0 {
				rootDone = true
			}
		}
	}
	if root == nil {
		return requestDoc{}, "", invalid("no root element")
	}
	return doc, root.Space, nil
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

// checkContentType accepts text/xml and application/xml with any
// parameters and casing. A missing header is tolerated: the body is still
// parsed strictly.
func checkContentType(ct string) *requestError {
	switch ct {
	case "text/xml", "text/xml; charset=utf-8", "application/xml", "application/xml; charset=utf-8":
		return nil // what clients send, without mime's parameter map
	}
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
