package report

import "sort"

// Code is a stable failure class (reference/probe.md §6). Codes are part of
// the JSON contract: never rename one, only add.
type Code string

// DNS.
const (
	DNSNXDomain    Code = "dns.nxdomain"
	DNSNoData      Code = "dns.nodata"
	DNSServFail    Code = "dns.servfail"
	DNSTimeout     Code = "dns.timeout"
	DNSNullMX      Code = "dns.null_mx"
	DNSSRVDisabled Code = "dns.srv_disabled"
	DNSCNAMETarget Code = "dns.cname_target"
	DNSNoAddress   Code = "dns.no_address"
	DNSBogus       Code = "dns.bogus"
)

// Network and policy.
const (
	NetRefused              Code = "net.refused"
	NetTimeout              Code = "net.timeout"
	NetUnreachable          Code = "net.unreachable"
	NetReset                Code = "net.reset"
	NetClosedBeforeGreeting Code = "net.closed_before_greeting"
	PolicyBlockedAddress    Code = "policy.blocked_address"
	PolicyBlockedPort       Code = "policy.blocked_port"
)

// TLS record level. Remote alerts other than protocol_version are reported
// as TLSAlertPrefix + the alert name with spaces turned into underscores
// (tls.alert_certificate_required); TLSAlertPrefix itself is never a code.
const (
	TLSPlaintextOnTLSPort Code = "tls.plaintext_on_tls_port"
	TLSOnPlainPort        Code = "tls.tls_on_plain_port"
	TLSProtocolVersion    Code = "tls.protocol_version"
	TLSHandshakeFailure   Code = "tls.handshake_failure"
	TLSLegacyOnly         Code = "tls.legacy_only"
	TLSAlertPrefix             = "tls.alert_"
)

// Certificates.
const (
	CertUntrusted               Code = "cert.untrusted"
	CertSelfSigned              Code = "cert.self_signed"
	CertIncompleteChain         Code = "cert.incomplete_chain"
	CertExpired                 Code = "cert.expired"
	CertNotYetValid             Code = "cert.not_yet_valid"
	CertNameMismatchHost        Code = "cert.name_mismatch_host"
	CertNameMismatchEmailDomain Code = "cert.name_mismatch_email_domain"
	CertExpiringSoon            Code = "cert.expiring_soon"
)

// Protocol.
const (
	GreetingRejected          Code = "greeting.rejected"
	GreetingSlow              Code = "greeting.slow"
	GreetingPreauth           Code = "greeting.preauth"
	CapsStartTLSMissing       Code = "caps.starttls_missing"
	StartTLSRejected          Code = "starttls.rejected"
	StartTLSInjection         Code = "starttls.injection_vulnerable"
	StartTLSBufferedPlaintext Code = "starttls.buffered_plaintext"
	CapsAuthMissing           Code = "caps.auth_missing"
	CapsAuthBeforeTLS         Code = "caps.auth_before_tls"
	CapsLoginDisabled         Code = "caps.login_disabled"
	ProtoUnexpectedReply      Code = "proto.unexpected_reply"
)

// Authentication.
const (
	AuthFailed                Code = "auth.failed"
	AuthTemporary             Code = "auth.temporary"
	AuthMechanismTooWeak      Code = "auth.mechanism_too_weak"
	AuthEncryptionRequired    Code = "auth.encryption_required"
	AuthAuthorizationFailed   Code = "auth.authorization_failed"
	AuthExpired               Code = "auth.expired"
	AuthContactAdmin          Code = "auth.contact_admin"
	AuthInUse                 Code = "auth.in_use"
	AuthLoginDelay            Code = "auth.login_delay"
	AuthAppPasswordOrOAuth    Code = "auth.app_password_or_oauth_required"
	AuthSkipped               Code = "auth.skipped"
	SessionMailboxUnavailable Code = "session.mailbox_unavailable"
	SessionSenderRejected     Code = "session.sender_rejected"
)

// Discovery (mailconf additions to the reference taxonomy: how a discovery
// source failed, so "why did Thunderbird not find my config" has an answer).
const (
	DiscoveryHTTPStatus     Code = "discovery.http_status"
	DiscoveryContentType    Code = "discovery.content_type"
	DiscoveryInvalid        Code = "discovery.invalid_document"
	DiscoveryTooLarge       Code = "discovery.too_large"
	DiscoveryTooManyRedir   Code = "discovery.too_many_redirects"
	DiscoveryDomainMismatch Code = "discovery.domain_mismatch"
	DiscoveryNone           Code = "discovery.none"
)

type codeInfo struct {
	hint string
	refs []string
}

// catalog is the immutable table of every code the probe can emit.
var catalog = map[Code]codeInfo{
	DNSNXDomain:    {"The domain does not exist in DNS. Check the spelling of the address or register/delegate the domain.", []string{"RFC 1035"}},
	DNSNoData:      {"The name exists but has no record of this type; publish one if clients need it.", []string{"RFC 2308"}},
	DNSServFail:    {"The resolver could not answer (SERVFAIL): the domain's name servers are broken or unreachable.", []string{"RFC 1035"}},
	DNSTimeout:     {"No DNS answer in time; the resolver or the domain's name servers do not respond.", nil},
	DNSNullMX:      {"The domain publishes a null MX (MX 0 .): it declares that it accepts no mail.", []string{"RFC 7505"}},
	DNSSRVDisabled: {"The SRV record has target \".\": the service is declared not available at this domain.", []string{"RFC 2782", "RFC 6186"}},
	DNSCNAMETarget: {"An MX or SRV target is a CNAME; point the record at the canonical host name instead.", []string{"RFC 2181 §10.3"}},
	DNSNoAddress:   {"The host name has no A or AAAA record; clients cannot connect. Add the address records.", nil},
	DNSBogus:       {"DNSSEC validation fails for this name (answers only with checking disabled); fix the DS/DNSKEY/RRSIG records.", []string{"RFC 4035"}},

	NetRefused:              {"Connection refused: nothing listens on this port, or a firewall rejects it. Start the service or open the port.", nil},
	NetTimeout:              {"No answer in time: a firewall drops packets or the server is overloaded.", nil},
	NetUnreachable:          {"No route to this address from the probe; check routing (often IPv6) and the published address records.", nil},
	NetReset:                {"The server reset the connection; check its logs (crash, TLS or connection limits, fail2ban).", nil},
	NetClosedBeforeGreeting: {"The server closed the connection before greeting: often a connection limit, a ban (fail2ban) or a crashed service.", nil},
	PolicyBlockedAddress:    {"The probe refused to connect: the address is private, loopback or link-local and not one of this service's own servers.", []string{"OWASP SSRF Prevention Cheat Sheet"}},
	PolicyBlockedPort:       {"The probe refused to connect: only mail and web ports may be probed.", nil},

	TLSPlaintextOnTLSPort: {"The server speaks plaintext on a port configured for implicit TLS: use STARTTLS on this port, or enable implicit TLS on it.", []string{"RFC 8314"}},
	TLSOnPlainPort:        {"The server speaks TLS on a port configured for STARTTLS: use implicit TLS (SSL) for this port.", []string{"RFC 8314"}},
	TLSProtocolVersion:    {"No TLS version in common: enable TLS 1.2 and TLS 1.3 on the server.", []string{"RFC 8996", "RFC 8997"}},
	TLSHandshakeFailure:   {"The TLS handshake failed; check the server's TLS configuration (certificate, key, ciphers).", nil},
	TLSLegacyOnly:         {"The server only offers TLS 1.0/1.1, which current clients refuse. Enable TLS 1.2 and 1.3.", []string{"RFC 8996"}},

	CertUntrusted:               {"The certificate chain does not lead to a trusted root; use a certificate from a public CA (e.g. Let's Encrypt).", []string{"RFC 5280"}},
	CertSelfSigned:              {"The certificate is self-signed; clients show a warning or refuse. Use a certificate from a public CA.", nil},
	CertIncompleteChain:         {"The server does not send the intermediate certificate; serve the full chain (fullchain.pem).", []string{"RFC 8446 §4.4.2"}},
	CertExpired:                 {"The certificate has expired; renew it and reload the service.", nil},
	CertNotYetValid:             {"The certificate is not valid yet; check the server clock or the certificate's start date.", nil},
	CertNameMismatchHost:        {"The certificate does not cover the host name clients connect to; add the name to the certificate.", []string{"RFC 7817"}},
	CertNameMismatchEmailDomain: {"The host came from SRV records, but the certificate does not cover the email domain, so strict RFC 7817 clients refuse it.", []string{"RFC 7817", "RFC 6186"}},
	CertExpiringSoon:            {"The certificate expires soon; renew it (automate renewal).", nil},

	GreetingRejected:          {"The server rejected the connection in its greeting; check its access rules for this network.", []string{"RFC 5321", "RFC 9051"}},
	GreetingSlow:              {"The greeting took long to arrive: greet-pause/tarpitting or an overloaded server; clients may time out.", nil},
	GreetingPreauth:           {"The IMAP server pre-authenticates the connection (PREAUTH): STARTTLS is then impossible and the session can be stripped.", []string{"RFC 9051", "USENIX Security 2021 (No STARTTLS)"}},
	CapsStartTLSMissing:       {"STARTTLS is not offered on this port; enable it, or publish only the implicit-TLS port.", []string{"RFC 3207", "RFC 2595", "RFC 8314"}},
	StartTLSRejected:          {"The server refused the STARTTLS command; check its TLS configuration.", []string{"RFC 3207", "RFC 2595"}},
	StartTLSInjection:         {"The server executes commands sent in plaintext before the TLS handshake (STARTTLS command injection); update the server software.", []string{"USENIX Security 2021 (No STARTTLS)"}},
	StartTLSBufferedPlaintext: {"The server sent extra bytes after its STARTTLS answer; they could be injected responses. Update the server or proxy.", []string{"RFC 3207 §4.2"}},
	CapsAuthMissing:           {"No usable login mechanism is offered after TLS; enable PLAIN/LOGIN inside TLS.", []string{"RFC 4954", "RFC 5034"}},
	CapsAuthBeforeTLS:         {"Plaintext login mechanisms are offered before TLS; offer them only after STARTTLS.", []string{"RFC 4954 §4", "RFC 2595"}},
	CapsLoginDisabled:         {"The server advertises LOGINDISABLED even inside TLS: password logins are refused.", []string{"RFC 9051"}},
	ProtoUnexpectedReply:      {"The server's answer does not follow the protocol; is this port running the expected service?", nil},

	AuthFailed:                {"The server rejected the username or password. Check the password and the username form (full address or local part).", []string{"RFC 4954", "RFC 5530", "RFC 3206"}},
	AuthTemporary:             {"Temporary authentication failure on the server side (its auth backend); try again later and check the server logs.", []string{"RFC 4954", "RFC 5530", "RFC 3206"}},
	AuthMechanismTooWeak:      {"The server considers this authentication mechanism too weak for the account.", []string{"RFC 4954"}},
	AuthEncryptionRequired:    {"The server requires encryption for this mechanism.", []string{"RFC 4954", "RFC 5530"}},
	AuthAuthorizationFailed:   {"Authentication succeeded but the account may not use this service (authorization failed).", []string{"RFC 5530"}},
	AuthExpired:               {"The account's password has expired; set a new one.", []string{"RFC 5530"}},
	AuthContactAdmin:          {"The server asks the user to contact the administrator (account locked or disabled).", []string{"RFC 5530"}},
	AuthInUse:                 {"The mailbox is in use by another session (locked).", []string{"RFC 5530", "RFC 3206"}},
	AuthLoginDelay:            {"The server enforces a delay between logins; wait and try again.", []string{"RFC 2449"}},
	AuthAppPasswordOrOAuth:    {"The provider refuses the normal password here: create an app password or use OAuth2.", nil},
	AuthSkipped:               {"No login was attempted; see the reason.", nil},
	SessionMailboxUnavailable: {"Login works but the INBOX cannot be opened; check the mailbox storage and permissions.", []string{"RFC 9051"}},
	SessionSenderRejected:     {"Login works but the server refuses this address as sender; allow the user to send as this address.", []string{"RFC 6409"}},

	DiscoveryHTTPStatus:     {"The discovery URL did not answer 200; clients then try the next source.", nil},
	DiscoveryContentType:    {"Serve the document with Content-Type text/xml or application/xml; clients ignore anything else.", nil},
	DiscoveryInvalid:        {"The document is not a valid configuration; clients silently ignore it.", nil},
	DiscoveryTooLarge:       {"The document is larger than a configuration can be (256 KiB); is the URL pointing at the right thing?", nil},
	DiscoveryTooManyRedir:   {"Too many HTTP redirects; clients give up.", nil},
	DiscoveryDomainMismatch: {"The configuration does not list the email domain in <domain>; check that the right document is served.", nil},
	DiscoveryNone:           {"No discovery mechanism found any settings: publish autoconfig (autoconfig.<domain>), Autodiscover and SRV records.", nil},
}

// Codes returns every code the probe can emit (alert codes aside), sorted.
func Codes() []Code {
	out := make([]Code, 0, len(catalog))
	for c := range catalog {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Hint is the plain-language advice for a code.
func Hint(c Code) string {
	if i, ok := catalog[c]; ok {
		return i.hint
	}
	if len(c) > len(TLSAlertPrefix) && string(c[:len(TLSAlertPrefix)]) == TLSAlertPrefix {
		return "The server ended the TLS handshake with an alert; check its TLS configuration and logs."
	}
	return ""
}

// Refs are the standards behind a code.
func Refs(c Code) []string { return catalog[c].refs }
