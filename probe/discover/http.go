package discover

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"time"

	"mailconf/probe/dnsq"
	"mailconf/probe/netguard"
)

// NewHTTPClient returns the client discovery uses: names resolved through
// the probe's resolver, every connection through the guard, the given
// roots, no automatic redirects (fetch follows and records them).
func NewHTTPClient(d *netguard.Dialer, resolver *dnsq.Client, roots *x509.CertPool, timeout time.Duration) *http.Client {
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, ps, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, fmt.Errorf("discover: dial %q: %w", addr, err)
			}
			port, _ := strconv.Atoi(ps)
			ips, err := resolve(ctx, resolver, host)
			if err != nil {
				return nil, err
			}
			var last error
			for _, ip := range ips {
				c, err := d.DialIP(ctx, host, ip, port)
				if err == nil {
					return c, nil
				}
				last = err
			}
			return nil, last
		},
		TLSClientConfig:        &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:    timeout,
		ResponseHeaderTimeout:  timeout,
		DisableKeepAlives:      true,
		MaxResponseHeaderBytes: 64 << 10,
	}
	return &http.Client{
		Transport:     tr,
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// resolve returns the addresses of host (IPv4 first) from the probe's
// resolver; an IP literal is returned as is.
func resolve(ctx context.Context, r *dnsq.Client, host string) ([]netip.Addr, error) {
	out, _ := r.Lookup(ctx, host)
	if len(out) == 0 {
		return nil, &noAddressError{host: host}
	}
	return out, nil
}

type noAddressError struct{ host string }

func (e *noAddressError) Error() string { return "discover: " + e.host + " has no address" }

// fetched is one HTTP exchange with its redirect chain.
type fetched struct {
	url         string // final URL
	status      int
	contentType string
	body        []byte
	redirects   []string
	httpHop     bool
	tls         *tls.ConnectionState
	tooLarge    bool
	tooMany     bool
}

// fetch runs method on u, following up to maxRedirects redirects by hand
// so that each hop is recorded and re-checked by the dialer. A POST stays
// a POST across 307/308 and becomes a GET otherwise, like browsers.
func fetch(ctx context.Context, c *http.Client, method, u string, body []byte, maxRedirects int) (*fetched, error) {
	f := &fetched{}
	for hop := 0; ; hop++ {
		pu, err := url.Parse(u)
		if err != nil {
			return f, fmt.Errorf("discover: bad URL %q: %w", u, err)
		}
		if pu.Scheme == "http" {
			f.httpHop = true
		}
		var rd io.Reader
		if body != nil && method == http.MethodPost {
			rd = bytes.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, method, u, rd)
		if err != nil {
			return f, fmt.Errorf("discover: %w", err)
		}
		if method == http.MethodPost {
			req.Header.Set("Content-Type", "text/xml; charset=utf-8")
		}
		req.Header.Set("User-Agent", "mailconf-probe")
		resp, err := c.Do(req)
		if err != nil {
			return f, err
		}
		f.url, f.status, f.contentType, f.tls = u, resp.StatusCode, resp.Header.Get("Content-Type"), resp.TLS
		loc := resp.Header.Get("Location")
		if resp.StatusCode >= 300 && resp.StatusCode < 400 && loc != "" {
			_ = resp.Body.Close()
			next, err := pu.Parse(loc)
			if err != nil {
				return f, fmt.Errorf("discover: bad redirect %q: %w", loc, err)
			}
			if next.Scheme != "http" && next.Scheme != "https" {
				return f, fmt.Errorf("discover: redirect to unsupported scheme %q", next.Scheme)
			}
			f.redirects = append(f.redirects, next.String())
			if hop >= maxRedirects {
				f.tooMany = true
				return f, nil
			}
			if resp.StatusCode != http.StatusTemporaryRedirect && resp.StatusCode != http.StatusPermanentRedirect {
				method, body = http.MethodGet, nil
			}
			u = next.String()
			continue
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, MaxDocument+1))
		_ = resp.Body.Close()
		if err != nil {
			return f, err
		}
		if len(b) > MaxDocument {
			f.tooLarge = true
			b = nil
		}
		f.body = b
		return f, nil
	}
}

func tlsVersion(v uint16) string { return tls.VersionName(v) }
func cipherName(c uint16) string { return tls.CipherSuiteName(c) }
