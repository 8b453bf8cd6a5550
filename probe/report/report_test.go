package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestSecretNeverPrints(t *testing.T) {
	s := NewSecret("hunter2")
	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("x", "pw", s, "group", slog.GroupValue(slog.Any("pw", s)))
	js, _ := json.Marshal(struct{ P Secret }{s})
	outs := []string{
		fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s %q %x", s, s, s, s, s, s), s.String(), s.GoString(),
		string(js), logs.String(), fmt.Sprintf("%v", struct{ P Secret }{s}),
	}
	for _, o := range outs {
		if strings.Contains(o, "hunter2") || !strings.Contains(o, "[redacted]") {
			t.Errorf("leak or no marker: %q", o)
		}
	}
	if s.Reveal() != "hunter2" || s.IsZero() || !NewSecret("").IsZero() {
		t.Error("Reveal/IsZero")
	}
}

func TestEveryCodeHasHint(t *testing.T) {
	for _, c := range Codes() {
		if Hint(c) == "" {
			t.Errorf("%s has no hint", c)
		}
	}
	if Hint(TLSAlertPrefix+"bad_certificate") == "" {
		t.Error("alert codes have no hint")
	}
}

func TestRecorderTreeOrder(t *testing.T) {
	var seen []Status
	r := NewRecorder(func(s Step) { seen = append(seen, s.Status) })
	a := r.Start("a", "", "A", nil)
	b := r.Start("b", "", "B", nil)
	b1 := r.Start("b.1", "b", "B1", nil)
	a1 := r.Start("a.1", "a", "A1", nil)
	a1.Fail(AuthFailed, "no", &Reply{Code: "NO"})
	b1.Skip("why")
	a.Pass("")
	b.Info("")
	var ids []string
	for _, s := range r.Steps() {
		ids = append(ids, s.ID)
	}
	if got := strings.Join(ids, " "); got != "a a.1 b b.1" {
		t.Errorf("order %s", got)
	}
	s, _ := r.Get("a.1")
	if s.Error.Class != AuthFailed || s.Hint == "" || s.Status != StatusFail {
		t.Errorf("%+v", s)
	}
	if len(seen) != 8 {
		t.Errorf("progress saw %d updates, want 8", len(seen))
	}
}

func TestTextColourOnlyWhenAsked(t *testing.T) {
	r := &Report{Schema: Schema, Summary: Summary{Status: OverallBroken}, Steps: []Step{{ID: "x", Title: "X", Status: StatusFail, Error: &StepError{Class: NetRefused, Message: "refused"}}}}
	var plain, col bytes.Buffer
	_ = Text(&plain, r, false)
	_ = Text(&col, r, true)
	if strings.Contains(plain.String(), "\x1b[") || !strings.Contains(col.String(), "\x1b[31m") {
		t.Error("colour handling")
	}
	if !strings.Contains(plain.String(), "[net.refused]") {
		t.Errorf("code missing:\n%s", plain.String())
	}
}
