package web

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"mailconf/internal/testutil"
)

// TestBrowser drives headless Chromium through the probe page: type the
// address and password, run, watch the steps arrive while the probe runs,
// see the final verdict, the matrix and the ticket text.
func TestBrowser(t *testing.T) {
	e := newEnv(t, nil)
	// A slow IMAP greeting keeps the probe running long enough to watch.
	e.imap.GreetDelay = 1200 * time.Millisecond

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	bctx := testutil.Chromium(ctx, t)

	if err := chromedp.Do(bctx,
		chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile),
		chromedp.Navigate(e.srv.URL+PathPage),
		chromedp.WaitVisible(chromedp.ID("address")),
		chromedp.SendKeys(chromedp.ID("address"), address),
		chromedp.SendKeys(chromedp.ID("password"), password),
		chromedp.Click(chromedp.ID("run")),
		chromedp.WaitVisible(chromedp.CSS(`#live-steps li`)),
	); err != nil {
		t.Fatalf("open the page and run: %v", err)
	}
	// Steps are on the page while the report is not: they arrive live.
	live, err := chromedp.Run(bctx, chromedp.Evaluate[[]int](`[document.querySelectorAll("#live-steps li").length, document.querySelectorAll("#report").length]`))
	if err != nil {
		t.Fatal(err)
	}
	if live[0] == 0 || live[1] != 0 {
		t.Fatalf("while running: %d live steps, %d reports", live[0], live[1])
	}
	if err := chromedp.Do(bctx, chromedp.WaitVisible(chromedp.ID("verdict"))); err != nil {
		t.Fatalf("no verdict: %v", err)
	}
	type state struct {
		Status  string `json:"status"`
		Verdict string `json:"verdict"`
		Steps   int    `json:"steps"`
		Running int    `json:"running"`
		Rows    int    `json:"rows"`
		Ticket  string `json:"ticket"`
		Copy    bool   `json:"copy"`
		Fits    bool   `json:"fits"`
		URL     string `json:"url"`
	}
	st, err := chromedp.Run(bctx, chromedp.Evaluate[state](`({
		status: document.getElementById("verdict").dataset.status,
		verdict: document.getElementById("verdict").textContent,
		steps: document.querySelectorAll("#live-steps li").length,
		running: document.querySelectorAll('#live-steps li[data-status="running"]').length,
		rows: document.querySelectorAll("#matrix tbody tr").length,
		ticket: document.getElementById("ticket").textContent,
		copy: !document.getElementById("copy").hidden,
		fits: document.documentElement.scrollWidth <= window.innerWidth,
		url: location.href
	})`))
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != "ok" && st.Status != "ok_with_warnings" {
		t.Errorf("verdict %q (%s)", st.Status, st.Verdict)
	}
	if st.Steps < live[0] || st.Steps < 10 || st.Running != 0 {
		t.Errorf("live steps: %d at the end (%d still running), %d while running", st.Steps, st.Running, live[0])
	}
	if st.Rows != 2 {
		t.Errorf("matrix has %d rows, want 2 (IMAP and SMTP on one address)", st.Rows)
	}
	if !strings.HasPrefix(st.Ticket, "Probe of a***@example.test (auth)") || strings.Contains(st.Ticket, password) || !st.Copy {
		t.Errorf("ticket text %q, copy button shown %v", st.Ticket[:min(60, len(st.Ticket))], st.Copy)
	}
	if !st.Fits {
		t.Error("the page is wider than a phone screen")
	}
	if st.URL != e.srv.URL+PathPage {
		t.Errorf("the page navigated to %s (the script did not take over the form)", st.URL)
	}
	html, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.documentElement.outerHTML`))
	if err != nil || strings.Contains(html, password) {
		t.Errorf("the password is in the page (%v)", err)
	}
	if e.imap.Logins() != 1 || e.smtp.Logins() != 1 {
		t.Errorf("logins IMAP %d SMTP %d", e.imap.Logins(), e.smtp.Logins())
	}
}
