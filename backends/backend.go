// Package backends defines the contract between the CSI services and the
// storage systems behind them. Each storage type lives in a package of its
// own below this one; the services see only these interfaces, so a new
// storage type never changes controller or node code.
package backends

import (
	"context"
	"errors"
	"fmt"
)

// Errors a backend returns so that the services can pick the right gRPC code
// without knowing the storage system. Wrap them with context:
// fmt.Errorf("attach %s: %w", id, backends.ErrNotFound).
var (
	// ErrNotFound: the volume (or snapshot) does not exist.
	ErrNotFound = errors.New("not found")
	// ErrNodeNotFound: the node named in an attach is unknown to the storage.
	ErrNodeNotFound = errors.New("node not found")
	// ErrAlreadyExists: a volume of that name exists with other attributes.
	ErrAlreadyExists = errors.New("already exists with different attributes")
	// ErrInUse: the volume is attached and the operation needs it detached.
	ErrInUse = errors.New("volume in use")
	// ErrConflict: the attach would break the volume's access mode, such as a
	// second writer on another node.
	ErrConflict = errors.New("conflicting attachment")
	// ErrInvalid: a parameter the caller gave is not acceptable.
	ErrInvalid = errors.New("invalid argument")
	// ErrCapacity: the storage has no room for the request.
	ErrCapacity = errors.New("insufficient capacity")
	// ErrOutOfRange: the requested size cannot be met within the given limits.
	ErrOutOfRange = errors.New("size out of range")
	// ErrUnavailable: the storage is temporarily unreachable or throttling;
	// the caller should retry.
	ErrUnavailable = errors.New("storage unavailable")
	// ErrLimit: a per-node or per-account limit is reached.
	ErrLimit = errors.New("limit reached")
	// ErrUnsupported: the backend cannot do this at all.
	ErrUnsupported = errors.New("not supported by this backend")
	// ErrPermission: the storage refused the plugin's credentials or role.
	ErrPermission = errors.New("permission denied by the storage")
)

// AccessMode mirrors the CSI access modes so backends need not import CSI.
type AccessMode int

const (
	AccessUnknown AccessMode = iota
	SingleNodeWriter
	SingleNodeReaderOnly
	MultiNodeReaderOnly
	MultiNodeSingleWriter
	MultiNodeMultiWriter
	SingleNodeSingleWriter
	SingleNodeMultiWriter
)

func (m AccessMode) String() string {
	switch m {
	case SingleNodeWriter:
		return "SINGLE_NODE_WRITER"
	case SingleNodeReaderOnly:
		return "SINGLE_NODE_READER_ONLY"
	case MultiNodeReaderOnly:
		return "MULTI_NODE_READER_ONLY"
	case MultiNodeSingleWriter:
		return "MULTI_NODE_SINGLE_WRITER"
	case MultiNodeMultiWriter:
		return "MULTI_NODE_MULTI_WRITER"
	case SingleNodeSingleWriter:
		return "SINGLE_NODE_SINGLE_WRITER"
	case SingleNodeMultiWriter:
		return "SINGLE_NODE_MULTI_WRITER"
	}
	return fmt.Sprintf("AccessMode(%d)", int(m))
}

// ParseAccessMode reads the name String gives a mode; ok is false for any
// other text.
func ParseAccessMode(s string) (AccessMode, bool) {
	for m := SingleNodeWriter; m <= SingleNodeMultiWriter; m++ {
		if m.String() == s {
			return m, true
		}
	}
	return AccessUnknown, false
}

// MultiNode reports whether the mode lets more than one node use the volume.
func (m AccessMode) MultiNode() bool {
	return m == MultiNodeReaderOnly || m == MultiNodeSingleWriter || m == MultiNodeMultiWriter
}

// ReadOnly reports whether the mode allows no writer at all.
func (m AccessMode) ReadOnly() bool {
	return m == SingleNodeReaderOnly || m == MultiNodeReaderOnly
}

// Volume is what a backend knows about one volume.
type Volume struct {
	// ID is the backend's native id, unique within the backend instance. The
	// services prefix it with the instance name to form the CSI volume id.
	ID   string
	Name string
	// CapacityBytes is the provisioned size.
	CapacityBytes int64
	// Parameters are the creation parameters as the backend accepted them.
	Parameters map[string]string
	// Modes are the access modes the volume was created for.
	Modes []AccessMode
	// Block is true when the volume was created for raw block access only.
	Block bool
	// Attachments lists the nodes the volume is attached to.
	Attachments []Attachment
	// Formatted is the filesystem type once the node side has formatted the
	// volume, FormattedRaw once it has been handed out as a raw block
	// device, and empty while it has never been used. It is the first guard
	// of invariant 1: a volume with a mark is never formatted again.
	Formatted string
	// Zone is the topology zone, if the backend has zones.
	Zone string
	// SourceSnapshot and SourceVolume say what the volume was created
	// from, natively, if anything.
	SourceSnapshot string
	SourceVolume   string
}

// TopologyZoneKey is the topology segment that carries a backend's zone.
const TopologyZoneKey = "topology.csi.libstorage.io/zone"

// FormattedRaw marks a volume whose content belongs to a raw block user: it
// must never be formatted, whatever a probe says about it.
const FormattedRaw = "raw"

// Attachment is one node's use of a volume.
type Attachment struct {
	Node     string
	ReadOnly bool
	Mode     AccessMode
	// ByNode: the node service attached the volume itself because no
	// ControllerPublish came first (the Mesos volume/csi isolator never
	// sends one); the node detaches it again on unstage.
	ByNode bool
	// Connected: the node has the volume's device in use (between Connect
	// and Disconnect). Detach refuses such an attachment; only an
	// operator's ForceDetach takes it away.
	Connected bool
}

// AttachedTo returns the attachment for node, if any.
func (v *Volume) AttachedTo(node string) (Attachment, bool) {
	for _, a := range v.Attachments {
		if a.Node == node {
			return a, true
		}
	}
	return Attachment{}, false
}

// CreateRequest asks for a new volume. Backends must treat a repeat with the
// same Name and compatible attributes as a success that returns the existing
// volume, and an incompatible repeat as ErrAlreadyExists.
type CreateRequest struct {
	Name string
	// RequiredBytes and LimitBytes follow CSI: 0 means unset.
	RequiredBytes int64
	LimitBytes    int64
	// Parameters holds the validated creation parameters: the keys common
	// to all backends (fsType, …) and the keys the backend declared in
	// Parameters(). The backend stores them with the volume.
	Parameters map[string]string
	Modes      []AccessMode
	Block      bool
	// FSType is the filesystem the caller asked for, if any; some backends
	// need it to pick a minimum size.
	FSType string
	// Zones the volume may be placed in, in order of preference; empty when
	// the caller has no preference.
	Zones []string
	// SourceSnapshot or SourceVolume, when set, name (natively) what the new
	// volume starts as a copy of. Only backends whose Capabilities say
	// Clone get them.
	SourceSnapshot string
	SourceVolume   string
}

// Capabilities says what a backend can do. The services advertise only what
// the backends support.
type Capabilities struct {
	// AttachRequired: ControllerPublish must run before the node can connect.
	AttachRequired bool
	Block          bool
	Mount          bool
	// FilesystemTypes is set by backends that hand the node a mountable
	// filesystem (NFS) instead of a block device to format: the fs_type
	// values they accept.
	FilesystemTypes []string
	// MultiNode lists the multi-node access modes supported for mount and
	// for block access.
	MultiNodeMount []AccessMode
	MultiNodeBlock []AccessMode
	// Topology: volumes live in zones and nodes report their zone.
	Topology bool
	// Clone: Create accepts SourceSnapshot and SourceVolume.
	Clone bool
}

// Supports reports whether the backend can serve mode with the given access
// type.
func (c Capabilities) Supports(mode AccessMode, block bool) bool {
	if block && !c.Block || !block && !c.Mount {
		return false
	}
	if !mode.MultiNode() {
		return mode != AccessUnknown
	}
	list := c.MultiNodeMount
	if block {
		list = c.MultiNodeBlock
	}
	for _, m := range list {
		if m == mode {
			return true
		}
	}
	return false
}

// Device is what the node side gets from Connect.
type Device struct {
	// Path is a block device node (/dev/loop3, /dev/nvme1n1), or for a
	// filesystem backend the mount source (server:/export/dir).
	Path string
	// FSType is set only by filesystem backends ("nfs").
	FSType string
	// MountOptions are extra options a filesystem backend needs.
	MountOptions []string
	// Dir: Path is a directory on this node that is bind-mounted at the
	// staging path (a libStorage vfs volume), nothing to format.
	Dir bool
}

// Backend is one configured storage instance. All methods must be safe for
// concurrent use on different volumes and idempotent; the services serialize
// calls on the same volume within one process, but several plugin processes
// (one per node) may share the storage, so a backend guards its own shared
// state.
type Backend interface {
	// Name is the instance name from the configuration.
	Name() string
	Capabilities() Capabilities
	// Parameters lists the CreateVolume parameter keys the backend accepts.
	Parameters() []string
	// Probe returns an error when the storage cannot serve requests.
	Probe(ctx context.Context) error

	Create(ctx context.Context, req CreateRequest) (*Volume, error)
	// Delete removes a volume. A missing volume is not an error. A volume
	// that is still attached gives ErrInUse.
	Delete(ctx context.Context, id string) error
	Get(ctx context.Context, id string) (*Volume, error)
	// List returns every volume, sorted by ID.
	List(ctx context.Context) ([]*Volume, error)
	// Capacity returns the bytes available for volumes created with params.
	Capacity(ctx context.Context, params map[string]string) (int64, error)

	// Attach makes the volume reachable from a node and returns the
	// publish context the node side needs. It checks the request against
	// the volume's other attachments with CheckAttach, atomically with
	// recording it.
	Attach(ctx context.Context, id string, req AttachRequest) (map[string]string, error)
	// Detach undoes Attach; detaching a volume that is not attached to the
	// node, or that no longer exists, is not an error.
	Detach(ctx context.Context, id, node string) error

	// Connect runs on the node: it makes the attached volume appear as a
	// local device and proves the device is that volume before returning
	// it.
	Connect(ctx context.Context, id string, publish map[string]string, readOnly bool) (Device, error)
	// Verify proves, right before the node formats or mounts dev, that dev
	// is still this volume (a serial number, a WWN, a backing inode).
	Verify(ctx context.Context, id string, dev Device) error
	// Disconnect releases what Connect took. Disconnecting a volume that is
	// not connected is not an error.
	Disconnect(ctx context.Context, id string) error
	// MarkFormatted records, with the volume in the storage, that the node
	// side formatted it with fsType (or handed it out raw).
	MarkFormatted(ctx context.Context, id, fsType string) error
}

// ForceDetacher is implemented by backends that can take a volume away from
// a node that still has it connected, because the node is dead. It is only
// ever called by an explicit operator action, never by a CO: if the node
// is alive, two writers destroy the filesystem.
type ForceDetacher interface {
	ForceDetach(ctx context.Context, id, node string) error
}

// Pager is implemented by backends that can list a page of volumes without
// reading all of them.
type Pager interface {
	// ListAfter returns up to limit volumes (all when limit is 0) whose ID
	// sorts after after, in ID order.
	ListAfter(ctx context.Context, after string, limit int) ([]*Volume, error)
}

// NodeRegistrar is implemented by backends that must learn about nodes before
// they can attach to them (the file pool has no other way to know a node).
type NodeRegistrar interface {
	RegisterNode(ctx context.Context, node string) error
}

// Reconciler is implemented by backends whose node side can find what an
// earlier run of the plugin left behind. The node service calls it once at
// start-up, before serving.
type Reconciler interface {
	// Reconcile releases node-side resources (devices, sessions) that no
	// staged volume of this node uses any more, and reports each action.
	Reconcile(ctx context.Context) ([]string, error)
}

// NodeZoner is implemented by backends whose nodes live in zones.
type NodeZoner interface {
	// NodeZone returns this node's zone, as the node side sees it.
	NodeZone(ctx context.Context) (string, error)
}

// NodeVolumeLimiter is implemented by backends whose nodes take a limited
// number of volumes (EBS: by instance type).
type NodeVolumeLimiter interface {
	// NodeMaxVolumes returns how many of the backend's volumes this node
	// can have attached at once.
	NodeMaxVolumes(ctx context.Context) (int64, error)
}

// Expander is implemented by backends that can grow a volume.
type Expander interface {
	Expand(ctx context.Context, id string, requiredBytes, limitBytes int64) (int64, error)
}

// NodeExpander is implemented by backends whose node side must be told
// that a volume grew before the filesystem can follow (a loop device has to
// re-read the size of its image).
type NodeExpander interface {
	RefreshDevice(ctx context.Context, id string, dev Device) error
}

// Snapshot is a point-in-time copy of a volume.
type Snapshot struct {
	ID        string
	SourceID  string
	Name      string
	SizeBytes int64
	CreatedAt int64 // unix seconds
	Ready     bool
}

// Snapshotter is implemented by backends that can take snapshots.
type Snapshotter interface {
	CreateSnapshot(ctx context.Context, sourceID, name string, params map[string]string) (*Snapshot, error)
	DeleteSnapshot(ctx context.Context, id string) error
	ListSnapshots(ctx context.Context) ([]*Snapshot, error)
}

// PublishDescriber is implemented by backends whose ControllerPublish
// answer (the publish context) describes the volume as the node service
// needs it: its access type, creation parameters, format mark and this
// node's attachment. The node then stages and publishes without asking the
// storage, so a node of a CO that calls ControllerPublish (Kubernetes)
// needs no credentials for the storage's API (EBS: no IAM permissions).
//
// A volume described so is one whose format mark the node does not record:
// the backend's controller side recorded what it could know before the
// node got the device (a raw block volume is marked raw at publish), and
// DescribedVolume's documentation in that backend says which guards of
// invariant 1 remain for a filesystem the node makes.
type PublishDescriber interface {
	// DescribedVolume returns the volume the publish context describes,
	// false when it describes none (no ControllerPublish came first, or an
	// older controller published it): then the node asks the backend.
	DescribedVolume(id string, publish map[string]string) (*Volume, bool)
}
