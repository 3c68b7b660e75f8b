package file

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/csi-libstorage/csi-libstorage/backends"
	"github.com/csi-libstorage/csi-libstorage/internal/fsutil"
)

// Snapshots are full copies of a volume's image, taken under the volume's
// lock. The copy shares blocks with the source where the pool filesystem
// can (reflink on xfs or btrfs) and keeps holes everywhere else. The plugin
// does not freeze a filesystem that is mounted while the copy runs: a
// snapshot of a volume in use is only as consistent as the application
// made it (quiesce it, or snapshot an unpublished volume).
//
//	<dir>/snapshots/<id>/meta.json, disk.img
//	<dir>/snapnames/<sha256 of name>

type snapMeta struct {
	Version   int       `json:"version"`
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	SourceID  string    `json:"sourceID"`
	SizeBytes int64     `json:"sizeBytes"`
	Block     bool      `json:"block,omitempty"`
	Formatted string    `json:"formatted,omitempty"`
	Created   time.Time `json:"created"`
}

func (b *Backend) snapDir(id string) string { return filepath.Join(b.dir, "snapshots", id) }

func (b *Backend) snapNamePath(name string) string {
	return filepath.Join(b.dir, "snapnames", filepath.Base(b.namePath(name)))
}

func (m *snapMeta) snapshot() *backends.Snapshot {
	return &backends.Snapshot{ID: m.ID, SourceID: m.SourceID, Name: m.Name, SizeBytes: m.SizeBytes, CreatedAt: m.Created.Unix(), Ready: true}
}

func (b *Backend) readSnap(id string) (*snapMeta, error) {
	if !idRE.MatchString(id) {
		return nil, fmt.Errorf("snapshot %q: %w", id, backends.ErrNotFound)
	}
	data, err := os.ReadFile(filepath.Join(b.snapDir(id), "meta.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("snapshot %s: %w", id, backends.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	m := new(snapMeta)
	if err := json.Unmarshal(data, m); err != nil {
		return nil, fmt.Errorf("snapshot %s: corrupt metadata: %w", id, err)
	}
	return m, nil
}

// CreateSnapshot implements backends.Snapshotter.
func (b *Backend) CreateSnapshot(ctx context.Context, sourceID, name string, params map[string]string) (*backends.Snapshot, error) {
	for k := range params {
		return nil, fmt.Errorf("%w: snapshot parameter %q is not known; the file backend takes none", backends.ErrInvalid, k)
	}
	if err := os.MkdirAll(filepath.Join(b.dir, "snapnames"), 0o700); err != nil {
		return nil, err
	}
	namePath := b.snapNamePath(name)
	nameLock, err := b.lockName(ctx, namePath)
	if err != nil {
		return nil, fmt.Errorf("lock snapshot name %q: %w", name, err)
	}
	defer nameLock.Close()
	id, err := reservation(namePath)
	if err != nil {
		return nil, err
	}
	if id != "" {
		if m, err := b.readSnap(id); err == nil {
			if m.SourceID != sourceID {
				return nil, fmt.Errorf("%w: snapshot %q exists for volume %s", backends.ErrAlreadyExists, name, m.SourceID)
			}
			return m.snapshot(), nil
		} else if !errors.Is(err, backends.ErrNotFound) {
			return nil, err
		}
	} else if id, err = reserve(namePath); err != nil {
		return nil, err
	}
	// As for volumes: a snapshot that fails cleanly gives its reservation
	// and any partial copy back.
	created := false
	defer func() {
		if !created {
			os.RemoveAll(b.snapDir(id))
			os.Remove(namePath)
		}
	}()

	l, err := b.lockVolume(ctx, sourceID)
	if err != nil {
		return nil, err
	}
	defer l.Close()
	src, err := b.readMeta(sourceID)
	if err != nil {
		return nil, err
	}
	dir := b.snapDir(id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := copyImage(ctx, b.sourceImage(src), filepath.Join(dir, "disk.img"), src.CapacityBytes); err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", sourceID, err)
	}
	m := &snapMeta{Version: 1, ID: id, Name: name, SourceID: sourceID, SizeBytes: src.CapacityBytes, Block: src.Block, Formatted: src.Formatted, Created: time.Now().UTC()}
	data, _ := json.MarshalIndent(m, "", "  ")
	if err := fsutil.WriteFileAtomic(filepath.Join(dir, "meta.json"), data, 0o600); err != nil {
		return nil, err
	}
	created = true
	b.log.Info("snapshot created", zap.String("id", id), zap.String("source", sourceID))
	return m.snapshot(), nil
}

// DeleteSnapshot implements backends.Snapshotter.
func (b *Backend) DeleteSnapshot(ctx context.Context, id string) error {
	m, err := b.readSnap(id)
	if errors.Is(err, backends.ErrNotFound) {
		if idRE.MatchString(id) {
			os.RemoveAll(b.snapDir(id)) // an interrupted create or delete
		}
		return nil
	}
	if err != nil {
		return err
	}
	path := b.snapNamePath(m.Name)
	l, err := b.lockName(ctx, path)
	if err != nil {
		return err
	}
	if data, _ := os.ReadFile(path); strings.TrimSpace(string(data)) == id {
		os.Remove(path)
	}
	l.Close()
	dir := b.snapDir(id)
	for _, f := range []string{"disk.img", "meta.json"} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	b.log.Info("snapshot deleted", zap.String("id", id))
	return fsutil.SyncDir(filepath.Dir(dir))
}

// ListSnapshots implements backends.Snapshotter.
func (b *Backend) ListSnapshots(ctx context.Context) ([]*backends.Snapshot, error) {
	entries, err := os.ReadDir(filepath.Join(b.dir, "snapshots"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []*backends.Snapshot
	for _, e := range entries {
		m, err := b.readSnap(e.Name())
		if errors.Is(err, backends.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, m.snapshot())
	}
	return out, nil
}

// fillFrom copies the source of a new volume into its image and returns the
// format mark the copy carries, so a clone of a formatted volume is never
// formatted again.
func (b *Backend) fillFrom(ctx context.Context, req backends.CreateRequest, id string, size int64) (string, error) {
	var img, formatted string
	var srcSize int64
	var block bool
	switch {
	case req.SourceSnapshot != "":
		m, err := b.readSnap(req.SourceSnapshot)
		if err != nil {
			return "", err
		}
		img, srcSize, formatted, block = filepath.Join(b.snapDir(m.ID), "disk.img"), m.SizeBytes, m.Formatted, m.Block
	case req.SourceVolume != "":
		l, err := b.lockVolume(ctx, req.SourceVolume)
		if err != nil {
			return "", err
		}
		defer l.Close()
		m, err := b.readMeta(req.SourceVolume)
		if err != nil {
			return "", err
		}
		img, srcSize, formatted, block = b.sourceImage(m), m.CapacityBytes, m.Formatted, m.Block
	default:
		return "", nil
	}
	if block != req.Block {
		return "", fmt.Errorf("%w: the source is for %s access", backends.ErrInvalid, map[bool]string{true: "block", false: "mount"}[block])
	}
	if size < srcSize {
		return "", fmt.Errorf("%w: the source holds %d bytes, more than the %d requested", backends.ErrOutOfRange, srcSize, size)
	}
	if err := copyImage(ctx, img, b.imagePath(id), size); err != nil {
		return "", err
	}
	return formatted, nil
}

// sourceImage is the image a copy of volume m is made from: "" for a
// volume whose image is not made yet, which holds only zeros.
func (b *Backend) sourceImage(m *meta) string {
	if m.NoImage {
		return ""
	}
	return b.imagePath(m.ID)
}

// copyImage copies src to a new file dst of the given size: by reflink where
// the filesystem shares blocks, else extent by extent so holes stay holes.
// An empty src copies nothing: dst is all holes.
func copyImage(ctx context.Context, src, dst string, size int64) error {
	out, err := os.OpenFile(dst, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer out.Close()
	if src != "" {
		in, err := os.Open(src)
		if err != nil {
			return err
		}
		defer in.Close()
		if err := unix.IoctlFileClone(int(out.Fd()), int(in.Fd())); err != nil {
			if err := copySparse(ctx, in, out); err != nil {
				return err
			}
		}
	}
	if err := out.Truncate(size); err != nil {
		return err
	}
	return out.Sync()
}

func copySparse(ctx context.Context, in, out *os.File) error {
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	end := fi.Size()
	for off := int64(0); off < end; {
		if err := ctx.Err(); err != nil {
			return err
		}
		data, err := unix.Seek(int(in.Fd()), off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole is left
		}
		if err != nil {
			return err
		}
		hole, err := unix.Seek(int(in.Fd()), data, unix.SEEK_HOLE)
		if err != nil {
			return err
		}
		if _, err := in.Seek(data, io.SeekStart); err != nil {
			return err
		}
		if _, err := out.Seek(data, io.SeekStart); err != nil {
			return err
		}
		if _, err := io.CopyN(out, in, hole-data); err != nil {
			return err
		}
		off = hole
	}
	return nil
}
