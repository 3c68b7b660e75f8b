package backends

import (
	"context"
	"time"

	"go.uber.org/zap"
)

// Takeover is one automatic move of a volume away from a holder that is
// provably gone or fenced (docs/failover.md). A backend takes a volume
// over only with a proof: the storage says the holder cannot write any
// more, or the holder's lease has expired.
type Takeover struct {
	Backend string
	// VolumeID is the backend's native id.
	VolumeID string
	// From is the node that held the volume; To the node that takes it,
	// empty when the dead holder's attachment is only removed (a
	// ControllerUnpublish for the dead node).
	From, To string
	// Proof names what showed the holder cannot write: "lease-expired",
	// "instance-stopped", "instance-terminated", "sdc-disconnected".
	Proof string
	// LeaseAge is how long ago the holder last renewed its lease, for
	// lease proofs.
	LeaseAge time.Duration
}

// Fence is a node fencing itself: it could not renew its lease in time,
// so it made its devices of the backend read-only before another node may
// take them; or, starting again after its plugin died, it found volumes
// it still had connected attached elsewhere (TakenWhileDown).
type Fence struct {
	Backend string
	// Volumes are the native ids whose devices were set read-only.
	Volumes []string
	Reason  string
	// TakenWhileDown: the volumes were taken over or force-detached
	// while the node's plugin was not running, and the node fenced them
	// when it started again. The two causes call for different operator
	// action (a pool the node cannot reach, a plugin that died), so they
	// are logged apart.
	TakenWhileDown bool
}

// Events receives the decisions a backend makes on its own that an
// operator must be able to see and count. Backends call it after the
// decision is durable. A nil Events is valid and reports nothing.
type Events interface {
	Takeover(Takeover)
	Fenced(Fence)
}

// LogEvents returns Events that log each event at warning level and pass
// it on to next (which may be nil).
func LogEvents(log *zap.Logger, next Events) Events {
	if log == nil {
		log = zap.NewNop()
	}
	return logEvents{log: log, next: next}
}

type logEvents struct {
	log  *zap.Logger
	next Events
}

func (e logEvents) Takeover(t Takeover) {
	e.log.Warn("volume taken over from a node that cannot write any more",
		zap.String("backend", t.Backend), zap.String("id", t.VolumeID),
		zap.String("from", t.From), zap.String("to", t.To),
		zap.String("proof", t.Proof), zap.Duration("leaseAge", t.LeaseAge))
	if e.next != nil {
		e.next.Takeover(t)
	}
}

func (e logEvents) Fenced(f Fence) {
	if f.TakenWhileDown {
		e.log.Error("node fenced volumes read-only at start-up: they were taken over or force-detached while its plugin was not running, and its mounts of them must not write; they stay read-only until unstaged",
			zap.String("backend", f.Backend), zap.Strings("ids", f.Volumes), zap.String("reason", f.Reason))
		if e.next != nil {
			e.next.Fenced(f)
		}
		return
	}
	e.log.Error("node fenced its volumes read-only: it could not renew its lease; they stay read-only until unstaged",
		zap.String("backend", f.Backend), zap.Strings("ids", f.Volumes), zap.String("reason", f.Reason))
	if e.next != nil {
		e.next.Fenced(f)
	}
}

// LeaseKeeper is implemented by backends whose nodes prove they are alive
// by renewing a lease on the storage (the file pool). The node service
// calls KeepLease once at start-up.
type LeaseKeeper interface {
	// KeepLease renews this node's lease in the background until ctx is
	// done, and fences the node's volumes when it cannot renew in time.
	// It returns once the first renewal is made, or with its error.
	KeepLease(ctx context.Context) error
}
