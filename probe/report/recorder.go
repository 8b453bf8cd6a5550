package report

import (
	"sync"
	"time"
)

// Recorder collects steps from parallel checks. Progress, when set, sees
// every step as it starts and as it finishes; it runs under the recorder's
// lock (so updates arrive in order) and must not call back into it.
type Recorder struct {
	mu       sync.Mutex
	steps    map[string]*Step
	seq      int
	progress func(Step)
	now      func() time.Time
}

// NewRecorder returns a recorder that reports to progress (may be nil).
func NewRecorder(progress func(Step)) *Recorder {
	return &Recorder{steps: map[string]*Step{}, progress: progress, now: time.Now}
}

// Handle finishes one started step.
type Handle struct {
	r     *Recorder
	id    string
	start time.Time
}

// ID is the step's id.
func (h *Handle) ID() string { return h.id }

// Start records a running step. An id that already exists is replaced.
func (r *Recorder) Start(id, parent, title string, target *Target) *Handle {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seq++
	s := &Step{ID: id, Parent: parent, Title: title, Status: StatusRunning, StartedAt: now, Target: target, seq: r.seq}
	r.steps[id] = s
	r.emit(s)
	return &Handle{r: r, id: id, start: now}
}

func (r *Recorder) emit(s *Step) {
	if r.progress != nil {
		r.progress(*s)
	}
}

// Finish sets the step's final status. A code fills in the error class, the
// hint and the references.
func (h *Handle) Finish(st Status, code Code, msg string, reply *Reply) {
	d := h.r.now().Sub(h.start)
	h.r.mu.Lock()
	defer h.r.mu.Unlock()
	s := h.r.steps[h.id]
	s.Status = st
	s.DurationMS = d.Milliseconds()
	switch {
	case code != "" && st == StatusSkipped:
		s.SkipReason = msg
		s.Error = &StepError{Class: code, Message: msg}
	case code != "":
		s.Error = &StepError{Class: code, Message: msg, ServerReply: reply}
		s.Hint = Hint(code)
		s.Refs = Refs(code)
	case st == StatusSkipped:
		s.SkipReason = msg
	default:
		s.Detail = msg
	}
	h.r.emit(s)
}

// Pass finishes the step successfully with an optional detail.
func (h *Handle) Pass(detail string) { h.Finish(StatusPass, "", detail, nil) }

// Info finishes the step as informational.
func (h *Handle) Info(detail string) { h.Finish(StatusInfo, "", detail, nil) }

// Skip finishes the step as skipped.
func (h *Handle) Skip(reason string) { h.Finish(StatusSkipped, "", reason, nil) }

// Fail finishes the step as failed with a code and the server's reply.
func (h *Handle) Fail(code Code, msg string, reply *Reply) { h.Finish(StatusFail, code, msg, reply) }

// Warn finishes the step with a warning code.
func (h *Handle) Warn(code Code, msg string, reply *Reply) { h.Finish(StatusWarn, code, msg, reply) }

// SetTranscript links the step to a transcript id.
func (h *Handle) SetTranscript(id string) {
	h.r.mu.Lock()
	defer h.r.mu.Unlock()
	h.r.steps[h.id].Transcript = id
}

// SetDetail sets the human-readable detail without finishing.
func (h *Handle) SetDetail(d string) {
	h.r.mu.Lock()
	defer h.r.mu.Unlock()
	h.r.steps[h.id].Detail = d
}

// Get returns a copy of a step.
func (r *Recorder) Get(id string) (Step, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.steps[id]
	if !ok {
		return Step{}, false
	}
	return *s, true
}

// Steps returns every step in tree order: parents before children,
// siblings in the order they started.
func (r *Recorder) Steps() []Step {
	r.mu.Lock()
	defer r.mu.Unlock()
	children := map[string][]*Step{}
	for _, s := range r.steps {
		p := s.Parent
		if _, ok := r.steps[p]; !ok {
			p = ""
		}
		children[p] = append(children[p], s)
	}
	for _, list := range children {
		sortBySeq(list)
	}
	out := make([]Step, 0, len(r.steps))
	var walk func(id string)
	walk = func(id string) {
		for _, s := range children[id] {
			out = append(out, *s)
			walk(s.ID)
		}
	}
	walk("")
	return out
}

func sortBySeq(list []*Step) {
	for i := 1; i < len(list); i++ {
		for j := i; j > 0 && list[j].seq < list[j-1].seq; j-- {
			list[j], list[j-1] = list[j-1], list[j]
		}
	}
}
