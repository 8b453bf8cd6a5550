package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"mailconf/config"
	"mailconf/mailserver/store"
)

func queueCmd(t *testing.T, cfg *config.Config, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := runQueue(context.Background(), cfg, args, &out, &errb)
	return code, out.String(), errb.String()
}

func seedQueue(t *testing.T, cfg *config.Config) (int64, int64) {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, cfg.DataDir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	a, err := st.Enqueue(ctx, "alice@example.com", []string{"bob@remote.test", "carol@remote.test"}, strings.NewReader("Subject: a\r\n\r\nx\r\n"), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Reschedule(ctx, a, time.Now().Add(time.Hour), "bob@remote.test: 451 4.3.0 try\r\nlater"); err != nil {
		t.Fatal(err)
	}
	if err := st.SetRecipientStatus(ctx, a, store.RecipientUpdate{Rcpt: "carol@remote.test", Status: store.RcptDelivered}); err != nil {
		t.Fatal(err)
	}
	b, err := st.Enqueue(ctx, "", []string{"dave@remote.test"}, strings.NewReader("Subject: b\r\n\r\ny\r\n"), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	return a, b
}

func TestQueueList(t *testing.T) {
	cfg := userConfig(t)
	code, out, _ := queueCmd(t, cfg, "list")
	if code != exitOK || !strings.Contains(out, "empty") {
		t.Fatalf("empty list: %d %q", code, out)
	}
	a, b := seedQueue(t, cfg)
	code, out, errOut := queueCmd(t, cfg, "list")
	if code != exitOK {
		t.Fatalf("list: %d %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID") {
		t.Fatalf("table:\n%s", out)
	}
	for _, want := range []string{"alice@example.com", "bob@remote.test (1 of 2)", "451 4.3.0 try later"} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("row for %d lacks %q: %s", a, want, lines[1])
		}
	}
	if !strings.Contains(lines[2], "<>") || !strings.Contains(lines[2], "dave@remote.test") {
		t.Errorf("row for %d: %s", b, lines[2])
	}

	code, out, _ = queueCmd(t, cfg, "list", "--json")
	var es []store.QueueEntry
	if code != exitOK || json.Unmarshal([]byte(out), &es) != nil || len(es) != 2 || es[0].ID != a || len(es[0].Recipients) != 2 {
		t.Fatalf("list --json: %d %s", code, out)
	}
}

func TestQueueRetryAndDelete(t *testing.T) {
	cfg := userConfig(t)
	a, b := seedQueue(t, cfg)
	before := time.Now()
	if code, out, errOut := queueCmd(t, cfg, "retry", "1"); code != exitOK || !strings.Contains(out, "due now") {
		t.Fatalf("retry: %d %q %q", code, out, errOut)
	}
	_, out, _ := queueCmd(t, cfg, "list", "--json")
	var es []store.QueueEntry
	if err := json.Unmarshal([]byte(out), &es); err != nil {
		t.Fatal(err)
	}
	if es[0].ID != a || es[0].NextAttempt.After(time.Now()) || es[0].NextAttempt.Before(before.Add(-time.Second)) {
		t.Errorf("after retry next attempt = %v", es[0].NextAttempt)
	}
	if code, _, errOut := queueCmd(t, cfg, "delete", "2"); code != exitOK {
		t.Fatalf("delete: %d %s", code, errOut)
	}
	_, out, _ = queueCmd(t, cfg, "list", "--json")
	es = nil
	_ = json.Unmarshal([]byte(out), &es)
	if len(es) != 1 || es[0].ID != a {
		t.Fatalf("after deleting %d: %s", b, out)
	}
	for _, args := range [][]string{{"delete", "2"}, {"retry", "99"}} {
		code, _, errOut := queueCmd(t, cfg, args...)
		if code != exitFailure || !strings.Contains(errOut, "no queue entry") {
			t.Errorf("%v: %d %q, want exit 1", args, code, errOut)
		}
	}
}

func TestQueueUsage(t *testing.T) {
	cfg := userConfig(t)
	for _, args := range [][]string{
		{}, {"flush"}, {"retry"}, {"retry", "abc"}, {"retry", "-3"}, {"delete", "1", "2"}, {"list", "extra"}, {"list", "--bogus"},
	} {
		code, _, errOut := queueCmd(t, cfg, args...)
		if code != exitUsage || errOut == "" {
			t.Errorf("%v: exit %d (%q), want 2 with a message", args, code, errOut)
		}
	}
	if code, out, _ := queueCmd(t, cfg, "help"); code != exitOK || !strings.Contains(out, "usage") {
		t.Errorf("help: %d %q", code, out)
	}
}
