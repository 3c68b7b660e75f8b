package backends

import "context"

// Modifier is implemented by backends that can change some attributes of
// an existing volume (CSI ControllerModifyVolume and the mutable
// parameters of CreateVolume).
type Modifier interface {
	// MutableParameters lists the parameter keys Modify accepts. The
	// services refuse every other key before calling the backend.
	MutableParameters() []string
	// Modify changes the volume so that it has the given values. Only keys
	// present are changed; a volume that already has them is a success
	// without change. A value the backend cannot apply is ErrInvalid,
	// naming the parameter.
	Modify(ctx context.Context, id string, params map[string]string) error
}
