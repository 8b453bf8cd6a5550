package discover

import (
	"strings"
	"testing"
)

const tbDoc = `<?xml version="1.0" encoding="UTF-8"?>
<clientConfig version="1.1"><emailProvider id="example.com"><domain>example.com</domain>
<incomingServer type="imap"><hostname>imap.example.com</hostname><port>993</port><socketType>SSL</socketType><username>%EMAILADDRESS%</username><authentication>password-cleartext</authentication></incomingServer>
<incomingServer type="exchange"><hostname>ews.example.com</hostname><port>443</port><socketType>SSL</socketType></incomingServer>
<incomingServer type="pop3"><hostname>pop.example.com</hostname><port>995</port><socketType> SSL </socketType></incomingServer>
<outgoingServer type="smtp"><hostname>smtp.example.com</hostname><port>587</port><socketType>STARTTLS</socketType><username>%EMAILLOCALPART%</username></outgoingServer>
</emailProvider></clientConfig>`

func TestParseAutoconfig(t *testing.T) {
	ac, err := ParseAutoconfig([]byte(tbDoc))
	if err != nil {
		t.Fatal(err)
	}
	// exchange is skipped; " SSL " is not SSL for Thunderbird.
	if len(ac.Incoming) != 1 || ac.Incoming[0].Host != "imap.example.com" || ac.Incoming[0].Security != "tls" {
		t.Errorf("incoming %+v", ac.Incoming)
	}
	if len(ac.Outgoing) != 1 || ac.Outgoing[0].Port != 587 || ac.Outgoing[0].Security != "starttls" {
		t.Errorf("outgoing %+v", ac.Outgoing)
	}
	for _, bad := range []string{"", "<x/>", "<clientConfig/>", strings.Repeat(" ", MaxDocument+1)} {
		if _, err := ParseAutoconfig([]byte(bad)); err == nil {
			t.Errorf("%.20q parsed", bad)
		}
	}
	// A custom entity is never expanded.
	if _, err := ParseAutoconfig([]byte(`<!DOCTYPE x [<!ENTITY a "b">]><clientConfig><emailProvider><incomingServer type="imap"><hostname>&a;</hostname></incomingServer></emailProvider></clientConfig>`)); err == nil {
		t.Error("entity expanded")
	}
}

const poxFixture = `<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006">
<Response xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a">
<Account><AccountType>email</AccountType><Action>settings</Action>
<Protocol><Type>IMAP</Type><Server>imap.example.com</Server><Port>993</Port><LoginName>alice@example.com</LoginName><SSL>on</SSL></Protocol>
<Protocol><Type>SMTP</Type><Server>smtp.example.com</Server><Port>587</Port><SSL>on</SSL></Protocol>
<Protocol><Type>POP3</Type><Server>pop.example.com</Server><Port>995</Port><Encryption>TLS</Encryption></Protocol>
<Protocol><Type>EXCH</Type><Server>ex.example.com</Server></Protocol>
</Account></Response></Autodiscover>`

func TestParseAutodiscover(t *testing.T) {
	a, err := ParseAutodiscover([]byte(poxFixture))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"imap": "tls", "smtp": "starttls", "pop3": "starttls"}
	if len(a.Servers) != 3 {
		t.Fatalf("servers %+v", a.Servers)
	}
	for _, s := range a.Servers {
		if want[s.Protocol] != s.Security {
			t.Errorf("%s: security %s, want %s", s.Protocol, s.Security, want[s.Protocol])
		}
	}
	e, err := ParseAutodiscover([]byte(`<Autodiscover><Response><Error><ErrorCode>600</ErrorCode><Message>Invalid Request</Message></Error></Response></Autodiscover>`))
	if err != nil || e.ErrorCode != "600" {
		t.Errorf("error form: %+v %v", e, err)
	}
	if !strings.Contains(string(autodiscoverRequest("a@b.test")), "<EMailAddress>a@b.test</EMailAddress>") {
		t.Error("request body")
	}
}

func FuzzParseAutoconfig(f *testing.F) {
	f.Add([]byte(tbDoc))
	f.Add([]byte("<clientConfig><emailProvider/></clientConfig>"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ac, err := ParseAutoconfig(b)
		if err != nil {
			return
		}
		for _, s := range append(ac.Incoming, ac.Outgoing...) {
			if s.Port < 1 || s.Port > 65535 || s.Host == "" || (s.Security != "tls" && s.Security != "starttls" && s.Security != "plain") {
				t.Fatalf("invalid server accepted: %+v", s)
			}
		}
	})
}

func FuzzParseAutodiscover(f *testing.F) {
	f.Add([]byte(poxFixture))
	f.Add([]byte("<Autodiscover><Response><Account><Action>redirectAddr</Action></Account></Response></Autodiscover>"))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := ParseAutodiscover(b)
		if err != nil {
			return
		}
		for _, s := range a.Servers {
			if s.Port < 1 || s.Port > 65535 || s.Host == "" {
				t.Fatalf("invalid server accepted: %+v", s)
			}
		}
	})
}
