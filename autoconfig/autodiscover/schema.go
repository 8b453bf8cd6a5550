package autodiscover

import "encoding/xml"

// Namespaces (formats.md §2.3, §2.4, §2.7). Microsoft pages sometimes print
// them with https://; the real URIs use http://.
const (
	nsRequestOutlook     = "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"
	nsRequestMobileSync  = "http://schemas.microsoft.com/exchange/autodiscover/mobilesync/requestschema/2006"
	nsResponse           = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
	nsResponseOutlook    = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
	nsResponseMobileSync = "http://schemas.microsoft.com/exchange/autodiscover/mobilesync/responseschema/2006"
)

// Request schema, matched by local name only: clients differ in prefixes
// and a few send the wrong namespace, and strict matching broke real
// clients for peers (clients.md §6).
type requestDoc struct {
	XMLName  xml.Name
	Requests []requestElem `xml:"Request"`
}

type requestElem struct {
	EMailAddress             []string `xml:"EMailAddress"`
	LegacyDN                 []string `xml:"LegacyDN"`
	AcceptableResponseSchema []string `xml:"AcceptableResponseSchema"`
}

// responseDoc is the outer element of every POX answer.
type responseDoc struct {
	XMLName  xml.Name `xml:"http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006 Autodiscover"`
	Response response `xml:"Response"`
}

// response is either the 2006a settings/account-error body or a
// provider-level error in the outer namespace. The namespace is always set
// explicitly: encoding/xml writes xmlns="" for an XMLName without one.
type response struct {
	XMLName xml.Name
	Error   *errorElem `xml:"Error,omitempty"`
	Account *account   `xml:"Account,omitempty"`
}

type account struct {
	AccountType string     `xml:"AccountType,omitempty"`
	Action      string     `xml:"Action,omitempty"`
	Protocols   []protocol `xml:"Protocol"`
	Error       *errorElem `xml:"Error,omitempty"`
}

// protocol is one service. Field order is the order Microsoft's examples
// use; on/off values are lowercase words.
type protocol struct {
	Type           string `xml:"Type"`
	Server         string `xml:"Server"`
	Port           int    `xml:"Port,omitempty"`
	DomainRequired string `xml:"DomainRequired"`
	LoginName      *slot  `xml:"LoginName"`
	SPA            string `xml:"SPA"`
	SSL            string `xml:"SSL"`
	Encryption     string `xml:"Encryption,omitempty"`
	AuthRequired   string `xml:"AuthRequired"`
	UsePOPAuth     string `xml:"UsePOPAuth,omitempty"`
	SMTPLast       string `xml:"SMTPLast,omitempty"`
}

// slot holds the login-name marker while a document is prepared.
type slot struct {
	Raw string `xml:",innerxml"`
}

type errorElem struct {
	Time      string   `xml:"Time,attr"`
	ID        uint32   `xml:"Id,attr"`
	ErrorCode int      `xml:"ErrorCode"`
	Message   string   `xml:"Message"`
	DebugData struct{} `xml:"DebugData"`
}

// v2 JSON shapes (formats.md §2.8).
type jsonSettings struct {
	Protocol string `json:"Protocol"`
	URL      string `json:"Url"`
}

type jsonError struct {
	ErrorCode    string `json:"ErrorCode"`
	ErrorMessage string `json:"ErrorMessage"`
}
