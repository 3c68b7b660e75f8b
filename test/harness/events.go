package harness

import (
	"sync"

	"github.com/csi-libstorage/csi-libstorage/backends"
)

// Events records what a backend reports through backends.Events: its
// takeovers and fences, in order, and a signal for each fence so a test
// can wait for one.
type Events struct {
	mu        sync.Mutex
	takeovers []backends.Takeover
	fences    []backends.Fence
	signal    chan struct{}
}

// NewEvents returns an empty recorder.
func NewEvents() *Events { return &Events{signal: make(chan struct{}, 16)} }

// Takeover implements backends.Events.
func (e *Events) Takeover(t backends.Takeover) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.takeovers = append(e.takeovers, t)
}

// Fenced implements backends.Events.
func (e *Events) Fenced(f backends.Fence) {
	e.mu.Lock()
	e.fences = append(e.fences, f)
	e.mu.Unlock()
	select {
	case e.signal <- struct{}{}:
	default: // nobody is waiting for this many
	}
}

// Takeovers returns the takeovers reported so far.
func (e *Events) Takeovers() []backends.Takeover {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]backends.Takeover(nil), e.takeovers...)
}

// Fences returns the fences reported so far.
func (e *Events) Fences() []backends.Fence {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]backends.Fence(nil), e.fences...)
}

// FenceSignals receives once for each fence reported (up to 16 unread).
func (e *Events) FenceSignals() <-chan struct{} { return e.signal }
