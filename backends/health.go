package backends

import "context"

// ConditionKind says how bad an abnormal volume condition is. The values
// follow the CSI 1.13 volume health error types, so the services map them
// one to one.
type ConditionKind int

const (
	// Degraded: the volume is usable but not as it should be (read-only
	// after errors, a filesystem that recorded errors).
	Degraded ConditionKind = iota + 1
	// Inaccessible: the volume cannot be used (from this node, when the
	// node reports it).
	Inaccessible
	// DataLoss: the data is known or strongly suspected to be gone.
	DataLoss
)

func (k ConditionKind) String() string {
	switch k {
	case Degraded:
		return "Degraded"
	case Inaccessible:
		return "Inaccessible"
	case DataLoss:
		return "DataLoss"
	}
	return "Unknown"
}

// Condition is one abnormal state of a volume.
type Condition struct {
	Kind ConditionKind
	// Reason is a short CamelCase name for machines and CLI columns
	// ("ImageMissing", "VolumeError").
	Reason string
	// Message tells an operator what is wrong and what to do about it.
	Message string
}

// ConditionReporter is implemented by backends that can tell, from the
// storage's side, whether a volume is healthy.
type ConditionReporter interface {
	// Conditions returns the abnormal conditions of a volume, none when the
	// storage knows of nothing wrong. A volume that does not exist at all
	// is ErrNotFound.
	Conditions(ctx context.Context, id string) ([]Condition, error)
}
