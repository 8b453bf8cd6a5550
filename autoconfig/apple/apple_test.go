package apple

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/smallstep/pkcs7"
	"howett.net/plist"

	"mailconf/autoconfig"
	"mailconf/autoconfig/autoconfigtest"
	"mailconf/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite golden files")

// testConfig has a domain on the built-in server, one whose own servers
// offer only STARTTLS (and only POP3 for incoming mail, and a display name
// that needs escaping), and one with CalDAV/CardDAV. The config refuses a
// domain without incoming mail; Render's own guard is tested with a
// hand-made Settings.
const testConfig = `data_dir = "/nonexistent"
hostname = "mail.example.com"

[listen]
http        = "127.0.0.1:8080"
submission  = "127.0.0.1:587"
submissions = "127.0.0.1:465"
imap        = "127.0.0.1:143"
imaps       = "127.0.0.1:993"
pop3        = "127.0.0.1:110"
pop3s       = "127.0.0.1:995"

[[domain]]
name         = "example.com"
display_name = "Example Mail"

[[domain]]
name         = "legacy.example"
display_name = "Legacy & Co <Mail>"
username     = "localpart"

  [[domain.server]]
  protocol = "smtp"
  host     = "smtp.legacy.example"
  port     = 587
  security = "starttls"

  [[domain.server]]
  protocol = "pop3"
  host     = "pop.legacy.example"
  port     = 110
  security = "starttls"

[[domain]]
name         = "dav.example"
display_name = "DAV Mail"
caldav       = "https://dav.dav.example/caldav/"
carddav      = "https://contacts.dav.example:8443/"

  [[domain.server]]
  protocol = "imap"
  host     = "imap.dav.example"
  port     = 993
  security = "tls"

  [[domain.server]]
  protocol = "smtp"
  host     = "smtp.dav.example"
  port     = 465
  security = "tls"
`

func newService(t testing.TB) *autoconfig.Service {
	t.Helper()
	return autoconfigtest.Service(t, testConfig)
}

func lookup(t testing.TB, svc *autoconfig.Service, domain string) *autoconfig.Settings {
	t.Helper()
	st, ok := svc.Catalog.Lookup(domain)
	if !ok {
		t.Fatalf("domain %s not in the test catalog", domain)
	}
	return st
}

func mustAddr(t testing.TB, s string) autoconfig.Address {
	t.Helper()
	a, err := autoconfig.ParseAddress(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func render(t testing.TB, svc *autoconfig.Service, address string) []byte {
	t.Helper()
	a := mustAddr(t, address)
	out, err := Render(lookup(t, svc, a.Domain), a)
	if err != nil {
		t.Fatalf("Render(%s): %v", address, err)
	}
	return out
}

// decode parses a profile back into generic plist values.
func decode(t testing.TB, data []byte) map[string]any {
	t.Helper()
	var m map[string]any
	format, err := plist.Unmarshal(data, &m)
	if err != nil {
		t.Fatalf("profile does not parse as a plist: %v\n%s", err, data)
	}
	if format != plist.XMLFormat {
		t.Fatalf("profile format %d, want XML (%d)", format, plist.XMLFormat)
	}
	return m
}

func payloads(t testing.TB, prof map[string]any) []map[string]any {
	t.Helper()
	raw, ok := prof["PayloadContent"].([]any)
	if !ok {
		t.Fatalf("PayloadContent is %T, want an array", prof["PayloadContent"])
	}
	var out []map[string]any
	for i, p := range raw {
		d, ok := p.(map[string]any)
		if !ok {
			t.Fatalf("PayloadContent[%d] is %T, want a dict", i, p)
		}
		out = append(out, d)
	}
	return out
}

func TestGolden(t *testing.T) {
	svc := newService(t)
	for _, tc := range []struct{ name, address string }{
		{"builtin", "alice@example.com"},
		{"starttls", "bob@legacy.example"},
		{"dav", "carol@dav.example"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := render(t, svc, tc.address)
			testutil.Golden(t, tc.name+".mobileconfig", got, *update)
			testutil.XMLLint(t, got)
		})
	}
}

// TestProfileContent checks the parsed profile against the settings: types,
// values, identifiers and the absence of any password.
func TestProfileContent(t *testing.T) {
	svc := newService(t)
	type mailWant struct {
		accountType, inHost, outHost, user string
		inPort, outPort                    uint64
		davKinds                           []string
	}
	for _, tc := range []struct {
		address string
		want    mailWant
	}{
		{"alice@example.com", mailWant{"EmailTypeIMAP", "mail.example.com", "mail.example.com", "alice@example.com", 993, 465, nil}},
		{"bob@legacy.example", mailWant{"EmailTypePOP", "pop.legacy.example", "smtp.legacy.example", "bob", 110, 587, nil}},
		{"carol@dav.example", mailWant{"EmailTypeIMAP", "imap.dav.example", "smtp.dav.example", "carol@dav.example", 993, 465, []string{"caldav", "carddav"}}},
	} {
		t.Run(tc.address, func(t *testing.T) {
			st := lookup(t, svc, mustAddr(t, tc.address).Domain)
			prof := decode(t, render(t, svc, tc.address))
			checkCommon(t, "top level", prof, "Configuration")
			if v, ok := prof["PayloadRemovalDisallowed"].(bool); !ok || v {
				t.Errorf("PayloadRemovalDisallowed = %#v, want bool false", prof["PayloadRemovalDisallowed"])
			}
			if prof["PayloadOrganization"] != st.DisplayName {
				t.Errorf("PayloadOrganization = %#v, want %q", prof["PayloadOrganization"], st.DisplayName)
			}
			if dn, _ := prof["PayloadDisplayName"].(string); !strings.Contains(dn, tc.address) {
				t.Errorf("PayloadDisplayName %q does not name the address", dn)
			}

			pls := payloads(t, prof)
			uuids := map[string]bool{prof["PayloadUUID"].(string): true}
			ids := map[string]bool{prof["PayloadIdentifier"].(string): true}
			var kinds []string
			for _, p := range pls {
				u, id := p["PayloadUUID"].(string), p["PayloadIdentifier"].(string)
				if uuids[u] {
					t.Errorf("PayloadUUID %s used twice", u)
				}
				if ids[id] {
					t.Errorf("PayloadIdentifier %s used twice", id)
				}
				uuids[u], ids[id] = true, true
				if !strings.HasPrefix(id, prof["PayloadIdentifier"].(string)+".") {
					t.Errorf("inner identifier %s does not extend the profile's %s", id, prof["PayloadIdentifier"])
				}
				for k := range p {
					if strings.Contains(strings.ToLower(k), "password") && k != "OutgoingPasswordSameAsIncomingPassword" {
						t.Errorf("payload has a password key %s", k)
					}
				}
				switch p["PayloadType"] {
				case "com.apple.mail.managed":
					checkCommon(t, "mail", p, "com.apple.mail.managed")
					checkMail(t, p, tc.address, tc.want.accountType, tc.want.inHost, tc.want.outHost, tc.want.user, tc.want.inPort, tc.want.outPort)
				case "com.apple.caldav.account":
					checkCommon(t, "caldav", p, "com.apple.caldav.account")
					kinds = append(kinds, "caldav")
					checkDAV(t, p, "CalDAV", "dav.dav.example", 443, st.CalDAV, tc.want.user)
				case "com.apple.carddav.account":
					checkCommon(t, "carddav", p, "com.apple.carddav.account")
					kinds = append(kinds, "carddav")
					// A URL without a path leaves discovery to the device.
					checkDAV(t, p, "CardDAV", "contacts.dav.example", 8443, "", tc.want.user)
				default:
					t.Errorf("unexpected payload type %#v", p["PayloadType"])
				}
			}
			if pls[0]["PayloadType"] != "com.apple.mail.managed" {
				t.Errorf("first payload is %v, want the mail account", pls[0]["PayloadType"])
			}
			if strings.Join(kinds, ",") != strings.Join(tc.want.davKinds, ",") {
				t.Errorf("DAV payloads %v, want %v", kinds, tc.want.davKinds)
			}
		})
	}
}

func checkCommon(t *testing.T, where string, p map[string]any, typ string) {
	t.Helper()
	if p["PayloadType"] != typ {
		t.Errorf("%s: PayloadType %#v, want %q", where, p["PayloadType"], typ)
	}
	// plist decodes <integer> to uint64; a <string> or <real> would not be.
	if v, ok := p["PayloadVersion"].(uint64); !ok || v != 1 {
		t.Errorf("%s: PayloadVersion %#v (%T), want integer 1", where, p["PayloadVersion"], p["PayloadVersion"])
	}
	for _, k := range []string{"PayloadIdentifier", "PayloadUUID"} {
		if s, ok := p[k].(string); !ok || s == "" {
			t.Errorf("%s: %s = %#v, want a non-empty string", where, k, p[k])
		}
	}
	u, _ := p["PayloadUUID"].(string)
	if len(u) != 36 || strings.Count(u, "-") != 4 || u != strings.ToUpper(u) {
		t.Errorf("%s: PayloadUUID %q is not an upper-case UUID", where, u)
	}
}

func checkMail(t *testing.T, p map[string]any, address, accountType, inHost, outHost, user string, inPort, outPort uint64) {
	t.Helper()
	want := map[string]any{
		"EmailAccountType":                       accountType,
		"EmailAddress":                           address,
		"IncomingMailServerHostName":             inHost,
		"IncomingMailServerPortNumber":           inPort,
		"IncomingMailServerUseSSL":               true,
		"IncomingMailServerAuthentication":       "EmailAuthPassword",
		"IncomingMailServerUsername":             user,
		"OutgoingMailServerHostName":             outHost,
		"OutgoingMailServerPortNumber":           outPort,
		"OutgoingMailServerUseSSL":               true,
		"OutgoingMailServerAuthentication":       "EmailAuthPassword",
		"OutgoingMailServerUsername":             user,
		"OutgoingPasswordSameAsIncomingPassword": true,
	}
	for k, v := range want {
		if p[k] != v {
			t.Errorf("mail: %s = %#v (%T), want %#v (%T)", k, p[k], p[k], v, v)
		}
	}
}

func checkDAV(t *testing.T, p map[string]any, prefix, host string, port uint64, principal, user string) {
	t.Helper()
	want := map[string]any{
		prefix + "HostName": host,
		prefix + "Port":     port,
		prefix + "UseSSL":   true,
		prefix + "Username": user,
	}
	if principal != "" {
		want[prefix+"PrincipalURL"] = principal
	} else if _, ok := p[prefix+"PrincipalURL"]; ok {
		t.Errorf("%s: PrincipalURL set for a URL without a path", prefix)
	}
	for k, v := range want {
		if p[k] != v {
			t.Errorf("%s: %s = %#v (%T), want %#v (%T)", prefix, k, p[k], p[k], v, v)
		}
	}
}

// TestStableIdentifiers: the same mailbox always gets the same identifiers
// (so a reinstall replaces), across renders and restarts; other mailboxes
// get others.
func TestStableIdentifiers(t *testing.T) {
	ids := func(data []byte) []string {
		prof := decode(t, data)
		out := []string{prof["PayloadIdentifier"].(string), prof["PayloadUUID"].(string)}
		for _, p := range payloads(t, prof) {
			out = append(out, p["PayloadIdentifier"].(string), p["PayloadUUID"].(string))
		}
		return out
	}
	first := newService(t)
	a := render(t, first, "carol@dav.example")
	if b := render(t, first, "carol@dav.example"); !bytes.Equal(a, b) {
		t.Error("two renders of the same address differ")
	}
	// A restart: a fresh catalog and handler serving over HTTP.
	restarted := newService(t)
	srv, _ := startServer(t, restarted, nil)
	_, body := get(t, srv.URL+Path+"?emailaddress=carol%40dav.example")
	if !bytes.Equal(a, body) {
		t.Error("the profile changed across a restart")
	}
	if got, want := ids(render(t, first, "Carol@dav.example")), ids(a); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("local-part case changed the identifiers: %v vs %v", got, want)
	}
	other := ids(render(t, first, "dave@dav.example"))
	for i, id := range ids(a) {
		if other[i] == id {
			t.Errorf("dave and carol share identifier %s", id)
		}
	}
	// The same local part in another domain is another mailbox.
	if ids(render(t, first, "carol@example.com"))[1] == ids(a)[1] {
		t.Error("carol@example.com and carol@dav.example share a profile UUID")
	}
}

// TestSameForAnyLocalPart: only address-derived values differ between two
// mailboxes of a domain, so the profile cannot tell whether one exists.
func TestSameForAnyLocalPart(t *testing.T) {
	svc := newService(t)
	perAddress := map[string]bool{
		"PayloadIdentifier": true, "PayloadUUID": true, "PayloadDisplayName": true, "PayloadDescription": true,
		"EmailAddress": true, "IncomingMailServerUsername": true, "OutgoingMailServerUsername": true,
		"CalDAVUsername": true, "CardDAVUsername": true, "PayloadContent": true,
	}
	strip := func(m map[string]any) map[string]any {
		out := map[string]any{}
		for k, v := range m {
			if !perAddress[k] {
				out[k] = v
			}
		}
		return out
	}
	a := decode(t, render(t, svc, "exists@dav.example"))
	b := decode(t, render(t, svc, "no.such.user@dav.example"))
	if !equalMaps(strip(a), strip(b)) {
		t.Errorf("top level differs:\n%v\n%v", strip(a), strip(b))
	}
	pa, pb := payloads(t, a), payloads(t, b)
	if len(pa) != len(pb) {
		t.Fatalf("%d vs %d payloads", len(pa), len(pb))
	}
	for i := range pa {
		if !equalMaps(strip(pa[i]), strip(pb[i])) {
			t.Errorf("payload %d differs:\n%v\n%v", i, strip(pa[i]), strip(pb[i]))
		}
	}
}

func equalMaps(a, b map[string]any) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestRenderErrors(t *testing.T) {
	svc := newService(t)
	sendOnly := &autoconfig.Settings{Domain: "sendonly.example", Username: autoconfig.UsernameAddress,
		Outgoing: []autoconfig.Endpoint{{Protocol: autoconfig.SMTP, Host: "smtp.sendonly.example", Port: 465, Security: autoconfig.TLS}}}
	if _, err := Render(sendOnly, mustAddr(t, "x@sendonly.example")); !errors.Is(err, ErrIncomplete) {
		t.Errorf("Render of a domain without incoming mail = %v, want ErrIncomplete", err)
	}
	if _, err := Render(lookup(t, svc, "example.com"), mustAddr(t, "x@dav.example")); err == nil {
		t.Error("Render of an address of another domain succeeded")
	}
}

func startServer(t testing.TB, svc *autoconfig.Service, cert func() *tls.Certificate) (*httptest.Server, *Handler) {
	t.Helper()
	h, err := New(svc, cert)
	if err != nil {
		t.Fatal(err)
	}
	e := echo.New()
	h.Register(e)
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return srv, h
}

func get(t testing.TB, u string) (*http.Response, []byte) {
	t.Helper()
	return do(t, http.MethodGet, u)
}

func do(t testing.TB, method, u string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func TestHTTP(t *testing.T) {
	svc := newService(t)
	srv, _ := startServer(t, svc, nil)
	base := srv.URL + Path

	t.Run("profile", func(t *testing.T) {
		resp, body := get(t, base+"?emailaddress=alice%40example.com")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		for k, v := range map[string]string{
			"Content-Type":        "application/x-apple-aspen-config",
			"Content-Disposition": `attachment; filename="example.com.mobileconfig"`,
			"Cache-Control":       "no-store",
		} {
			if got := resp.Header.Get(k); got != v {
				t.Errorf("%s: %q, want %q", k, got, v)
			}
		}
		if !bytes.Equal(body, render(t, svc, "alice@example.com")) {
			t.Error("served profile differs from Render")
		}
	})

	t.Run("HEAD", func(t *testing.T) {
		resp, body := do(t, http.MethodHead, base+"?emailaddress=alice%40example.com")
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != ContentType || len(body) != 0 {
			t.Fatalf("HEAD: status %d, type %q, %d body bytes", resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
		}
		if want := int64(len(render(t, svc, "alice@example.com"))); resp.ContentLength != want {
			t.Errorf("HEAD Content-Length %d, want %d", resp.ContentLength, want)
		}
	})

	t.Run("hostile but valid address", func(t *testing.T) {
		addr := "o'neil&co+x@example.com"
		resp, body := get(t, base+"?emailaddress="+url.QueryEscape(addr))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		testutil.XMLLint(t, body)
		pls := payloads(t, decode(t, body))
		if pls[0]["EmailAddress"] != addr || pls[0]["IncomingMailServerUsername"] != addr {
			t.Errorf("address did not round-trip: %#v", pls[0]["EmailAddress"])
		}
	})

	for _, tc := range []struct {
		name, query string
		status      int
	}{
		{"missing", "", http.StatusBadRequest},
		{"empty", "?emailaddress=", http.StatusBadRequest},
		{"no at", "?emailaddress=alice", http.StatusBadRequest},
		{"markup", "?emailaddress=" + url.QueryEscape(`<a href="x">&'@example.com`), http.StatusBadRequest},
		{"markup domain", "?emailaddress=" + url.QueryEscape(`a@<>&"'.example.com`), http.StatusBadRequest},
		{"quotes", "?emailaddress=" + url.QueryEscape(`"a b"@example.com`), http.StatusBadRequest},
		{"crlf", "?emailaddress=a%0d%0aX-Injected:%201@example.com", http.StatusBadRequest},
		{"not utf8", "?emailaddress=%ff%fe@example.com", http.StatusBadRequest},
		{"very long", "?emailaddress=" + strings.Repeat("a", 5000) + "@example.com", http.StatusBadRequest},
		{"unknown domain", "?emailaddress=alice%40not-served.example", http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := counted(t, svc, tc.status)
			resp, body := get(t, base+tc.query)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct == ContentType || !strings.HasPrefix(ct, "text/plain") {
				t.Errorf("error answered as %q", ct)
			}
			if bytes.ContainsAny(body, "<>") {
				t.Errorf("error body echoes markup: %q", body)
			}
			after := counted(t, svc, tc.status)
			if after != before+1 {
				t.Errorf("metric for status %d went from %v to %v", tc.status, before, after)
			}
		})
	}
}

// counted reads the request counter of the mobileconfig format for status.
func counted(t *testing.T, svc *autoconfig.Service, status int) float64 {
	t.Helper()
	return testutil.MetricValue(t, svc.Metrics.AutoconfigRequests.WithLabelValues(autoconfig.FormatMobileconfig, strconv.Itoa(status)))
}

// TestSigned serves a signed profile over HTTP and verifies it with
// OpenSSL against the test root: content attached and identical to the
// unsigned plist, intermediate included, SHA-256.
func TestSigned(t *testing.T) {
	opensslBin := testutil.Tool(t, "openssl", "openssl")
	ca := testutil.NewCA(t)
	leaf := ca.Issue(t, []string{"mail.example.com"}, time.Time{}, time.Time{})
	svc := newService(t)
	srv, _ := startServer(t, svc, func() *tls.Certificate { return &leaf.Cert })

	resp, body := get(t, srv.URL+Path+"?emailaddress=carol%40dav.example")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != ContentType {
		t.Fatalf("status %d, type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	unsigned := render(t, svc, "carol@dav.example")
	if bytes.Equal(body, unsigned) {
		t.Fatal("served the unsigned profile although a signing certificate is set")
	}

	dir := t.TempDir()
	signedFile := filepath.Join(dir, "signed.mobileconfig")
	if err := os.WriteFile(signedFile, body, 0o600); err != nil {
		t.Fatal(err)
	}
	verify := func(caFile string) ([]byte, error) {
		outFile := filepath.Join(dir, "content.plist")
		os.Remove(outFile)
		out, err := exec.Command(opensslBin, "cms", "-verify", "-inform", "DER", "-in", signedFile,
			"-CAfile", caFile, "-purpose", "any", "-out", outFile).CombinedOutput()
		if err != nil {
			return out, err
		}
		return os.ReadFile(outFile)
	}
	content, err := verify(ca.RootFile)
	if err != nil {
		t.Fatalf("openssl cms -verify: %v\n%s", err, content)
	}
	if !bytes.Equal(content, unsigned) {
		t.Errorf("signed content differs from the unsigned profile:\n%s", content)
	}
	// Another root must not verify it: the check above means something.
	if out, err := verify(testutil.NewCA(t).RootFile); err == nil {
		t.Errorf("signature verified against an unrelated root:\n%s", out)
	}

	printed, err := exec.Command(opensslBin, "cms", "-cmsout", "-print", "-inform", "DER", "-in", signedFile).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl cms -cmsout -print: %v\n%s", err, printed)
	}
	checkSHA256(t, printed)

	p7, err := pkcs7.Parse(body)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p7.Content, unsigned) {
		t.Error("pkcs7: attached content differs from the unsigned profile")
	}
	if len(p7.Signers) != 1 {
		t.Errorf("%d signers, want 1", len(p7.Signers))
	} else if alg := p7.Signers[0].DigestAlgorithm.Algorithm; !alg.Equal(pkcs7.OIDDigestAlgorithmSHA256) {
		t.Errorf("signer digest algorithm %v, want SHA-256 %v", alg, pkcs7.OIDDigestAlgorithmSHA256)
	}
	var haveIntermediate bool
	for _, c := range p7.Certificates {
		haveIntermediate = haveIntermediate || c.Equal(ca.Intermediate)
	}
	if !haveIntermediate || len(p7.Certificates) != 2 {
		t.Errorf("certificates in the CMS: %d, intermediate included: %v", len(p7.Certificates), haveIntermediate)
	}
	if err := p7.VerifyWithChain(ca.Pool); err != nil {
		t.Errorf("pkcs7 verify: %v", err)
	}
}

// digestLines matches the CMS digest algorithm lines of openssl's -print
// output (the set in SignedData and the one of each SignerInfo).
var digestLines = regexp.MustCompile(`digestAlgorithms?:\s*\n\s*algorithm: (\S+)`)

func checkSHA256(t *testing.T, printed []byte) {
	t.Helper()
	m := digestLines.FindAllSubmatch(printed, -1)
	if len(m) != 2 {
		t.Fatalf("found %d digest algorithms in openssl's output, want 2:\n%s", len(m), printed)
	}
	for _, sub := range m {
		if string(sub[1]) != "sha256" {
			t.Errorf("digest algorithm %s, want sha256", sub[1])
		}
	}
}

// TestSignRSASelfSigned covers an RSA key and a certificate without a
// chain, as a self-signed server certificate would be.
func TestSignRSASelfSigned(t *testing.T) {
	opensslBin := testutil.Tool(t, "openssl", "openssl")
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "self-signed signer"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, signedFile := filepath.Join(dir, "self.pem"), filepath.Join(dir, "signed.der")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	content := render(t, newService(t), "alice@example.com")
	signed, err := Sign(content, &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(signedFile, signed, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(opensslBin, "cms", "-verify", "-inform", "DER", "-in", signedFile,
		"-CAfile", certFile, "-purpose", "any").Output()
	if err != nil {
		t.Fatalf("openssl cms -verify: %v", err)
	}
	if !bytes.Equal(out, content) {
		t.Error("verified content differs from the profile")
	}
	printed, err := exec.Command(opensslBin, "cms", "-cmsout", "-print", "-inform", "DER", "-in", signedFile).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl cms -cmsout -print: %v\n%s", err, printed)
	}
	checkSHA256(t, printed)
}

// TestSigningFallback: an unusable signing certificate (expired, or a key
// type CMS signing does not support) yields the unsigned profile, not an
// error page.
func TestSigningFallback(t *testing.T) {
	ca := testutil.NewCA(t)
	expired := ca.Issue(t, []string{"mail.example.com"}, time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour))
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	good := ca.Issue(t, []string{"mail.example.com"}, time.Time{}, time.Time{})
	wrongKey := good.Cert
	wrongKey.PrivateKey = edKey

	for name, cert := range map[string]*tls.Certificate{"expired": &expired.Cert, "ed25519 key": &wrongKey} {
		t.Run(name, func(t *testing.T) {
			if _, err := Sign([]byte("x"), cert); err == nil {
				t.Error("Sign accepted the certificate")
			}
			svc := newService(t)
			srv, _ := startServer(t, svc, func() *tls.Certificate { return cert })
			resp, body := get(t, srv.URL+Path+"?emailaddress=alice%40example.com")
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if !bytes.Equal(body, render(t, svc, "alice@example.com")) {
				t.Error("want the unsigned profile")
			}
		})
	}
	if _, err := Sign([]byte("x"), nil); err == nil {
		t.Error("Sign(nil cert) succeeded")
	}
}

func benchmarkServe(b *testing.B, cert func() *tls.Certificate) {
	svc := newService(b)
	h, err := New(svc, cert)
	if err != nil {
		b.Fatal(err)
	}
	e := echo.New()
	h.Register(e)
	req := httptest.NewRequest(http.MethodGet, Path+"?emailaddress=carol%40dav.example", nil)
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d", rec.Code)
		}
	}
}

func BenchmarkServeUnsigned(b *testing.B) { benchmarkServe(b, nil) }

func BenchmarkServeSigned(b *testing.B) {
	leaf := testutil.NewCA(b).Issue(b, []string{"mail.example.com"}, time.Time{}, time.Time{})
	benchmarkServe(b, func() *tls.Certificate { return &leaf.Cert })
}
