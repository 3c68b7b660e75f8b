package backends

import (
	"fmt"
	"slices"
)

// AttachRequest asks for a volume to be attached to a node.
type AttachRequest struct {
	Node     string
	Mode     AccessMode
	ReadOnly bool
	ByNode   bool
}

// CheckAttach decides whether req may be added to v's attachments. It is
// the single place where the plugin enforces access modes (DESIGN.md
// invariant 5), so every backend calls it while holding its own lock on
// the volume. It returns done=true when the node already has an identical
// attachment, ErrAlreadyExists when the node has an incompatible one, and
// ErrConflict when another node's attachment forbids this one.
func CheckAttach(v *Volume, req AttachRequest) (done bool, err error) {
	if req.Mode.ReadOnly() && !req.ReadOnly {
		req.ReadOnly = true
	}
	if len(v.Modes) > 0 && !slices.Contains(v.Modes, req.Mode) {
		return false, fmt.Errorf("%w: volume was created for access modes %v, not %s", ErrInvalid, v.Modes, req.Mode)
	}
	for _, a := range v.Attachments {
		if a.Node == req.Node {
			if a.ReadOnly != req.ReadOnly {
				return false, fmt.Errorf("%w: volume is already attached to node %s with read-only=%t", ErrAlreadyExists, a.Node, a.ReadOnly)
			}
			return true, nil
		}
	}
	for _, a := range v.Attachments {
		switch {
		case !req.Mode.MultiNode() || !a.Mode.MultiNode():
			return false, fmt.Errorf("%w: volume is attached to node %s (read-only=%t) and access mode %s allows only one node; detach it there first",
				ErrConflict, a.Node, a.ReadOnly, singleOf(req.Mode, a.Mode))
		case req.Mode == MultiNodeReaderOnly || a.Mode == MultiNodeReaderOnly:
			if !req.ReadOnly || !a.ReadOnly {
				return false, fmt.Errorf("%w: volume is attached to node %s and MULTI_NODE_READER_ONLY allows no writer", ErrConflict, a.Node)
			}
		case req.Mode == MultiNodeSingleWriter || a.Mode == MultiNodeSingleWriter:
			if !req.ReadOnly && !a.ReadOnly {
				return false, fmt.Errorf("%w: volume is attached read-write to node %s and MULTI_NODE_SINGLE_WRITER allows one writer", ErrConflict, a.Node)
			}
		}
	}
	return false, nil
}

func singleOf(a, b AccessMode) AccessMode {
	if !a.MultiNode() {
		return a
	}
	return b
}
