package autodiscover

import "testing"

// TestParseRequestStructure pins the one-pass parser's structural rules:
// only direct children of Request count, wherever else the same names
// appear.
func TestParseRequestStructure(t *testing.T) {
	const ns = `xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"`
	cases := []struct {
		name, body string
		code       int // 0: accepted
		email      string
	}{
		{"plain", `<Autodiscover ` + ns + `><Request><EMailAddress> a@example.com </EMailAddress></Request></Autodiscover>`, 0, "a@example.com"},
		{"prefixed", `<a:Autodiscover xmlns:a="urn:x"><a:Request><a:EMailAddress>a@example.com</a:EMailAddress></a:Request></a:Autodiscover>`, 0, "a@example.com"},
		{"address outside Request", `<Autodiscover ` + ns + `><Request/><Other><EMailAddress>a@example.com</EMailAddress></Other></Autodiscover>`, codeInvalidRequest, ""},
		{"address nested deeper", `<Autodiscover ` + ns + `><Request><X><EMailAddress>a@example.com</EMailAddress></X></Request></Autodiscover>`, codeInvalidRequest, ""},
		{"nested markup in address", `<Autodiscover ` + ns + `><Request><EMailAddress>a@<b/>example.com</EMailAddress></Request></Autodiscover>`, 0, "a@example.com"},
		{"two requests", `<Autodiscover ` + ns + `><Request><EMailAddress>a@example.com</EMailAddress></Request><Request><EMailAddress>b@example.com</EMailAddress></Request></Autodiscover>`, codeInvalidRequest, ""},
		{"two roots", `<Autodiscover ` + ns + `><Request><EMailAddress>a@example.com</EMailAddress></Request></Autodiscover><Autodiscover/>`, codeInvalidRequest, ""},
		{"text after root", `<Autodiscover ` + ns + `><Request><EMailAddress>a@example.com</EMailAddress></Request></Autodiscover>junk`, codeInvalidRequest, ""},
		{"doctype", `<!DOCTYPE x [<!ENTITY a "b">]><Autodiscover ` + ns + `><Request><EMailAddress>&a;</EMailAddress></Request></Autodiscover>`, codeInvalidRequest, ""},
		{"unclosed", `<Autodiscover ` + ns + `><Request><EMailAddress>a@example.com</EMailAddress></Request>`, codeInvalidRequest, ""},
		{"mobilesync", `<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/mobilesync/requestschema/2006"><Request><EMailAddress>a@example.com</EMailAddress></Request></Autodiscover>`, codeSchemaUnavailable, ""},
		{"other schema", `<Autodiscover ` + ns + `><Request><EMailAddress>a@example.com</EMailAddress><AcceptableResponseSchema>urn:other</AcceptableResponseSchema></Request></Autodiscover>`, codeSchemaUnavailable, ""},
	}
	for _, tc := range cases {
		got, rerr := parseRequest("text/xml", []byte(tc.body))
		switch {
		case tc.code == 0 && rerr != nil:
			t.Errorf("%s: refused: %v", tc.name, rerr)
		case tc.code == 0 && got.EMailAddress != tc.email:
			t.Errorf("%s: address %q, want %q", tc.name, got.EMailAddress, tc.email)
		case tc.code != 0 && (rerr == nil || rerr.Code != tc.code):
			t.Errorf("%s: got %+v, %v; want error %d", tc.name, got, rerr, tc.code)
		}
	}
}
