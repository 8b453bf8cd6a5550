package accounts

import (
	"runtime/debug"
	"sync"
	"time"
)

// Every password check holds an argon2id work area (19 MiB with the
// default parameters) that is garbage as soon as the check ends. A burst
// of logins (clients reconnecting after a restart or a network change)
// leaves the heap grown by many of them, and the runtime hands such memory
// back to the OS only slowly, so the resident size of a server holding
// only idle connections stays several times what it uses. The trimmer
// returns that memory once a login burst is over.
const (
	// trimQuiet is how long logins must pause before the trim runs.
	trimQuiet = time.Second
	// trimMaxDelay bounds how long a steady stream of logins postpones it.
	trimMaxDelay = 10 * time.Second
)

// memTrimmer runs release (debug.FreeOSMemory) once logins have paused for
// trimQuiet, or at the latest trimMaxDelay after the first login of a
// burst. The release forces a collection, so it runs at most once per
// burst, never per login.
type memTrimmer struct {
	release func()
	now     func() time.Time

	mu    sync.Mutex
	timer *time.Timer
	first time.Time // first login of the current burst (zero: none pending)
	last  time.Time // latest login of the current burst
}

func newMemTrimmer() *memTrimmer {
	return &memTrimmer{release: debug.FreeOSMemory, now: time.Now}
}

// loginDone records one finished password check.
func (t *memTrimmer) loginDone() {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	t.last = now
	if t.first.IsZero() {
		t.first = now
		t.timer = time.AfterFunc(trimQuiet, t.fire)
	}
}

func (t *memTrimmer) fire() {
	t.mu.Lock()
	now := t.now()
	if wait := t.last.Add(trimQuiet).Sub(now); wait > 0 && now.Sub(t.first) < trimMaxDelay {
		t.timer.Reset(min(wait, t.first.Add(trimMaxDelay).Sub(now)))
		t.mu.Unlock()
		return
	}
	t.first, t.timer = time.Time{}, nil
	t.mu.Unlock()
	t.release()
}

// stop cancels a pending trim (server shutdown).
func (t *memTrimmer) stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.timer != nil {
		t.timer.Stop()
		t.timer, t.first = nil, time.Time{}
	}
}
