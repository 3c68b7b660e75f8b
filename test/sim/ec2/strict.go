package ec2sim

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"
)

// What makes the server as strict as EC2 rather than kinder: eventual
// consistency, attachment states a client must not wait on, stuck
// attachments, asynchronous create and snapshot failures, throttling,
// the documented device names and per-instance attachment limits.
type strictState struct {
	lag        map[string]time.Duration // action → how long its effect stays invisible
	buckets    map[string]*bucket
	stuck      map[string]bool // instance+" "+device: attachments there never complete
	failCreate []string        // messages: the next creates vanish while "creating"
	failSnap   []string        // messages: the next snapshots go to "error"
	tokenTTL   time.Duration
	snapDelay  time.Duration // 0: the state delay
	noCopy     bool          // CopyVolumes is not offered in the region
}

type bucket struct {
	tokens, burst, perSec float64
	last                  time.Time
}

func (st *strictState) init() {
	if st.lag == nil {
		st.lag, st.buckets, st.stuck = map[string]time.Duration{}, map[string]*bucket{}, map[string]bool{}
	}
}

// SetLag makes the effect of action stay invisible to DescribeVolumes and
// DescribeInstances for d after each call, as EC2 documents for its
// eventually consistent API:
//
//   - "CreateVolume": the new volume is InvalidVolume.NotFound by id and
//     missing from filtered lists;
//   - "AttachVolume": the volume still shows "available" without the new
//     attachment (while AttachVolume itself already answers VolumeInUse).
//
// d = 0 switches the lag off and ends the windows still open.
func (s *Server) SetLag(action string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.strict.init()
	s.strict.lag[action] = d
	if d > 0 {
		return
	}
	for _, v := range s.volumes {
		switch {
		case action == "CreateVolume":
			v.visibleAt = time.Time{}
		case action == "AttachVolume" && v.att != nil:
			v.att.visibleAt = time.Time{}
		}
	}
}

func (s *Server) visibleAt(action string) time.Time {
	s.strict.init()
	return time.Now().Add(s.strict.lag[action])
}

// Throttle gives action a token bucket of burst requests refilled at
// perSecond; an empty bucket answers RequestLimitExceeded (HTTP 503), as
// EC2's per-API request rate limits do. burst 0 removes the bucket.
func (s *Server) Throttle(action string, burst int, perSecond float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.strict.init()
	if burst <= 0 {
		delete(s.strict.buckets, action)
		return
	}
	s.strict.buckets[action] = &bucket{tokens: float64(burst), burst: float64(burst), perSec: perSecond, last: time.Now()}
}

// throttled takes a token for action. Callers hold s.mu.
func (s *Server) throttled(action string) *apiError {
	b := s.strict.buckets[action]
	if b == nil {
		return nil
	}
	now := time.Now()
	b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.perSec)
	b.last = now
	if b.tokens < 1 {
		return &apiError{Code: "RequestLimitExceeded", Message: "Request limit exceeded.", Status: 503}
	}
	b.tokens--
	return nil
}

// StickDevice makes every attachment of a volume to instance as device stay
// "attaching" for ever, as EC2 attachments sometimes do when a device name
// was used before on the instance. A forced detach still ends it.
func (s *Server) StickDevice(instance, device string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.strict.init()
	s.strict.stuck[instance+" "+device] = true
}

// SetAttachmentState forces the state of volume's attachment, e.g. "busy"
// (EC2's state for an attachment in transition); the volume must be
// attached.
func (s *Server) SetAttachmentState(volumeID, state string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.volumes[volumeID]
	if !ok || v.att == nil {
		return fmt.Errorf("ec2sim: volume %s has no attachment", volumeID)
	}
	v.att.state = state
	return nil
}

// FailCreates makes the next n created volumes disappear while "creating"
// (EC2 deletes a volume it cannot create, e.g. when it may not use the KMS
// key); their client tokens stay burnt.
func (s *Server) FailCreates(n int, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.strict.failCreate = append(s.strict.failCreate, reason)
	}
}

// FailSnapshots makes the next n snapshots end in "error" instead of
// "completed".
func (s *Server) FailSnapshots(n int, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.strict.failSnap = append(s.strict.failSnap, reason)
	}
}

// SetSnapshotDelay makes snapshots take d to complete (or fail); 0: the
// state delay.
func (s *Server) SetSnapshotDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.strict.snapDelay = d
}

// DisableCopyVolumes makes CopyVolumes answer UnsupportedOperation, as in
// a region that does not offer it.
func (s *Server) DisableCopyVolumes() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.strict.noCopy = true
}

// SetTokenTTL makes CreateVolume forget client tokens older than d (EC2
// keeps them for hours); 0 keeps them for ever.
func (s *Server) SetTokenTTL(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.strict.tokenTTL = d
}

// takeFailure pops the next queued failure reason. Callers hold s.mu.
func takeFailure(q *[]string) (string, bool) {
	if len(*q) == 0 {
		return "", false
	}
	r := (*q)[0]
	*q = (*q)[1:]
	return r, true
}

// reDocumentedDevice is the set of Linux device names EC2 documents for
// EBS volumes on HVM instances: /dev/sd[a-z] (with an optional partition
// number 1-15, as in the root name /dev/sda1), /dev/xvd[e-z] (and the
// root names /dev/xvd[a-d]), /dev/xvd[a-c][a-z] and /dev/xvdd[a-x]. EC2
// refuses /dev/xvddy and everything after it.
var reDocumentedDevice = regexp.MustCompile(`^/dev/(sd[a-z]([1-9]|1[0-5])?|xvd[a-z]|xvd[a-c][a-z]|xvdd[a-x])$`)

// attachmentLimit is how many volumes an instance takes (root included),
// after its network interfaces and instance-store volumes where they share
// the slots.
func attachmentLimit(in *Instance) int {
	if in.MaxAttachments > 0 {
		return in.MaxAttachments
	}
	enis := max(in.NetworkInterfaces, 1)
	if xenFamily(in.InstanceType) {
		return 40 // Xen: EC2 supports up to 40 volumes, ENIs not counted
	}
	return 28 - enis - in.InstanceStoreVolumes // Nitro: 28 slots shared
}

func xenFamily(instanceType string) bool {
	for _, f := range []string{"t2.", "m4.", "c4.", "r4.", "x1.", "x1e.", "d2.", "i3.", "p2.", "p3.", "g3.", "m3.", "c3.", "r3.", "h1.", "f1."} {
		if len(instanceType) > len(f) && instanceType[:len(f)] == f {
			return true
		}
	}
	return false
}

// SnapshotInfo is a read-only view of a simulated snapshot.
type SnapshotInfo struct {
	ID, VolumeID, State string
	Tags                map[string]string
}

// Snapshots lists the snapshots that exist, sorted by id.
func (s *Server) Snapshots() []SnapshotInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]SnapshotInfo, 0, len(s.snapshots))
	for _, sn := range s.snapshots {
		out = append(out, SnapshotInfo{ID: sn.id, VolumeID: sn.volumeID, State: sn.state, Tags: maps.Clone(sn.tags)})
	}
	slices.SortFunc(out, func(a, b SnapshotInfo) int { return strings.Compare(a.ID, b.ID) })
	return out
}
