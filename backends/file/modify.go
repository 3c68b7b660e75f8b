package file

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/internal/units"
)

// MutableParameters implements backends.Modifier. Only allocation can
// change after creation: the size has ControllerExpandVolume, and nothing
// else of a pool volume is a parameter.
func (b *Backend) MutableParameters() []string { return []string{ParamPreallocate} }

// Modify implements backends.Modifier. preallocate=true allocates every
// block of the image now, so later writes cannot fail for lack of space in
// the pool. The pool never gives space back from a live image (that would
// mean punching holes under a filesystem that may use them), so
// preallocate=false is accepted only for an image that is not fully
// allocated. Whether an image is allocated is read from the image itself,
// not recorded, so a retry after a crash simply allocates what is missing.
func (b *Backend) Modify(ctx context.Context, id string, params map[string]string) error {
	for k := range params {
		if k != ParamPreallocate {
			return fmt.Errorf("%w: parameter %q cannot be changed on a file pool volume; only %s can", backends.ErrInvalid, k, ParamPreallocate)
		}
	}
	v, ok := params[ParamPreallocate]
	if !ok {
		return nil
	}
	want, err := strconv.ParseBool(v)
	if err != nil {
		return fmt.Errorf("%w: parameter %s=%q: want true or false", backends.ErrInvalid, ParamPreallocate, v)
	}
	l, err := b.lockVolume(ctx, id)
	if err != nil {
		return err
	}
	defer l.Close()
	m, err := b.readMeta(id)
	if err != nil {
		return err
	}
	if m.NoImage {
		if !want {
			return nil // made sparse when first connected
		}
		return b.preallocateUnmade(m)
	}
	img := b.imagePath(id)
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: volume %s: image %s is missing; see ControllerGetVolumeHealth", backends.ErrNotFound, id, img)
	}
	if err != nil {
		return fmt.Errorf("volume %s: open image: %w", id, err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return fmt.Errorf("volume %s: stat image: %w", id, err)
	}
	allocated := st.Blocks*512 >= st.Size
	switch {
	case want && allocated:
		return nil
	case !want && allocated:
		return fmt.Errorf("%w: parameter %s=false: the image of volume %s is fully allocated (%s) and the pool does not free space under a live filesystem; leave preallocate=true, or copy the data to a new sparse volume",
			backends.ErrInvalid, ParamPreallocate, id, units.Format(st.Size))
	case !want:
		return nil
	}
	// KEEP_SIZE: only blocks inside the image are allocated, so a
	// concurrent expand on another node is never undone.
	if err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_KEEP_SIZE, 0, st.Size); err != nil {
		if errors.Is(err, unix.ENOSPC) {
			return fmt.Errorf("%w: allocate the %s image of volume %s: %v", backends.ErrCapacity, units.Format(st.Size), id, err)
		}
		return fmt.Errorf("volume %s: allocate image: %w", id, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("volume %s: sync image: %w", id, err)
	}
	b.log.Info("volume image preallocated", zap.String("id", id), zap.Int64("bytes", st.Size))
	return nil
}

// preallocateUnmade makes the image of a volume that has none yet, fully
// allocated, and records it. The caller holds the volume lock.
func (b *Backend) preallocateUnmade(m *meta) error {
	if err := b.makeImage(m.ID, m.CapacityBytes, true); err != nil {
		return fmt.Errorf("volume %s: %w", m.ID, err)
	}
	if err := syncPath(b.imagePath(m.ID)); err != nil {
		return fmt.Errorf("volume %s: %w", m.ID, err)
	}
	m.NoImage = false
	if err := b.writeMeta(m); err != nil {
		return fmt.Errorf("volume %s: write metadata: %w", m.ID, err)
	}
	b.log.Info("volume image preallocated", zap.String("id", m.ID), zap.Int64("bytes", m.CapacityBytes))
	return nil
}
