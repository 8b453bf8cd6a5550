package autodiscover

import (
	"strings"
	"testing"

	"mailconf/autoconfig"
)

// FuzzParseRequest: the request parser never panics, answers every input
// with either a request or a 600/601 error, and only accepts a single
// non-empty address within the size cap.
func FuzzParseRequest(f *testing.F) {
	seeds := []string{
		`<?xml version="1.0" encoding="utf-8"?><Autodiscover xmlns="` + nsRequestOutlook + `"><Request><EMailAddress>alice@example.test</EMailAddress><AcceptableResponseSchema>` + nsResponseOutlook + `</AcceptableResponseSchema></Request></Autodiscover>`,
		`<Autodiscover xmlns="` + nsRequestMobileSync + `"><Request><EMailAddress>a@example.test</EMailAddress><AcceptableResponseSchema>` + nsResponseMobileSync + `</AcceptableResponseSchema></Request></Autodiscover>`,
		`<!DOCTYPE a [<!ENTITY x "y">]><Autodiscover><Request><EMailAddress>&x;</EMailAddress></Request></Autodiscover>`,
		`<a:Autodiscover xmlns:a="urn:x"><a:Request><a:EMailAddress>a@b.c</a:EMailAddress></a:Request></a:Autodiscover>`,
		`<Autodiscover><Request><EMailAddress>a@b.c</EMailAddress></Request></Autodiscover><x/>`,
		`<?xml version="1.0" encoding="UTF-16"?><Autodiscover/>`,
		"\xef\xbb\xbf<Autodiscover><Request><EMailAddress>a@b.c</EMailAddress></Request></Autodiscover>",
		"",
		"<",
	}
	for _, s := range seeds {
		f.Add([]byte(s), "text/xml; charset=utf-8")
	}
	f.Add([]byte(seeds[0]), "application/json")
	f.Add([]byte(seeds[0]), "")
	f.Fuzz(func(t *testing.T, body []byte, contentType string) {
		req, err := parseRequest(contentType, body)
		if err != nil {
			if err.Code != codeInvalidRequest && err.Code != codeSchemaUnavailable {
				t.Fatalf("error code %d", err.Code)
			}
			if req != (parsedRequest{}) {
				t.Fatalf("error with a request: %+v", req)
			}
			return
		}
		if len(body) > maxBody {
			t.Fatalf("accepted %d bytes", len(body))
		}
		if req.EMailAddress == "" || strings.TrimSpace(req.EMailAddress) != req.EMailAddress {
			t.Fatalf("accepted address %q", req.EMailAddress)
		}
		// Whatever the parser lets through must be safe to hand to the
		// address parser.
		_, _ = autoconfig.ParseAddress(req.EMailAddress)
		again, err2 := parseRequest(contentType, body)
		if err2 != nil || again != req {
			t.Fatalf("not deterministic: %+v %v", again, err2)
		}
	})
}
