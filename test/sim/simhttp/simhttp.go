// Package simhttp holds the switches the HTTP storage simulators share: a
// delay before every answer, and injected faults that fail a call or let it
// take effect and lose its answer.
package simhttp

import (
	"net/http"
	"strings"
	"sync"
	"time"
)

// Fault makes calls whose path contains Path (and whose method is Method,
// if set) fail with Status and Message, or, with Drop, take effect and
// then lose their answer. Count is how many calls it hits (0: every call,
// until cleared).
type Fault struct {
	Method, Path string
	Status       int
	Message      string
	Drop         bool
	Count        int
}

// Switches are a simulator's delay and faults. The zero value has none.
type Switches struct {
	mu     sync.Mutex
	delay  time.Duration
	faults []*Fault
}

// SetDelay makes every answer wait d.
func (s *Switches) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// Inject adds a fault.
func (s *Switches) Inject(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &f)
}

// ClearFaults removes every fault.
func (s *Switches) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// Before waits the delay and returns the fault r hits, if any; ok is false
// when the caller went away while waiting.
func (s *Switches) Before(r *http.Request) (f *Fault, ok bool) {
	s.mu.Lock()
	delay := s.delay
	for i, c := range s.faults {
		if (c.Method == "" || c.Method == r.Method) && strings.Contains(r.URL.Path, c.Path) {
			f = c
			if c.Count > 0 {
				if c.Count--; c.Count == 0 {
					s.faults = append(s.faults[:i], s.faults[i+1:]...)
				}
			}
			break
		}
	}
	s.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return nil, false
		}
	}
	return f, true
}

// Drop closes the connection without an answer; false if w cannot.
func Drop(w http.ResponseWriter) bool {
	hj, ok := w.(http.Hijacker)
	if !ok {
		return false
	}
	c, _, err := hj.Hijack()
	if err != nil {
		return false
	}
	c.Close()
	return true
}
