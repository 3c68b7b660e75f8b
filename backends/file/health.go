package file

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/internal/units"
)

// Conditions implements backends.ConditionReporter: the pool's view of a
// volume is its metadata and its image, so an image that is gone or
// shorter than the volume is the abnormal state the pool can see; on a
// node, a volume it fenced (lease.go) is reported before anything else.
func (b *Backend) Conditions(ctx context.Context, id string) ([]backends.Condition, error) {
	m, err := b.readMeta(id)
	if err != nil {
		return nil, err
	}
	if c, ok := b.fencedCondition(id); ok {
		return []backends.Condition{c}, nil
	}
	if m.NoImage {
		return nil, nil // all zeros until its first connect makes it
	}
	img := b.imagePath(id)
	fi, err := os.Stat(img)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return []backends.Condition{{
			Kind:   backends.DataLoss,
			Reason: "ImageMissing",
			Message: fmt.Sprintf("the image %s of volume %s is missing from pool %s. A node that still has the volume staged keeps the deleted image open (its loop device's backing file ends in \"(deleted)\"): copy the data off that node before unstaging; otherwise restore from a snapshot or backup and delete this volume",
				img, id, b.dir),
		}}, nil
	case err != nil:
		return []backends.Condition{{
			Kind:    backends.Inaccessible,
			Reason:  "ImageUnreadable",
			Message: fmt.Sprintf("the image of volume %s cannot be examined: %v; check the pool directory %s (mounted, permissions)", id, err, b.dir),
		}}, nil
	case fi.Size() < m.CapacityBytes:
		return []backends.Condition{{
			Kind:   backends.DataLoss,
			Reason: "ImageTruncated",
			Message: fmt.Sprintf("the image %s of volume %s holds %s but the volume is %s: something truncated it and the data past its end is gone; restore from a snapshot or backup",
				img, id, units.Format(fi.Size()), units.Format(m.CapacityBytes)),
		}}, nil
	}
	return nil, nil
}
