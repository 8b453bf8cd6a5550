package web

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"mailconf/probe/report"
)

// keepAlive is how often an idle event stream gets a comment line, so that
// proxies do not cut a long probe off.
const keepAlive = 15 * time.Second

// stepQueue decouples the probe's Progress callback (called under the
// recorder's lock, so it must not block on a slow client) from the writer.
// It holds at most the steps of one run.
type stepQueue struct {
	mu     sync.Mutex
	steps  []report.Step
	notify chan struct{}
}

func newStepQueue() *stepQueue { return &stepQueue{notify: make(chan struct{}, 1)} }

func (q *stepQueue) push(s report.Step) {
	q.mu.Lock()
	q.steps = append(q.steps, s)
	q.mu.Unlock()
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

func (q *stepQueue) take() []report.Step {
	q.mu.Lock()
	defer q.mu.Unlock()
	s := q.steps
	q.steps = nil
	return s
}

// doneEvent is the last event of a stream: the verdict, the final report
// rendered for the page, and the redacted text for a ticket.
type doneEvent struct {
	Status   report.Overall `json:"status"`
	Headline string         `json:"headline"`
	HTML     string         `json:"html"`
	Text     string         `json:"text"`
}

// stream answers with server-sent events: "step" for every step as it
// starts and finishes, then "report" (the JSON report) and "done".
// A refusal found after the stream started is an "error" event.
func (h *Handler) stream(c echo.Context, in *input) error {
	w := c.Response()
	w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no") // nginx: pass events through at once
	w.WriteHeader(http.StatusOK)
	w.Flush()

	q := newStepQueue()
	type result struct {
		rep *report.Report
		err *apiError
	}
	done := make(chan result, 1)
	go func() {
		rep, err := h.run(c.Request().Context(), in, q.push)
		done <- result{rep, err}
	}()
	tick := time.NewTicker(keepAlive)
	defer tick.Stop()
	for {
		select {
		case <-q.notify:
			for _, s := range q.take() {
				if err := writeEvent(w, "step", s); err != nil {
					<-done
					return nil
				}
			}
		case <-tick.C:
			if _, err := fmt.Fprint(w, ": still probing\n\n"); err != nil {
				<-done
				return nil
			}
			w.Flush()
		case res := <-done:
			for _, s := range q.take() {
				_ = writeEvent(w, "step", s)
			}
			if res.err != nil {
				_ = writeEvent(w, "error", res.err)
				return nil
			}
			_ = writeEvent(w, "report", res.rep)
			ev := doneEvent{Status: res.rep.Summary.Status, Headline: res.rep.Summary.Headline}
			view := newReportView(res.rep)
			ev.Text = view.Ticket
			var b bytes.Buffer
			if err := h.page.ExecuteTemplate(&b, "report", view); err != nil {
				h.log.Error("probe page: render report", "err", err)
				_ = writeEvent(w, "error", &apiError{Status: http.StatusInternalServerError, Message: "the report could not be rendered"})
				return nil
			}
			ev.HTML = b.String()
			_ = writeEvent(w, "done", ev)
			return nil
		}
	}
}

// writeEvent writes one event; JSON has no raw newlines, so one data line
// carries it.
func writeEvent(w *echo.Response, name string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("probe/web: event %s: %w", name, err)
	}
	if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", name, data); err != nil {
		return err
	}
	w.Flush()
	return nil
}
