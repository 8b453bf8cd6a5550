// Package report holds the probe's report (schema "probe-report/1", see
// reference/probe.md §7), its statuses and stable failure codes, a recorder
// that collects steps from parallel checks, and the text and JSON renderers.
package report

import (
	"time"
)

// Schema is the value of Report.Schema.
const Schema = "probe-report/1"

// Status of one step.
type Status string

const (
	StatusPending Status = "pending"
	StatusRunning Status = "running"
	StatusPass    Status = "pass"
	StatusWarn    Status = "warn"
	StatusFail    Status = "fail"
	StatusError   Status = "error" // the probe itself could not do the step
	StatusSkipped Status = "skipped"
	StatusInfo    Status = "info"
)

// Overall is the verdict of a whole probe.
type Overall string

const (
	OverallOK           Overall = "ok"
	OverallWarnings     Overall = "ok_with_warnings"
	OverallDegraded     Overall = "degraded" // works, but some endpoint or address fails
	OverallBroken       Overall = "broken"   // no working path for a needed protocol
	OverallInconclusive Overall = "inconclusive"
)

// Trust of a discovery result.
type Trust string

const (
	Trusted       Trust = "trusted"        // https, valid certificate, no http hop
	UntrustedHTTP Trust = "untrusted-http" // fetched over (or redirected through) plain http
	UntrustedDNS  Trust = "untrusted-dns"  // from MX/SRV answers without the AD bit
	Local         Trust = "local"          // this mailconf's own configuration, not anything a client sees
)

// Report is the whole result of one probe run.
type Report struct {
	Schema      string        `json:"schema"`
	ID          string        `json:"id"`
	CreatedAt   time.Time     `json:"created_at"`
	DurationMS  int64         `json:"duration_ms"`
	Input       Input         `json:"input"`
	Policy      Policy        `json:"policy"`
	Vantage     Vantage       `json:"vantage"`
	Summary     Summary       `json:"summary"`
	DNS         []DNSQuery    `json:"dns"`
	Discovery   []Discovery   `json:"discovery"`
	Consistency []Consistency `json:"consistency"`
	Endpoints   []Endpoint    `json:"endpoints"`
	Steps       []Step        `json:"steps"`
	Findings    []Finding     `json:"findings"`
	Transcripts []Transcript  `json:"transcripts"`
}

// Input describes what was probed; the address is masked.
type Input struct {
	AddressMasked    string `json:"address_masked"`
	Domain           string `json:"domain"`
	DomainUnicode    string `json:"domain_unicode"`
	EAI              bool   `json:"eai"`
	Mode             string `json:"mode"` // "discover" or "auth"
	PasswordSupplied bool   `json:"password_supplied"`
}

// Policy records what the probe was allowed to do and why.
type Policy struct {
	AuthAllowed  bool   `json:"auth_allowed"`
	Reason       string `json:"reason"`
	Unrestricted bool   `json:"unrestricted"`
}

// Vantage says where the probe ran from.
type Vantage struct {
	Resolver                string `json:"resolver"`
	ResolverValidatesDNSSEC bool   `json:"resolver_validates_dnssec"`
}

// Summary is the card at the top of a report.
type Summary struct {
	Status       Overall         `json:"status"`
	Headline     string          `json:"headline"`
	FirstFailure string          `json:"first_failure,omitempty"`
	Recommended  Recommended     `json:"recommended"`
	Clients      []ClientVerdict `json:"clients"`
	Counts       map[Status]int  `json:"counts"`
}

// Recommended are the settings the probe found working, best first.
type Recommended struct {
	Incoming *Setting `json:"incoming,omitempty"`
	Outgoing *Setting `json:"outgoing,omitempty"`
}

// Setting is one server as a client would configure it.
type Setting struct {
	Protocol string `json:"protocol"`
	Host     string `json:"host"`
	Port     int    `json:"port"`
	Security string `json:"security"` // implicit_tls, starttls, plain
	Auth     string `json:"auth"`
	Username string `json:"username"`
}

// ClientVerdict is what one mail client would configure and whether it works.
type ClientVerdict struct {
	Client   string   `json:"client"` // thunderbird, thunderbird_android, outlook
	Source   string   `json:"source,omitempty"`
	Incoming *Setting `json:"incoming,omitempty"`
	Outgoing *Setting `json:"outgoing,omitempty"`
	Works    bool     `json:"works"`
	Note     string   `json:"note,omitempty"`
}

// DNSQuery is one DNS question and its answer.
type DNSQuery struct {
	Name       string   `json:"name"`
	Type       string   `json:"type"`
	Rcode      string   `json:"rcode"`
	AD         bool     `json:"ad"`
	TTL        uint32   `json:"ttl"`
	CNAMEChain []string `json:"cname_chain"`
	Answers    []string `json:"answers"`
	RTTMS      int64    `json:"rtt_ms"`
	Via        string   `json:"via"`
	Error      string   `json:"error,omitempty"`
}

// Discovery is one attempt of one discovery mechanism.
type Discovery struct {
	Mechanism    string     `json:"mechanism"`
	Priority     float64    `json:"priority"`
	URL          string     `json:"url,omitempty"`
	Query        string     `json:"query,omitempty"`
	Method       string     `json:"method,omitempty"`
	Status       Status     `json:"status"`
	HTTPStatus   int        `json:"http_status,omitempty"`
	ContentType  string     `json:"content_type,omitempty"`
	Redirects    []string   `json:"redirects"`
	TLS          *TLSInfo   `json:"tls,omitempty"`
	Trust        Trust      `json:"trust,omitempty"`
	ClaimsDomain *bool      `json:"claims_domain,omitempty"`
	Servers      []Server   `json:"servers"`
	Error        *StepError `json:"error,omitempty"`
	DurationMS   int64      `json:"duration_ms"`
	StepID       string     `json:"step,omitempty"`
}

// Server is one endpoint named by a discovery source.
type Server struct {
	Protocol string `json:"protocol"`
	Host     string `json:"host"`
	Port     int    `json:"port"`
	Security string `json:"security"`
	Username string `json:"username,omitempty"`
	Auth     string `json:"auth,omitempty"`
}

// Consistency is one field on which discovery sources disagree.
type Consistency struct {
	Field    string            `json:"field"`
	Values   map[string]string `json:"values"`
	Severity string            `json:"severity"`
}

// Endpoint is one candidate server and its per-address results.
type Endpoint struct {
	Protocol string       `json:"protocol"`
	Host     string       `json:"host"`
	Port     int          `json:"port"`
	Security string       `json:"security"`
	Sources  []string     `json:"sources"`
	Status   Status       `json:"status"`
	IPs      []EndpointIP `json:"ips"`
	StepID   string       `json:"step,omitempty"`
}

// EndpointIP is the check of one endpoint on one of its addresses.
type EndpointIP struct {
	IP             string           `json:"ip"`
	Family         string           `json:"family"`
	Status         Status           `json:"status"`
	TimingsMS      map[string]int64 `json:"timings_ms"`
	Greeting       string           `json:"greeting,omitempty"`
	Capabilities   Before           `json:"capabilities"`
	AuthMechanisms Before           `json:"auth_mechanisms"`
	TLS            *TLSInfo         `json:"tls,omitempty"`
	Auth           *AuthResult      `json:"auth,omitempty"`
	Session        *Session         `json:"session,omitempty"`
	Steps          []string         `json:"steps"`
	Transcript     string           `json:"transcript,omitempty"`
}

// Before holds a list seen before and after TLS; nil means not seen.
type Before struct {
	BeforeTLS []string `json:"before_tls"`
	AfterTLS  []string `json:"after_tls"`
}

// TLSInfo are the facts of one TLS handshake.
type TLSInfo struct {
	Version     string       `json:"version"`
	Cipher      string       `json:"cipher"`
	Group       string       `json:"group,omitempty"`
	ALPN        string       `json:"alpn"`
	OCSPStapled bool         `json:"ocsp_stapled"`
	Certificate *Certificate `json:"certificate,omitempty"`
}

// Certificate describes the server's leaf certificate and its verification.
type Certificate struct {
	Subject            string    `json:"subject"`
	SANs               []string  `json:"sans"`
	Issuer             string    `json:"issuer"`
	NotBefore          time.Time `json:"not_before"`
	NotAfter           time.Time `json:"not_after"`
	DaysLeft           int       `json:"days_left"`
	Key                string    `json:"key"`
	SHA256             string    `json:"sha256"`
	ChainLength        int       `json:"chain_length"`
	ChainComplete      bool      `json:"chain_complete"`
	Trusted            bool      `json:"trusted"`
	MatchesHost        bool      `json:"matches_host"`
	MatchesEmailDomain bool      `json:"matches_email_domain"`
	Error              string    `json:"error,omitempty"`
}

// AuthResult is the one login attempt on an endpoint.
type AuthResult struct {
	Attempted    bool   `json:"attempted"`
	Mechanism    string `json:"mechanism,omitempty"`
	UsernameForm string `json:"username_form,omitempty"`
	Result       Status `json:"result"`
	ServerReply  *Reply `json:"server_reply,omitempty"`
	SkipReason   string `json:"skip_reason,omitempty"`
}

// Session is what the read-only session check saw.
type Session struct {
	InboxExists    bool `json:"inbox_exists,omitempty"`
	Messages       *int `json:"messages,omitempty"`
	SenderAccepted bool `json:"sender_accepted,omitempty"`
}

// Step is one unit of work in the step tree.
type Step struct {
	ID         string     `json:"id"`
	Parent     string     `json:"parent,omitempty"`
	Title      string     `json:"title"`
	Status     Status     `json:"status"`
	StartedAt  time.Time  `json:"started_at"`
	DurationMS int64      `json:"duration_ms"`
	Target     *Target    `json:"target,omitempty"`
	Detail     string     `json:"detail,omitempty"`
	Error      *StepError `json:"error,omitempty"`
	Hint       string     `json:"hint,omitempty"`
	Refs       []string   `json:"refs,omitempty"`
	SkipReason string     `json:"skip_reason,omitempty"`
	Transcript string     `json:"transcript,omitempty"`
	seq        int
}

// Target is what a step talked to.
type Target struct {
	Host string `json:"host,omitempty"`
	IP   string `json:"ip,omitempty"`
	Port int    `json:"port,omitempty"`
	URL  string `json:"url,omitempty"`
}

// StepError is the failure class plus the evidence.
type StepError struct {
	Class       Code   `json:"class"`
	Message     string `json:"message"`
	ServerReply *Reply `json:"server_reply,omitempty"`
}

// Reply is a server's own answer: SMTP basic and enhanced code, IMAP
// status and [RESPONSE-CODE], POP3 +OK/-ERR and [CODE].
type Reply struct {
	Code     string `json:"code"`
	Enhanced string `json:"enhanced,omitempty"`
	RespCode string `json:"resp_code,omitempty"`
	Text     string `json:"text"`
}

// Finding is a problem worth fixing, with a paste-ready fix.
type Finding struct {
	Code      Code     `json:"code"`
	Severity  string   `json:"severity"` // critical high medium low info
	Title     string   `json:"title"`
	Detail    string   `json:"detail,omitempty"`
	Endpoints []string `json:"endpoints,omitempty"`
	Fix       *Fix     `json:"fix,omitempty"`
	Refs      []string `json:"refs,omitempty"`
}

// Fix is something to paste into a zone file, server config or certificate request.
type Fix struct {
	Kind    string `json:"kind"` // dns, server, certificate, autoconfig
	Snippet string `json:"snippet"`
}

// Transcript is the redacted conversation with one endpoint address.
type Transcript struct {
	ID       string `json:"id"`
	Endpoint string `json:"endpoint"`
	IP       string `json:"ip"`
	Lines    []Line `json:"lines"`
}

// Line is one line of a transcript. Dir is "S" (server), "C" (client) or
// "*" (probe note).
type Line struct {
	TMS  int64  `json:"t_ms"`
	Dir  string `json:"dir"`
	TLS  bool   `json:"tls"`
	Text string `json:"text"`
}
