package ec2sim

import (
	"fmt"
	"time"
)

// MaxModificationsPerDay is how many modifications EC2 accepts per volume
// in a rolling 24 hours; one more answers VolumeModificationRateExceeded.
const MaxModificationsPerDay = 4

// modificationWindow is the rolling window of MaxModificationsPerDay.
const modificationWindow = 24 * time.Hour

// checkModificationRate refuses a modification beyond EC2's per-volume
// daily allowance and otherwise counts it. Callers hold s.mu.
func (s *Server) checkModificationRate(v *volume, now time.Time) *apiError {
	kept := v.modStarts[:0]
	for _, t := range v.modStarts {
		if now.Sub(t) < modificationWindow {
			kept = append(kept, t)
		}
	}
	v.modStarts = kept
	if len(v.modStarts) >= MaxModificationsPerDay {
		next := v.modStarts[0].Add(modificationWindow)
		return errf("VolumeModificationRateExceeded", "You've reached the maximum modification rate per volume limit. Wait at least %s before modifying volume %s again.", next.Sub(now).Round(time.Minute), v.id)
	}
	v.modStarts = append(v.modStarts, now)
	return nil
}

// AgeModifications moves the modifications of volume id back in time by
// d, as if d had passed, so a test can leave the 24-hour window without
// waiting.
func (s *Server) AgeModifications(id string, d time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.volumes[id]
	if !ok {
		return fmt.Errorf("ec2sim: no volume %s", id)
	}
	for i := range v.modStarts {
		v.modStarts[i] = v.modStarts[i].Add(-d)
	}
	return nil
}

// SetVolumeError puts volume id into EC2's "error" state (the hardware
// under it failed), or, with on false, back into the state it had. While
// in error, the volume refuses attach, modify and snapshot with
// IncorrectState, as every state but available and in-use does.
func (s *Server) SetVolumeError(id string, on bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.volumes[id]
	if !ok {
		return fmt.Errorf("ec2sim: no volume %s", id)
	}
	switch {
	case on && v.state != "error":
		if v.state != "available" && v.state != "in-use" {
			return fmt.Errorf("ec2sim: volume %s is %s; only an available or in-use volume can fail", id, v.state)
		}
		v.stateBeforeError, v.state = v.state, "error"
	case !on && v.state == "error":
		v.state = v.stateBeforeError
	}
	return nil
}
