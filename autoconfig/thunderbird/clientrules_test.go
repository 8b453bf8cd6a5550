package thunderbird

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// This file re-implements, in Go, the acceptance rules of the two client
// parsers that read config-v1.1.xml, as described in reference/clients.md
// §2.1/§2.2 and formats.md §1.3/§1.5: Thunderbird desktop's readFromXML and
// Thunderbird for Android's RealAutoconfigParser. Values are taken verbatim
// (neither parser trims whitespace) and enums are case-sensitive.

type rawDoc struct {
	XMLName   xml.Name      `xml:"clientConfig"`
	Providers []rawProvider `xml:"emailProvider"`
}

type rawProvider struct {
	ID       string      `xml:"id,attr"`
	Domains  []string    `xml:"domain"`
	Display  []string    `xml:"displayName"`
	Incoming []rawServer `xml:"incomingServer"`
	Outgoing []rawServer `xml:"outgoingServer"`
}

type rawServer struct {
	Type           string   `xml:"type,attr"`
	Hostname       []string `xml:"hostname"`
	Port           []string `xml:"port"`
	SocketType     []string `xml:"socketType"`
	Username       []string `xml:"username"`
	Authentication []string `xml:"authentication"`
	Password       []string `xml:"password"`
	UseGlobal      []string `xml:"useGlobalPreferredServer"`
}

// clientServer is what a client ends up configuring.
type clientServer struct {
	Type, Host string
	Port       int
	Socket     string
	Username   string
	Auth       string
}

type clientResult struct {
	DisplayName        string
	Incoming, Outgoing clientServer
}

var hostnameRE = regexp.MustCompile(`^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$`)

func validHostname(s string) bool { return len(s) <= 253 && hostnameRE.MatchString(s) }

// decodeStrict decodes the document and enforces the rules shared by both
// clients: well-formed, no namespace prefixes or xmlns, no <password>.
func decodeStrict(body []byte) (*rawDoc, error) {
	if bytes.HasPrefix(body, []byte("\xef\xbb\xbf")) {
		return nil, errors.New("document starts with a BOM")
	}
	d := xml.NewDecoder(bytes.NewReader(body))
	depth, roots := 0, 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("not well-formed: %w", err)
		}
		if _, ok := tok.(xml.EndElement); ok {
			depth--
		}
		if se, ok := tok.(xml.StartElement); ok {
			if depth == 0 {
				roots++
			}
			depth++
			if roots > 1 {
				return nil, errors.New("more than one root element")
			}
			if se.Name.Space != "" {
				return nil, fmt.Errorf("element %s:%s has a namespace prefix", se.Name.Space, se.Name.Local)
			}
			for _, a := range se.Attr {
				if a.Name.Space == "xmlns" || a.Name.Local == "xmlns" {
					return nil, fmt.Errorf("element %s declares a namespace", se.Name.Local)
				}
			}
		}
	}
	var doc rawDoc
	if err := xml.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("unmarshal: %w", err)
	}
	if len(doc.Providers) != 1 {
		return nil, fmt.Errorf("want one emailProvider, got %d", len(doc.Providers))
	}
	for _, s := range append(append([]rawServer{}, doc.Providers[0].Incoming...), doc.Providers[0].Outgoing...) {
		if len(s.Password) > 0 {
			return nil, errors.New("a server publishes <password>")
		}
		for _, v := range s.UseGlobal {
			if strings.EqualFold(v, "true") {
				return nil, errors.New("useGlobalPreferredServer is true")
			}
		}
	}
	return &doc, nil
}

func substitute(s, address string) string {
	local, domain, _ := strings.Cut(address, "@")
	r := strings.NewReplacer("%EMAILADDRESS%", address, "%EMAILLOCALPART%", local, "%EMAILDOMAIN%", domain)
	return r.Replace(s)
}

// parseDesktop applies Thunderbird desktop's readFromXML rules: the provider
// id and at least one domain must be host names; the first valid incoming
// server (pop3/imap/nntp/exchange) and the first valid smtp server win; a
// server is valid with a sane hostname, a numeric port, a known socketType
// and a supported authentication value.
func parseDesktop(body []byte, address string) (*clientResult, error) {
	doc, err := decodeStrict(body)
	if err != nil {
		return nil, err
	}
	p := doc.Providers[0]
	if !validHostname(p.ID) {
		return nil, fmt.Errorf("emailProvider id %q is not a host name", p.ID)
	}
	okDomain := false
	for _, d := range p.Domains {
		okDomain = okDomain || validHostname(d)
	}
	if !okDomain {
		return nil, errors.New("no valid <domain>")
	}
	res := &clientResult{DisplayName: p.ID}
	if len(p.Display) > 0 {
		res.DisplayName = p.Display[0]
	}
	known := map[string]bool{"SSL": true, "STARTTLS": true, "plain": true}
	// OAuth2 counts only for Thunderbird's built-in providers, which a
	// self-hosted domain is not.
	auths := map[string]bool{"password-cleartext": true, "password-encrypted": true, "NTLM": true, "GSSAPI": true, "plain": true, "secure": true, "none": true, "client-IP-address": true, "smtp-after-pop": true}
	pick := func(list []rawServer, types map[string]bool) (clientServer, bool) {
		for _, s := range list {
			if !types[s.Type] || len(s.Hostname) == 0 || !validHostname(s.Hostname[0]) || len(s.Port) == 0 || len(s.Username) == 0 {
				continue
			}
			port, err := strconv.Atoi(s.Port[0])
			if err != nil || port < 1 || port > 65535 {
				continue
			}
			cs := clientServer{Type: s.Type, Host: s.Hostname[0], Port: port, Username: substitute(s.Username[0], address)}
			for _, st := range s.SocketType {
				if known[st] {
					cs.Socket = st
					break
				}
			}
			for _, a := range s.Authentication {
				if auths[a] {
					cs.Auth = a
					break
				}
			}
			if cs.Socket == "" || cs.Auth == "" {
				continue
			}
			return cs, true
		}
		return clientServer{}, false
	}
	var ok bool
	if res.Incoming, ok = pick(p.Incoming, map[string]bool{"imap": true, "pop3": true, "nntp": true, "exchange": true}); !ok {
		return nil, errors.New("no usable incomingServer")
	}
	if res.Outgoing, ok = pick(p.Outgoing, map[string]bool{"smtp": true}); !ok {
		return nil, errors.New("no usable outgoingServer")
	}
	return res, nil
}

// parseAndroid applies Thunderbird for Android's stricter rules: id and a
// domain (after placeholder substitution) must be host names; every
// socketType must be exactly SSL or STARTTLS (anything else aborts the
// whole parse); each used server needs password-cleartext,
// password-encrypted or OAuth2; only the first imap and the first smtp
// server are used.
func parseAndroid(body []byte, address string) (*clientResult, error) {
	doc, err := decodeStrict(body)
	if err != nil {
		return nil, err
	}
	p := doc.Providers[0]
	if !validHostname(p.ID) {
		return nil, fmt.Errorf("emailProvider id %q is not a host name", p.ID)
	}
	okDomain := false
	for _, d := range p.Domains {
		okDomain = okDomain || validHostname(substitute(d, address))
	}
	if !okDomain {
		return nil, errors.New("no <domain> is a host name after substitution")
	}
	for _, s := range append(append([]rawServer{}, p.Incoming...), p.Outgoing...) {
		for _, st := range s.SocketType {
			if st != "SSL" && st != "STARTTLS" {
				return nil, fmt.Errorf("socketType %q aborts the parse", st)
			}
		}
	}
	usable := map[string]bool{"password-cleartext": true, "password-encrypted": true, "OAuth2": true}
	first := func(list []rawServer, typ string) (clientServer, error) {
		for _, s := range list {
			if s.Type != typ {
				continue
			}
			if len(s.Hostname) != 1 || !validHostname(s.Hostname[0]) {
				return clientServer{}, fmt.Errorf("%s: bad hostname", typ)
			}
			if len(s.Port) != 1 {
				return clientServer{}, fmt.Errorf("%s: want one port", typ)
			}
			port, err := strconv.Atoi(s.Port[0])
			if err != nil || port < 1 || port > 65535 {
				return clientServer{}, fmt.Errorf("%s: bad port %q", typ, s.Port[0])
			}
			if len(s.SocketType) != 1 {
				return clientServer{}, fmt.Errorf("%s: want one socketType", typ)
			}
			if len(s.Username) != 1 {
				return clientServer{}, fmt.Errorf("%s: want one username", typ)
			}
			cs := clientServer{Type: typ, Host: s.Hostname[0], Port: port, Socket: s.SocketType[0], Username: substitute(s.Username[0], address)}
			for _, a := range s.Authentication {
				if usable[a] {
					cs.Auth = a
					break
				}
			}
			if cs.Auth == "" {
				return clientServer{}, fmt.Errorf("%s: No usable 'authentication' element", typ)
			}
			return cs, nil
		}
		return clientServer{}, fmt.Errorf("no %s server", typ)
	}
	res := &clientResult{DisplayName: p.ID}
	if len(p.Display) > 0 {
		res.DisplayName = p.Display[0]
	}
	if res.Incoming, err = first(p.Incoming, "imap"); err != nil {
		return nil, err
	}
	if res.Outgoing, err = first(p.Outgoing, "smtp"); err != nil {
		return nil, err
	}
	return res, nil
}
