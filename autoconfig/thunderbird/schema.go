package thunderbird

import "encoding/xml"

// Authentication values (formats.md §1.3.4). Only password methods inside
// TLS are published, and only values both Thunderbird desktop and
// Thunderbird for Android accept.
const (
	authPasswordCleartext = "password-cleartext"
	authHTTPBasic         = "http-basic"
)

// clientConfig is the document root. No namespace: Thunderbird matches
// element names as written and would not find prefixed ones.
type clientConfig struct {
	XMLName  xml.Name      `xml:"clientConfig"`
	Version  string        `xml:"version,attr"`
	Provider emailProvider `xml:"emailProvider"`
	// DAV sections follow </emailProvider> (formats.md §1.3.9, draft
	// spelling with <url>).
	AddressBooks []davService `xml:"addressBook"`
	Calendars    []davService `xml:"calendar"`
}

type emailProvider struct {
	// ID must look like a host name or Thunderbird aborts the parse.
	ID               string   `xml:"id,attr"`
	Domains          []string `xml:"domain"`
	DisplayName      string   `xml:"displayName"`
	DisplayShortName string   `xml:"displayShortName"`
	Incoming         []server `xml:"incomingServer"`
	Outgoing         []server `xml:"outgoingServer"`
}

type server struct {
	Type           string    `xml:"type,attr"`
	Hostname       string    `xml:"hostname"`
	Port           int       `xml:"port"`
	SocketType     string    `xml:"socketType"`
	Username       *username `xml:"username"`
	Authentication []string  `xml:"authentication"`
}

type davService struct {
	Type           string    `xml:"type,attr"`
	URL            string    `xml:"url"`
	Authentication string    `xml:"authentication"`
	Username       *username `xml:"username"`
}

// username holds the slot marker while the document is prepared; the real
// value is spliced in, escaped, per request.
type username struct {
	Raw string `xml:",innerxml"`
}
