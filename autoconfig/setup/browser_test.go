package setup

import (
	"bytes"
	"context"
	"flag"
	"image/png"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"
	"github.com/labstack/echo/v4"
	"howett.net/plist"

	"mailconf/autoconfig"
	"mailconf/autoconfig/apple"
	"mailconf/internal/testutil"
)

var screenshot = flag.String("screenshot", "", "write the browser test's phone screenshot to this PNG file (and the desktop one next to it)")

// TestBrowser drives headless Chromium through the page as a person would:
// open /, type the address, submit, read the settings, download the profile.
func TestBrowser(t *testing.T) {
	s := startServer(t, func(e *echo.Echo, svc *autoconfig.Service) {
		ap, err := apple.New(svc, nil)
		if err != nil {
			t.Fatal(err)
		}
		ap.Register(e)
	})

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	bctx := testutil.Chromium(ctx, t)

	// A phone: 390 CSS pixels wide, twice as many device pixels.
	const phoneWidth = 390
	if err := chromedp.Do(bctx,
		chromedp.EmulateViewport(phoneWidth, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile, chromedp.EmulatePortrait),
		chromedp.Navigate(s.URL+"/"),
		chromedp.WaitVisible(chromedp.ID("emailaddress")),
	); err != nil {
		t.Fatalf("open /: %v", err)
	}
	if n, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll("#settings").length`)); err != nil || n != 0 {
		t.Fatalf("settings on the bare form page (%d, %v)", n, err)
	}

	resp, err := chromedp.RunResponse(bctx,
		chromedp.SendKeys(chromedp.ID("emailaddress"), "alice@example.test"),
		chromedp.Click(chromedp.CSS(`form button[type=submit]`)),
	)
	if err != nil {
		t.Fatalf("submit the form: %v", err)
	}
	if resp.Status != http.StatusOK {
		t.Fatalf("form answer: status %d", resp.Status)
	}
	loc, err := chromedp.Run(bctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	if u, err := url.Parse(loc); err != nil || u.Path != "/setup" || u.Query().Get("emailaddress") != "alice@example.test" {
		t.Errorf("the form went to %s", loc)
	}
	if err := chromedp.Do(bctx, chromedp.WaitVisible(chromedp.ID("settings"))); err != nil {
		t.Fatalf("settings not visible: %v", err)
	}
	for id, want := range map[string][]string{
		"imap": {"Server mail.example.test", "Port 993", "Security SSL/TLS", "port 143 with STARTTLS"},
		"pop3": {"Server mail.example.test", "Port 995", "Security SSL/TLS", "port 110 with STARTTLS"},
		"smtp": {"Server mail.example.test", "Port 465", "Security SSL/TLS", "port 587 with STARTTLS", "Requires authentication yes, same username and password"},
	} {
		got, err := chromedp.Run(bctx, chromedp.Text(chromedp.ID(id)))
		if err != nil {
			t.Fatalf("read table #%s: %v", id, err)
		}
		got = strings.Join(strings.Fields(got), " ")
		for _, w := range want {
			if !strings.Contains(got, w) {
				t.Errorf("table #%s shows %q, missing %q", id, got, w)
			}
		}
	}

	// Readable on a phone: nothing wider than the screen, the QR code loaded.
	fits, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth <= window.innerWidth`))
	if err != nil || !fits {
		t.Errorf("page is wider than a %d px phone screen (%v)", phoneWidth, err)
	}
	qrWidth, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelector("#profile img").naturalWidth`))
	if err != nil || qrWidth != QRSize {
		t.Errorf("QR image natural width %d, want %d (%v)", qrWidth, QRSize, err)
	}
	shot(t, bctx, "phone", phoneWidth*2, *screenshot)

	// Follow the profile link: the browser downloads the profile.
	dir := t.TempDir()
	progress := chromedp.Events(bctx, browser.DownloadProgress)
	allow := true
	if err := chromedp.Do(bctx,
		chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			_, err := chromedp.Call(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
				Behavior:      browser.SetDownloadBehaviorBehaviorAllowAndName,
				DownloadPath:  dir,
				EventsEnabled: &allow,
			})
			return err
		}),
		chromedp.Click(chromedp.ID("profile-link")),
	); err != nil {
		t.Fatalf("click the profile link: %v", err)
	}
	var file string
	for ev, err := range progress {
		if err != nil {
			t.Fatalf("download: %v", err)
		}
		if ev.State == browser.DownloadProgressStateCanceled {
			t.Fatal("the profile download was cancelled")
		}
		if ev.State == browser.DownloadProgressStateCompleted {
			file = filepath.Join(dir, ev.GUID)
			break
		}
	}
	got, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("downloaded profile: %v", err)
	}
	var prof struct {
		PayloadType    string
		PayloadContent []struct {
			PayloadType                  string
			EmailAddress                 string
			IncomingMailServerHostName   string
			IncomingMailServerPortNumber int
			OutgoingMailServerHostName   string
			OutgoingMailServerPortNumber int
		}
	}
	if _, err := plist.Unmarshal(got, &prof); err != nil {
		t.Fatalf("downloaded profile is no plist: %v", err)
	}
	found := false
	for _, p := range prof.PayloadContent {
		if p.PayloadType != "com.apple.mail.managed" {
			continue
		}
		found = true
		if p.EmailAddress != "alice@example.test" || p.IncomingMailServerHostName != "mail.example.test" || p.IncomingMailServerPortNumber != 993 ||
			p.OutgoingMailServerHostName != "mail.example.test" || p.OutgoingMailServerPortNumber != 465 {
			t.Errorf("downloaded mail payload %+v, want alice@example.test on mail.example.test 993/465", p)
		}
	}
	if prof.PayloadType != "Configuration" || !found {
		t.Errorf("downloaded profile %q has no mail payload", prof.PayloadType)
	}

	if *screenshot != "" {
		if err := chromedp.Do(bctx, chromedp.EmulateViewport(1280, 900)); err != nil {
			t.Fatal(err)
		}
		shot(t, bctx, "desktop", 1280, strings.TrimSuffix(*screenshot, ".png")+"-desktop.png")
	}
}

// shot takes a full-page screenshot, checks it is a PNG of the viewport's
// width and writes it to path when path is not "".
func shot(t *testing.T, ctx context.Context, name string, width int, path string) {
	t.Helper()
	buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("%s screenshot: %v", name, err)
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(buf))
	if err != nil {
		t.Fatalf("%s screenshot: %v", name, err)
	}
	if cfg.Width != width {
		t.Errorf("%s screenshot is %d px wide, want %d", name, cfg.Width, width)
	}
	if path != "" {
		if err := os.WriteFile(path, buf, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
