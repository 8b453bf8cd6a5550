package autodiscover

import (
	"bytes"
)

// fastParse reads the request Outlook and Thunderbird actually send, in
// the one shape they send it, without a general XML parser:
//
//	<?xml version="1.0" encoding="utf-8"?>
//	<Autodiscover xmlns="…/outlook/requestschema/2006">
//	  <Request>
//	    <EMailAddress>user@example.com</EMailAddress>
//	    <AcceptableResponseSchema>…/responseschema/2006a</AcceptableResponseSchema>
//	  </Request>
//	</Autodiscover>
//
// Anything else - prefixes, attributes, comments, entities, other elements,
// other declarations, bytes outside printable ASCII in text - returns
// ok=false and the request goes to fullParse. The language it accepts is a
// small subset of well-formed XML whose meaning is plain, so both parsers
// agree wherever this one answers (FuzzFastParse holds them to it).
// encoding/xml is most of the cost of an Autodiscover answer otherwise.
func fastParse(body []byte) (doc requestDoc, rootSpace string, ok bool) {
	p := fastParser{b: body}
	p.space()
	for _, decl := range xmlDecls {
		if p.lit(decl) {
			break
		}
	}
	p.space()
	if !p.lit(`<Autodiscover xmlns="` + nsRequestOutlook + `">`) {
		return requestDoc{}, "", false
	}
	p.space()
	if !p.lit("<Request>") {
		return requestDoc{}, "", false
	}
	var r requestElem
	for {
		p.space()
		switch {
		case len(r.EMailAddress) == 0 && p.lit("<EMailAddress>"):
			t, ok := p.text("</EMailAddress>")
			if !ok {
				return requestDoc{}, "", false
			}
			r.EMailAddress = []string{t}
			continue
		case len(r.AcceptableResponseSchema) == 0 && p.lit("<AcceptableResponseSchema>"):
			t, ok := p.text("</AcceptableResponseSchema>")
			if !ok {
				return requestDoc{}, "", false
			}
			r.AcceptableResponseSchema = []string{t}
			continue
		}
		break
	}
	if !p.lit("</Request>") {
		return requestDoc{}, "", false
	}
	p.space()
	if !p.lit("</Autodiscover>") {
		return requestDoc{}, "", false
	}
	p.space()
	if len(p.b) != 0 {
		return requestDoc{}, "", false
	}
	return requestDoc{Requests: []requestElem{r}}, nsRequestOutlook, true
}

// xmlDecls are the declarations the fast path knows; any other goes to the
// full parser (which also judges the encoding label).
var xmlDecls = []string{
	`<?xml version="1.0" encoding="utf-8"?>`,
	`<?xml version="1.0" encoding="UTF-8"?>`,
	`<?xml version="1.0"?>`,
	`<?xml version='1.0' encoding='utf-8'?>`,
	`<?xml version='1.0' encoding='UTF-8'?>`,
}

type fastParser struct{ b []byte }

func (p *fastParser) space() {
	i := 0
	for i < len(p.b) && (p.b[i] == ' ' || p.b[i] == '\t' || p.b[i] == '\r' || p.b[i] == '\n') {
		i++
	}
	p.b = p.b[i:]
}

func (p *fastParser) lit(s string) bool {
	if !bytes.HasPrefix(p.b, []byte(s)) {
		return false
	}
	p.b = p.b[len(s):]
	return true
}

// text reads character data up to the end tag: printable ASCII other than
// markup and entity characters only, and XML's line ending rule (a CR is
// read as LF) is left to the full parser by refusing CR.
func (p *fastParser) text(end string) (string, bool) {
	i := bytes.IndexByte(p.b, '<')
	if i < 0 {
		return "", false
	}
	t := p.b[:i]
	for _, c := range t {
		if (c < 0x20 && c != ' ' && c != '\t' && c != '\n') || c > 0x7e || c == '&' || c == '>' {
			return "", false
		}
	}
	p.b = p.b[i:]
	if !p.lit(end) {
		return "", false
	}
	return string(t), true
}
