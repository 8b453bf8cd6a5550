package testutil

import (
	"context"
	"testing"

	"github.com/chromedp/chromedp"
)

// Chromium starts headless Debian chromium for t and returns a chromedp
// context for one tab. The browser stops when ctx is done or t ends.
// The flags keep it from reaching the network on its own (updates, sync)
// and from running out of /dev/shm in containers; the profile lives in a
// fresh temporary directory, so tests never share state.
func Chromium(ctx context.Context, t testing.TB) context.Context {
	t.Helper()
	bin := Tool(t, "chromium", "chromium")
	actx, acancel := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(bin),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	bctx, bcancel := chromedp.NewContext(actx)
	// Registered after t.TempDir's own clean-up, so it runs first: the
	// browser is gone before its profile directory is removed.
	t.Cleanup(func() {
		bcancel()
		acancel()
	})
	return bctx
}
