package autodiscover

import (
	"reflect"
	"testing"
)

const typicalRequest = `<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">
  <Request>
    <EMailAddress>alice@example.com</EMailAddress>
    <AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema>
  </Request>
</Autodiscover>
`

func TestFastParseShapes(t *testing.T) {
	ns := `<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">`
	for _, tc := range []struct {
		name, body string
		fast       bool
	}{
		{"outlook", typicalRequest, true},
		{"no declaration, schema first", ns + `<Request><AcceptableResponseSchema>x</AcceptableResponseSchema><EMailAddress>a@b.c</EMailAddress></Request></Autodiscover>`, true},
		{"no schema", ns + `<Request><EMailAddress>a@b.c</EMailAddress></Request></Autodiscover>`, true},
		{"entity in address", ns + `<Request><EMailAddress>a&amp;b@b.c</EMailAddress></Request></Autodiscover>`, false},
		{"prefix", `<a:Autodiscover xmlns:a="urn:x"><a:Request/></a:Autodiscover>`, false},
		{"comment", ns + `<!-- x --><Request><EMailAddress>a@b.c</EMailAddress></Request></Autodiscover>`, false},
		{"two addresses", ns + `<Request><EMailAddress>a@b.c</EMailAddress><EMailAddress>a@b.c</EMailAddress></Request></Autodiscover>`, false},
		{"trailing junk", ns + `<Request><EMailAddress>a@b.c</EMailAddress></Request></Autodiscover>x`, false},
		{"doctype", `<!DOCTYPE x>` + ns + `<Request><EMailAddress>a@b.c</EMailAddress></Request></Autodiscover>`, false},
		{"latin-1 declaration", `<?xml version="1.0" encoding="ISO-8859-1"?>` + ns + `<Request><EMailAddress>a@b.c</EMailAddress></Request></Autodiscover>`, false},
		{"non-ASCII text", ns + "<Request><EMailAddress>\xc3\xbc@b.c</EMailAddress></Request></Autodiscover>", false},
	} {
		_, _, ok := fastParse([]byte(tc.body))
		if ok != tc.fast {
			t.Errorf("%s: fast path = %v, want %v", tc.name, ok, tc.fast)
		}
		checkAgree(t, []byte(tc.body))
	}
}

// checkAgree fails when the fast path answers and the full parser does
// not give the same document.
func checkAgree(t *testing.T, body []byte) {
	t.Helper()
	doc, space, ok := fastParse(body)
	if !ok {
		return
	}
	full, fullSpace, rerr := fullParse(body)
	if rerr != nil {
		t.Fatalf("fast path accepted what encoding/xml refuses (%v): %q", rerr, body)
	}
	if space != fullSpace || !reflect.DeepEqual(doc.Requests, full.Requests) {
		t.Fatalf("parsers disagree on %q:\nfast %+v %q\nfull %+v %q", body, doc, space, full, fullSpace)
	}
}

func FuzzFastParse(f *testing.F) {
	f.Add([]byte(typicalRequest))
	f.Add([]byte(`<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"><Request><EMailAddress> a@b.c </EMailAddress></Request></Autodiscover>`))
	f.Fuzz(func(t *testing.T, body []byte) { checkAgree(t, body) })
}

func BenchmarkParseRequest(b *testing.B) {
	body := []byte(typicalRequest)
	for b.Loop() {
		if _, err := parseRequest("text/xml", body); err != nil {
			b.Fatal(err)
		}
	}
}
