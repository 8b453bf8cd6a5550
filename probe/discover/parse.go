package discover

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// MaxDocument caps discovery documents (reference/probe.md §8.1).
const MaxDocument = 256 << 10

// Server is one endpoint named by a discovery document. Security is "tls",
// "starttls" or "plain" (autoconfig's SSL, STARTTLS, plain).
type Server struct {
	Protocol string // imap, pop3, smtp (or exchange, ignored)
	Host     string
	Port     int
	Security string
	Username string // raw, placeholders unexpanded
	Auth     []string
}

// Autoconfig is a parsed Thunderbird config-v1.1.xml.
type Autoconfig struct {
	ID          string
	Domains     []string
	DisplayName string
	Incoming    []Server
	Outgoing    []Server
}

var errTooLarge = errors.New("document larger than 256 KiB")

type xmlServer struct {
	Type       string   `xml:"type,attr"`
	Hostname   string   `xml:"hostname"`
	Port       string   `xml:"port"`
	SocketType string   `xml:"socketType"`
	Username   string   `xml:"username"`
	Auth       []string `xml:"authentication"`
}

type xmlConfig struct {
	XMLName   xml.Name `xml:"clientConfig"`
	Providers []struct {
		ID          string      `xml:"id,attr"`
		Domains     []string    `xml:"domain"`
		DisplayName string      `xml:"displayName"`
		Incoming    []xmlServer `xml:"incomingServer"`
		Outgoing    []xmlServer `xml:"outgoingServer"`
	} `xml:"emailProvider"`
}

func decode(data []byte, v any) error {
	if len(data) > MaxDocument {
		return errTooLarge
	}
	d := xml.NewDecoder(bytes.NewReader(data))
	// Entity stays nil: no custom entities are expanded, and encoding/xml
	// never fetches external ones.
	d.CharsetReader = func(label string, in io.Reader) (io.Reader, error) {
		if strings.EqualFold(label, "utf-8") || strings.EqualFold(label, "us-ascii") {
			return in, nil
		}
		return nil, fmt.Errorf("unsupported charset %q", label)
	}
	return d.Decode(v)
}

// ParseAutoconfig parses a Thunderbird autoconfig document the way
// Thunderbird reads it: exact-case enums, no whitespace trimming in values,
// unknown server types skipped.
func ParseAutoconfig(data []byte) (*Autoconfig, error) {
	var x xmlConfig
	if err := decode(data, &x); err != nil {
		return nil, fmt.Errorf("autoconfig: %w", err)
	}
	if len(x.Providers) == 0 {
		return nil, errors.New("autoconfig: no emailProvider")
	}
	p := x.Providers[0]
	ac := &Autoconfig{ID: p.ID, Domains: p.Domains, DisplayName: p.DisplayName}
	for _, s := range p.Incoming {
		if srv, ok := convert(s, "imap", "pop3"); ok {
			ac.Incoming = append(ac.Incoming, srv)
		}
	}
	for _, s := range p.Outgoing {
		if srv, ok := convert(s, "smtp"); ok {
			ac.Outgoing = append(ac.Outgoing, srv)
		}
	}
	if len(ac.Incoming) == 0 && len(ac.Outgoing) == 0 {
		return nil, errors.New("autoconfig: no usable incomingServer or outgoingServer")
	}
	return ac, nil
}

func convert(s xmlServer, types ...string) (Server, bool) {
	ok := false
	for _, t := range types {
		ok = ok || s.Type == t
	}
	port, err := strconv.Atoi(s.Port)
	if !ok || err != nil || port < 1 || port > 65535 || s.Hostname == "" || strings.ContainsAny(s.Hostname, " \t\r\n/:") {
		return Server{}, false
	}
	sec := map[string]string{"SSL": "tls", "STARTTLS": "starttls", "plain": "plain"}[s.SocketType]
	if sec == "" {
		return Server{}, false
	}
	return Server{Protocol: s.Type, Host: strings.ToLower(s.Hostname), Port: port, Security: sec, Username: s.Username, Auth: s.Auth}, true
}

// Autodiscover is a parsed POX response.
type Autodiscover struct {
	Action       string // settings, redirectAddr, redirectUrl
	RedirectAddr string
	RedirectURL  string
	ErrorCode    string
	ErrorMessage string
	Servers      []Server
}

type poxProtocol struct {
	Type       string `xml:"Type"`
	Server     string `xml:"Server"`
	Port       string `xml:"Port"`
	LoginName  string `xml:"LoginName"`
	SSL        string `xml:"SSL"`
	Encryption string `xml:"Encryption"`
	SPA        string `xml:"SPA"`
}

type poxError struct {
	ErrorCode string `xml:"ErrorCode"`
	Message   string `xml:"Message"`
}

type poxDoc struct {
	XMLName  xml.Name `xml:"Autodiscover"`
	Response struct {
		Error   *poxError `xml:"Error"`
		Account struct {
			Action       string        `xml:"Action"`
			RedirectAddr string        `xml:"RedirectAddr"`
			RedirectURL  string        `xml:"RedirectUrl"`
			Protocols    []poxProtocol `xml:"Protocol"`
			Error        *poxError     `xml:"Error"`
		} `xml:"Account"`
	} `xml:"Response"`
}

// ParseAutodiscover parses an Outlook POX response by local names (the
// namespaces vary in the wild) and maps TLS the way Thunderbird does:
// Encryption wins; with only SSL=on the port decides.
func ParseAutodiscover(data []byte) (*Autodiscover, error) {
	var x poxDoc
	if err := decode(data, &x); err != nil {
		return nil, fmt.Errorf("autodiscover: %w", err)
	}
	a := &Autodiscover{Action: x.Response.Account.Action, RedirectAddr: x.Response.Account.RedirectAddr, RedirectURL: x.Response.Account.RedirectURL}
	for _, e := range []*poxError{x.Response.Error, x.Response.Account.Error} {
		if e != nil {
			a.ErrorCode, a.ErrorMessage = strings.TrimSpace(e.ErrorCode), strings.TrimSpace(e.Message)
		}
	}
	for _, p := range x.Response.Account.Protocols {
		proto := map[string]string{"IMAP": "imap", "POP3": "pop3", "SMTP": "smtp"}[strings.ToUpper(strings.TrimSpace(p.Type))]
		port, err := strconv.Atoi(strings.TrimSpace(p.Port))
		host := strings.ToLower(strings.TrimSpace(p.Server))
		if proto == "" || err != nil || port < 1 || port > 65535 || host == "" || strings.ContainsAny(host, " /:") {
			continue
		}
		a.Servers = append(a.Servers, Server{Protocol: proto, Host: host, Port: port, Security: poxSecurity(p, port), Username: strings.TrimSpace(p.LoginName)})
	}
	if a.Action == "" && a.ErrorCode == "" && len(a.Servers) == 0 {
		return nil, errors.New("autodiscover: no Account, Protocol or Error")
	}
	return a, nil
}

func poxSecurity(p poxProtocol, port int) string {
	switch strings.ToUpper(strings.TrimSpace(p.Encryption)) {
	case "SSL":
		return "tls"
	case "TLS":
		return "starttls"
	case "NONE":
		return "plain"
	}
	if strings.EqualFold(strings.TrimSpace(p.SSL), "off") {
		return "plain"
	}
	switch port {
	case 143, 110, 25, 587:
		return "starttls"
	}
	return "tls"
}

// poxRequest is the Outlook request document.
type poxRequest struct {
	XMLName xml.Name `xml:"http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006 Autodiscover"`
	Request struct {
		EMailAddress             string `xml:"EMailAddress"`
		AcceptableResponseSchema string `xml:"AcceptableResponseSchema"`
	} `xml:"Request"`
}

func autodiscoverRequest(address string) []byte {
	var r poxRequest
	r.Request.EMailAddress = address
	r.Request.AcceptableResponseSchema = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
	b, _ := xml.Marshal(r) // a struct of strings always marshals
	return append([]byte(xml.Header), b...)
}
