// Package apple serves Apple configuration profiles (.mobileconfig) that set
// up a mail account, and optionally CalDAV and CardDAV accounts, on iOS,
// iPadOS and macOS (reference/formats.md §3, clients.md §2.5).
//
// The profile is per address (it carries the address and the login name),
// so identifiers and UUIDs are derived from the address: installing a newer
// download replaces the old profile instead of adding a second account.
// It never contains a password; the device prompts for it.
package apple

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"howett.net/plist"

	"mailconf/autoconfig"
)

// Apple payload types and values (formats.md §3.1-3.3).
const (
	typeConfiguration = "Configuration"
	typeMail          = "com.apple.mail.managed"
	typeCalDAV        = "com.apple.caldav.account"
	typeCardDAV       = "com.apple.carddav.account"

	accountIMAP  = "EmailTypeIMAP"
	accountPOP   = "EmailTypePOP"
	authPassword = "EmailAuthPassword"
)

// uuidNamespace is the UUIDv5 namespace of every UUID mailconf puts in a
// profile. Changing it would make every installed profile look foreign and
// produce duplicate accounts on reinstall, so it is fixed forever.
var uuidNamespace = uuid.MustParse("6d61696c-636f-5e66-8a70-706c65000001")

// ErrIncomplete means a domain publishes no incoming or no outgoing mail
// server, so no usable mail payload can be built.
var ErrIncomplete = errors.New("apple: domain has no incoming or no outgoing mail server")

// Common holds the keys every payload has (formats.md §3.1). It is
// exported only because the plist encoder flattens exported embedded
// structs and skips unexported ones.
type Common struct {
	PayloadType        string `plist:"PayloadType"`
	PayloadVersion     int    `plist:"PayloadVersion"`
	PayloadIdentifier  string `plist:"PayloadIdentifier"`
	PayloadUUID        string `plist:"PayloadUUID"`
	PayloadDisplayName string `plist:"PayloadDisplayName,omitempty"`
	PayloadDescription string `plist:"PayloadDescription,omitempty"`
}

// profile is the top-level dictionary.
type profile struct {
	Common
	PayloadOrganization      string `plist:"PayloadOrganization,omitempty"`
	PayloadRemovalDisallowed bool   `plist:"PayloadRemovalDisallowed"`
	PayloadContent           []any  `plist:"PayloadContent"`
}

// mailPayload is com.apple.mail.managed (formats.md §3.2). There is
// deliberately no password field: an empty password key makes iOS use an
// empty password instead of prompting (clients.md §2.5).
type mailPayload struct {
	Common
	EmailAccountType                       string `plist:"EmailAccountType"`
	EmailAccountDescription                string `plist:"EmailAccountDescription,omitempty"`
	EmailAddress                           string `plist:"EmailAddress"`
	IncomingMailServerHostName             string `plist:"IncomingMailServerHostName"`
	IncomingMailServerPortNumber           int    `plist:"IncomingMailServerPortNumber"`
	IncomingMailServerUseSSL               bool   `plist:"IncomingMailServerUseSSL"`
	IncomingMailServerAuthentication       string `plist:"IncomingMailServerAuthentication"`
	IncomingMailServerUsername             string `plist:"IncomingMailServerUsername"`
	OutgoingMailServerHostName             string `plist:"OutgoingMailServerHostName"`
	OutgoingMailServerPortNumber           int    `plist:"OutgoingMailServerPortNumber"`
	OutgoingMailServerUseSSL               bool   `plist:"OutgoingMailServerUseSSL"`
	OutgoingMailServerAuthentication       string `plist:"OutgoingMailServerAuthentication"`
	OutgoingMailServerUsername             string `plist:"OutgoingMailServerUsername"`
	OutgoingPasswordSameAsIncomingPassword bool   `plist:"OutgoingPasswordSameAsIncomingPassword"`
}

// calDAVPayload is com.apple.caldav.account (formats.md §3.3).
type calDAVPayload struct {
	Common
	CalDAVAccountDescription string `plist:"CalDAVAccountDescription,omitempty"`
	CalDAVHostName           string `plist:"CalDAVHostName"`
	CalDAVPort               int    `plist:"CalDAVPort"`
	CalDAVUseSSL             bool   `plist:"CalDAVUseSSL"`
	CalDAVPrincipalURL       string `plist:"CalDAVPrincipalURL,omitempty"`
	CalDAVUsername           string `plist:"CalDAVUsername"`
}

// cardDAVPayload is com.apple.carddav.account (formats.md §3.3).
type cardDAVPayload struct {
	Common
	CardDAVAccountDescription string `plist:"CardDAVAccountDescription,omitempty"`
	CardDAVHostName           string `plist:"CardDAVHostName"`
	CardDAVPort               int    `plist:"CardDAVPort"`
	CardDAVUseSSL             bool   `plist:"CardDAVUseSSL"`
	CardDAVPrincipalURL       string `plist:"CardDAVPrincipalURL,omitempty"`
	CardDAVUsername           string `plist:"CardDAVUsername"`
}

// davServer is a CalDAV or CardDAV URL split the way Apple wants it.
type davServer struct {
	host      string
	port      int
	principal string // the configured URL when it has a path; "" lets the device discover
}

// domainProfile is everything of a profile that depends only on the
// domain, prepared once; render fills in the address.
type domainProfile struct {
	settings *autoconfig.Settings
	idPrefix string // reversed domain, e.g. "com.example.mailconf"
	mail     mailPayload
	caldav   *davServer
	carddav  *davServer
}

// prepare maps a domain's neutral settings to Apple's terms.
func prepare(st *autoconfig.Settings) (*domainProfile, error) {
	in, ok := st.Preferred(autoconfig.IMAP)
	accountType := accountIMAP
	if !ok {
		in, ok = st.Preferred(autoconfig.POP3)
		accountType = accountPOP
	}
	out, okOut := st.Preferred(autoconfig.SMTP)
	if !ok || !okOut {
		return nil, fmt.Errorf("%w: %s", ErrIncomplete, st.Domain)
	}
	p := &domainProfile{
		settings: st,
		idPrefix: reverseDomain(st.Domain) + ".mailconf",
		mail: mailPayload{
			Common:                           Common{PayloadType: typeMail, PayloadVersion: 1, PayloadDisplayName: "Mail account"},
			EmailAccountType:                 accountType,
			EmailAccountDescription:          st.DisplayName,
			IncomingMailServerHostName:       in.Host,
			IncomingMailServerPortNumber:     in.Port,
			IncomingMailServerUseSSL:         useSSL(in),
			IncomingMailServerAuthentication: authPassword,
			OutgoingMailServerHostName:       out.Host,
			OutgoingMailServerPortNumber:     out.Port,
			OutgoingMailServerUseSSL:         useSSL(out),
			OutgoingMailServerAuthentication: authPassword,
			// One password prompt for both servers: every endpoint mailconf
			// publishes logs in with the same name and password.
			OutgoingPasswordSameAsIncomingPassword: true,
		},
	}
	var err error
	if p.caldav, err = parseDAV(st.CalDAV); err != nil {
		return nil, fmt.Errorf("apple: %s caldav: %w", st.Domain, err)
	}
	if p.carddav, err = parseDAV(st.CardDAV); err != nil {
		return nil, fmt.Errorf("apple: %s carddav: %w", st.Domain, err)
	}
	return p, nil
}

// useSSL maps the transport security to Apple's only switch. Settings list
// implicit TLS first, so a STARTTLS endpoint is here only when the domain has
// no implicit-TLS one. Apple has no STARTTLS value; with UseSSL=true Apple
// Mail upgrades with STARTTLS on such ports (formats.md §6), whereas false
// would allow it to log in without TLS if the upgrade is not offered.
func useSSL(e autoconfig.Endpoint) bool {
	switch e.Security {
	case autoconfig.TLS, autoconfig.StartTLS:
		return true
	default:
		return false
	}
}

// parseDAV splits a configured https DAV URL; "" means no DAV account.
func parseDAV(raw string) (*davServer, error) {
	if raw == "" {
		return nil, nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "https" || u.Hostname() == "" {
		return nil, fmt.Errorf("%q is not an https URL", raw)
	}
	d := &davServer{host: u.Hostname(), port: 443}
	if p := u.Port(); p != "" {
		if d.port, err = strconv.Atoi(p); err != nil || d.port < 1 || d.port > 65535 {
			return nil, fmt.Errorf("%q: bad port", raw)
		}
	}
	if strings.Trim(u.Path, "/") != "" {
		d.principal = raw
	}
	return d, nil
}

// reverseDomain turns "mail.example.com" into "com.example.mail".
func reverseDomain(d string) string {
	labels := strings.Split(d, ".")
	for i, j := 0, len(labels)-1; i < j; i, j = i+1, j-1 {
		labels[i], labels[j] = labels[j], labels[i]
	}
	return strings.Join(labels, ".")
}

// payloadUUID derives a stable UUID for one payload kind of one mailbox.
// The local part is folded to lower case because mailboxes are matched
// case-insensitively: "Alice@" and "alice@" must replace each other.
func payloadUUID(addr autoconfig.Address, kind string) string {
	name := kind + "\x00" + strings.ToLower(addr.Local) + "@" + addr.Domain
	return strings.ToUpper(uuid.NewSHA1(uuidNamespace, []byte(name)).String())
}

// build assembles the typed profile for addr.
func (p *domainProfile) build(addr autoconfig.Address) profile {
	st := p.settings
	address := addr.String()
	login := st.LoginName(addr)
	profUUID := payloadUUID(addr, "profile")
	// The identifier uses the UUID rather than the local part, which may
	// hold characters ('&', '+', '/') that do not belong in reverse-DNS.
	id := p.idPrefix + "." + strings.ToLower(profUUID)

	mail := p.mail
	mail.PayloadIdentifier = id + ".mail"
	mail.PayloadUUID = payloadUUID(addr, "mail")
	mail.EmailAddress = address
	mail.IncomingMailServerUsername = login
	mail.OutgoingMailServerUsername = login

	content := make([]any, 0, 3)
	content = append(content, mail)
	if d := p.caldav; d != nil {
		content = append(content, calDAVPayload{
			Common: Common{PayloadType: typeCalDAV, PayloadVersion: 1, PayloadDisplayName: "Calendars",
				PayloadIdentifier: id + ".caldav", PayloadUUID: payloadUUID(addr, "caldav")},
			CalDAVAccountDescription: st.DisplayName,
			CalDAVHostName:           d.host,
			CalDAVPort:               d.port,
			CalDAVUseSSL:             true,
			CalDAVPrincipalURL:       d.principal,
			CalDAVUsername:           login,
		})
	}
	if d := p.carddav; d != nil {
		content = append(content, cardDAVPayload{
			Common: Common{PayloadType: typeCardDAV, PayloadVersion: 1, PayloadDisplayName: "Contacts",
				PayloadIdentifier: id + ".carddav", PayloadUUID: payloadUUID(addr, "carddav")},
			CardDAVAccountDescription: st.DisplayName,
			CardDAVHostName:           d.host,
			CardDAVPort:               d.port,
			CardDAVUseSSL:             true,
			CardDAVPrincipalURL:       d.principal,
			CardDAVUsername:           login,
		})
	}
	return profile{
		Common: Common{
			PayloadType:        typeConfiguration,
			PayloadVersion:     1,
			PayloadIdentifier:  id,
			PayloadUUID:        profUUID,
			PayloadDisplayName: st.DisplayName + " (" + address + ")",
			PayloadDescription: "Sets up the mail account " + address + ".",
		},
		PayloadOrganization:      st.DisplayName,
		PayloadRemovalDisallowed: false,
		PayloadContent:           content,
	}
}

// render marshals the profile of addr as an XML plist.
func (p *domainProfile) render(addr autoconfig.Address) ([]byte, error) {
	if addr.Domain != p.settings.Domain {
		return nil, fmt.Errorf("apple: address %s is not in domain %s", addr, p.settings.Domain)
	}
	var buf bytes.Buffer
	buf.Grow(4096)
	enc := plist.NewEncoderForFormat(&buf, plist.XMLFormat)
	enc.Indent("\t")
	if err := enc.Encode(p.build(addr)); err != nil {
		return nil, fmt.Errorf("apple: marshal profile: %w", err)
	}
	return buf.Bytes(), nil
}

// Render returns the unsigned profile (an XML plist) that sets up addr with
// the settings of its domain st.
func Render(st *autoconfig.Settings, addr autoconfig.Address) ([]byte, error) {
	p, err := prepare(st)
	if err != nil {
		return nil, err
	}
	return p.render(addr)
}
