package autoconfig

// SRVService is one RFC 6186 / RFC 8314 mail service label and the
// endpoint kind it names.
type SRVService struct {
	Label    string // "_imaps._tcp"
	Protocol Protocol
	Security Security
}

// SRVServices returns the mail SRV services in client preference order:
// IMAP before POP3, implicit TLS before STARTTLS (RFC 8314 §5.1), then
// submission. The publishing side (dnsrecords) and the probe's discovery
// read the same list.
func SRVServices() []SRVService {
	return []SRVService{
		{"_imaps._tcp", IMAP, TLS},
		{"_imap._tcp", IMAP, StartTLS},
		{"_pop3s._tcp", POP3, TLS},
		{"_pop3._tcp", POP3, StartTLS},
		{"_submissions._tcp", SMTP, TLS},
		{"_submission._tcp", SMTP, StartTLS},
	}
}
