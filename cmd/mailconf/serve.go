package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"mailconf/autoconfig"
	"mailconf/autoconfig/apple"
	"mailconf/autoconfig/autodiscover"
	"mailconf/autoconfig/setup"
	"mailconf/autoconfig/thunderbird"
	"mailconf/config"
	"mailconf/internal/certs"
	"mailconf/internal/connlimit"
	"mailconf/internal/metrics"
	probeweb "mailconf/probe/web"
)

// shutdownGrace is how long SIGTERM waits for open connections to finish.
const shutdownGrace = 10 * time.Second

// unit is one running service on one listener.
type unit struct {
	name  string
	addr  string
	serve func(net.Listener) error
	stop  func(context.Context) error
}

func runServe(ctx context.Context, e env, args []string) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	logFormat := fs.String("log-format", "text", "log format: text or json")
	if rest, err := parseInterleaved(fs, args); err != nil || len(rest) > 0 {
		if err == nil {
			fmt.Fprintf(e.stderr, "mailconf serve: unexpected argument %q\n", rest[0])
		}
		return exitUsage
	}
	log, err := newLogger(*logFormat, e.stderr)
	if err != nil {
		fmt.Fprintf(e.stderr, "mailconf serve: %v\n", err)
		return exitUsage
	}
	if err := serve(ctx, e.cfg, log, e.stdout); err != nil {
		log.Error("serve stopped", "err", err)
		fmt.Fprintf(e.stderr, "mailconf serve: %v\n", err)
		return exitFailure
	}
	return exitOK
}

func newLogger(format string, w io.Writer) (*slog.Logger, error) {
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, nil)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, nil)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// serve runs every service the config enables until ctx ends, then drains.
func serve(ctx context.Context, cfg *config.Config, log *slog.Logger, stdout io.Writer) error {
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	cm, err := certs.New(cfg)
	if err != nil {
		return err
	}
	m := metrics.New()
	ms, err := newMail(ctx, cfg, cm, m, log)
	if err != nil {
		return err
	}
	defer ms.st.Close()
	if err := ms.ensureDemo(ctx, cfg, stdout); err != nil {
		return err
	}

	cat := autoconfig.NewCatalog(cfg)
	web, err := newWeb(cfg, cat, cm, m, log)
	if err != nil {
		return err
	}
	var units []unit
	if cfg.Listen.HTTP != "" {
		var h http.Handler = web
		if cfg.Listen.HTTPS != "" {
			h = redirectAutodiscover(web, config.Port(cfg.Listen.HTTPS))
		}
		units = append(units, httpUnit("http", cfg.Listen.HTTP, h, nil, log))
	}
	if cfg.Listen.HTTPS != "" {
		units = append(units, httpUnit("https", cfg.Listen.HTTPS, web, cm.ServerConfig(), log))
	}
	units = append(units, ms.units...)

	// Bind everything first so that a port in use fails the start cleanly
	// instead of leaving half the services running.
	lns := make([]net.Listener, len(units))
	for i, u := range units {
		ln, err := net.Listen("tcp", u.addr)
		if err != nil {
			for _, l := range lns[:i] {
				l.Close()
			}
			return fmt.Errorf("listen %s on %s: %w", u.name, u.addr, err)
		}
		lns[i] = ln
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer func() {
		signal.Stop(hup)
		close(hup) // ends the reload goroutine
	}()
	go func() {
		for range hup {
			if err := cm.Reload(); err != nil {
				log.Error("certificate reload failed; keeping the old one", "err", err)
			} else {
				log.Info("certificate reloaded", "file", cm.CertFile())
			}
		}
	}()

	// Background work lives until the listeners have drained.
	bg, stopBG := context.WithCancel(context.Background())
	defer stopBG()
	var bgWork sync.WaitGroup
	bgWork.Add(2)
	go func() {
		defer bgWork.Done()
		if err := ms.queue.Run(bg); err != nil && !errors.Is(err, context.Canceled) {
			log.Error("queue stopped", "err", err)
		}
	}()
	go func() {
		defer bgWork.Done()
		if n, err := ms.st.Sweep(bg); err != nil && !errors.Is(err, context.Canceled) {
			log.Warn("store sweep", "err", err)
		} else if n > 0 {
			log.Info("store sweep removed unreferenced message files", "count", n)
		}
	}()

	errc := make(chan error, len(units))
	var wg sync.WaitGroup
	for i, u := range units {
		wg.Add(1)
		go func(u unit, ln net.Listener) {
			defer wg.Done()
			log.Info("listening", "service", u.name, "addr", ln.Addr().String())
			if err := u.serve(ln); err != nil {
				errc <- fmt.Errorf("%s: %w", u.name, err)
			}
		}(u, lns[i])
	}
	printWelcome(stdout, cfg, cat, cm, lns, units)

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("stopping: draining connections", "grace", shutdownGrace)
	case runErr = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	for _, u := range units {
		if err := u.stop(sctx); err != nil {
			log.Warn("stop", "service", u.name, "err", err)
		}
	}
	wg.Wait()
	if err := ms.queue.Shutdown(sctx); err != nil {
		log.Warn("stop", "service", "queue", "err", err)
	}
	stopBG()
	bgWork.Wait() // before the store closes
	log.Info("stopped")
	return runErr
}

func httpUnit(name, addr string, h http.Handler, tlsConfig *tls.Config, log *slog.Logger) unit {
	srv := &http.Server{
		// Handshake failures and the like are the clients' problems: keep
		// them structured and out of the default log.
		ErrorLog:          slog.NewLogLogger(log.With("service", name).Handler(), slog.LevelDebug),
		Handler:           h,
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      2 * time.Minute, // probe streams run long
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
	return unit{
		name: name,
		addr: addr,
		serve: func(ln net.Listener) error {
			// Browsers and clients behind one NAT share an address: the
			// per-client cap is generous, the total one bounds memory.
			ln = connlimit.New(ln, 8192, 512)
			if tlsConfig != nil {
				ln = tls.NewListener(ln, tlsConfig)
			}
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
		stop: srv.Shutdown,
	}
}

// redirectAutodiscover sends plain-HTTP Autodiscover requests to the https
// listener with 302, the "HTTP redirect method" Outlook follows: settings
// are never answered over plain HTTP when HTTPS is available
// (formats.md §2.2, B3). Everything else is served as it is.
func redirectAutodiscover(next http.Handler, httpsPort int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.URL.Path, "/autodiscover/autodiscover.xml") {
			next.ServeHTTP(w, r)
			return
		}
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if _, err := config.HostName(host); err != nil && net.ParseIP(host) == nil {
			http.Error(w, "bad Host header", http.StatusBadRequest)
			return
		}
		if strings.Contains(host, ":") {
			host = "[" + host + "]"
		}
		if httpsPort != 443 {
			host += ":" + strconv.Itoa(httpsPort)
		}
		http.Redirect(w, r, "https://"+host+"/autodiscover/autodiscover.xml", http.StatusFound)
	})
}

// newWeb builds the HTTP handler: every configuration format, the settings
// API, health and metrics.
func newWeb(cfg *config.Config, cat *autoconfig.Catalog, cm *certs.Manager, m *metrics.Metrics, log *slog.Logger) (*echo.Echo, error) {
	svc, err := autoconfig.NewService(cat, m, log)
	if err != nil {
		return nil, err
	}
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.Logger.SetOutput(io.Discard)
	e.Use(middleware.Recover())
	e.HTTPErrorHandler = jsonErrors(log)

	svc.Register(e)
	tb, err := thunderbird.New(svc)
	if err != nil {
		return nil, err
	}
	tb.Register(e)
	// Profiles are signed only with a configured certificate: a self-signed
	// signature shows as "Not Verified" on Apple devices, no better than none.
	signer := func() *tls.Certificate {
		if cm.SelfSigned() {
			return nil
		}
		return cm.Current()
	}
	ap, err := apple.New(svc, signer)
	if err != nil {
		return nil, err
	}
	ap.Register(e)
	ad, err := autodiscover.New(svc)
	if err != nil {
		return nil, err
	}
	ad.Register(e)
	sp, err := setup.New(svc)
	if err != nil {
		return nil, err
	}
	sp.Register(e)
	pw, err := newProbeWeb(cfg, cat, cm, m, log)
	if err != nil {
		return nil, err
	}
	pw.Register(e)
	e.GET("/healthz", func(c echo.Context) error { return c.String(http.StatusOK, "ok\n") })
	e.HEAD("/healthz", func(c echo.Context) error { return c.NoContent(http.StatusOK) })
	e.GET("/metrics", echo.WrapHandler(m.Handler()))
	return e, nil
}

// newProbeWeb builds the probe API and page. The service's own servers are
// the one exception to the probe's refusal of loopback and private
// addresses, so that a support person can probe this very server.
func newProbeWeb(cfg *config.Config, cat *autoconfig.Catalog, cm *certs.Manager, m *metrics.Metrics, log *slog.Logger) (*probeweb.Handler, error) {
	var tokens []string
	if cfg.Probe.StaffTokensFile != "" {
		var err error
		if tokens, err = probeweb.LoadTokens(cfg.Probe.StaffTokensFile); err != nil {
			return nil, err
		}
	}
	// Asked at every probe run: after a SIGHUP reload the new certificate
	// is the one to trust.
	roots := func() *x509.CertPool { return cm.Pool(certs.SystemPool()) }
	own := []string{cfg.Hostname}
	for _, d := range cfg.Domains {
		own = append(own, d.Name, "autoconfig."+d.Name, "autodiscover."+d.Name)
		for _, s := range d.Servers {
			own = append(own, s.Host)
		}
	}
	var ports []int
	for _, s := range cfg.Listen.Services() {
		if p := config.Port(s.Addr); p > 0 {
			ports = append(ports, p)
		}
	}
	return probeweb.New(probeweb.Options{Catalog: cat, OwnHosts: own, OwnPorts: ports, RootCAs: roots,
		Resolver: cfg.DNS.Resolver, StaffTokens: tokens, EHLOName: cfg.Hostname, Metrics: m, Logger: log})
}

// jsonErrors answers echo's own errors (404 for unknown paths, 405) without
// leaking internals; anything unexpected is logged and answered 500 once.
func jsonErrors(log *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		code := http.StatusInternalServerError
		msg := "internal error"
		var he *echo.HTTPError
		if errors.As(err, &he) {
			code = he.Code
			msg = http.StatusText(code)
		} else {
			log.Error("http handler failed", "path", c.Request().URL.Path, "err", err)
		}
		if c.Request().Method == http.MethodHead {
			_ = c.NoContent(code)
			return
		}
		_ = c.String(code, msg+"\n")
	}
}

// printWelcome tells the operator where everything is (SPEC §3).
func printWelcome(w io.Writer, cfg *config.Config, cat *autoconfig.Catalog, cm *certs.Manager, lns []net.Listener, units []unit) {
	fmt.Fprintf(w, "mailconf %s is running (config: %s, data: %s)\n", version, cfg.Source, cfg.DataDir)
	if cm.SelfSigned() {
		fmt.Fprintf(w, "TLS: self-signed certificate %s (clients will warn; set [tls] for production)\n", cm.CertFile())
	}
	base := ""
	for i, u := range units {
		fmt.Fprintf(w, "  %-12s %s\n", u.name, lns[i].Addr())
		if u.name == "http" && base == "" {
			base = "http://" + lns[i].Addr().String()
		}
	}
	st, _ := cat.Lookup(cfg.Domains[0].Name)
	fmt.Fprintf(w, "Mail client settings for %s (username: %s):\n", st.Domain, map[autoconfig.UsernameForm]string{
		autoconfig.UsernameAddress: "the full address", autoconfig.UsernameLocalpart: "the part before the @"}[st.Username])
	for _, e := range append(append([]autoconfig.Endpoint(nil), st.Incoming...), st.Outgoing...) {
		sec := map[autoconfig.Security]string{autoconfig.TLS: "SSL/TLS", autoconfig.StartTLS: "STARTTLS"}[e.Security]
		fmt.Fprintf(w, "  %-5s %s port %d, %s, normal password\n", strings.ToUpper(string(e.Protocol)), e.Host, e.Port, sec)
	}
	if base == "" {
		return
	}
	d := cfg.Domains[0].Name
	fmt.Fprintf(w, "Open:\n  setup page        %s/setup?emailaddress=demo@%s\n", base, d)
	fmt.Fprintf(w, "  Thunderbird       %s/mail/config-v1.1.xml?emailaddress=demo@%s\n", base, d)
	fmt.Fprintf(w, "  Apple profile     %s/profile.mobileconfig?emailaddress=demo@%s\n", base, d)
	fmt.Fprintf(w, "  settings (JSON)   %s/api/v1/settings?emailaddress=demo@%s\n", base, d)
	fmt.Fprintf(w, "  probe             %s/probe\n", base)
}
