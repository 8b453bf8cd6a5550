package probetest

import (
	"crypto/tls"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"mailconf/internal/testutil"
	"mailconf/probe/netguard"
)

// World is a domain's whole internet on loopback: DNS, web servers for
// autoconfig/Autodiscover (one HTTP and one HTTPS listener, routed by Host
// and SNI), and mail servers on their own ports.
type World struct {
	CA  *testutil.CA
	DNS *DNS
	// PortMap maps logical ports (80, 443, 993, ...) to listeners.
	PortMap map[int]int

	mu    sync.Mutex
	pages map[string]http.HandlerFunc // "scheme://host/path"
	certs map[string]*tls.Certificate // by host
}

// NewWorld starts DNS and the web listeners.
func NewWorld(t testing.TB) *World {
	t.Helper()
	w := &World{CA: testutil.NewCA(t), PortMap: map[int]int{}, pages: map[string]http.HandlerFunc{}, certs: map[string]*tls.Certificate{}}
	w.DNS = NewDNS(t, "")
	w.PortMap[80] = w.listenHTTP(t, false)
	w.PortMap[443] = w.listenHTTP(t, true)
	return w
}

func (w *World) listenHTTP(t testing.TB, secure bool) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	scheme := "http"
	if secure {
		scheme = "https"
		ln = tls.NewListener(ln, &tls.Config{GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
			w.mu.Lock()
			defer w.mu.Unlock()
			if c, ok := w.certs[h.ServerName]; ok {
				return c, nil
			}
			l := w.CA.Issue(t, []string{h.ServerName}, zeroTime, zeroTime)
			w.certs[h.ServerName] = &l.Cert
			return &l.Cert, nil
		}})
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.Host)
		if err != nil {
			host = r.Host
		}
		w.mu.Lock()
		h := w.pages[scheme+"://"+strings.ToLower(host)+strings.ToLower(r.URL.Path)]
		w.mu.Unlock()
		if h == nil {
			http.NotFound(rw, r)
			return
		}
		h(rw, r)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

// Host points name at 127.0.0.1 in DNS.
func (w *World) Host(t testing.TB, name string) {
	t.Helper()
	w.DNS.AddZone(t, name+". 300 IN A 127.0.0.1\n")
}

// Zone adds zone text.
func (w *World) Zone(t testing.TB, zone string) { t.Helper(); w.DNS.AddZone(t, zone) }

// Page serves h at url ("https://autoconfig.example.test/mail/config-v1.1.xml")
// and points the host at 127.0.0.1.
func (w *World) Page(t testing.TB, url string, h http.HandlerFunc) {
	t.Helper()
	scheme, rest, _ := strings.Cut(url, "://")
	host, path, _ := strings.Cut(rest, "/")
	w.mu.Lock()
	w.pages[scheme+"://"+strings.ToLower(host)+"/"+strings.ToLower(path)] = h
	w.mu.Unlock()
	w.Host(t, host)
}

// XML serves body with a content type.
func XML(contentType, body string) http.HandlerFunc {
	return func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Content-Type", contentType)
		_, _ = rw.Write([]byte(body))
	}
}

// WebCert overrides the certificate served for a host name.
func (w *World) WebCert(host string, c *tls.Certificate) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.certs[host] = c
}

// Mail starts m for host on a logical port and points the host at
// 127.0.0.1. One logical port maps to one listener per world.
func (w *World) Mail(t testing.TB, host string, port int, m *Mail) {
	t.Helper()
	w.PortMap[port] = m.Start(t, "")
	w.Host(t, host)
}

// Policy is the guard policy for the world: loopback allowed, nothing else.
func (w *World) Policy() netguard.Policy {
	return netguard.Policy{AllowPrefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
}
