package file

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/csi-libstorage/csi-libstorage/backends"
)

// A name reservation is a symbolic link names/<sha256 of name> whose
// target, "../volumes/<id>", carries the id in the link's inode. Unlike a
// file's bytes, which a journaling filesystem may write back long after
// the file was created, a short link target is part of the create itself:
// whenever anything made after the link survives a crash, the link and its
// id survive too. So a create needs no fsync between its reservation and
// its volume; one round at the end (syncVolume) makes both durable.
//
// Pools written before this layout hold regular files with the id and a
// newline; they are read (and released) as before. A plugin of an older
// version reads a link to an existing volume as an error (it is a
// directory), never as a free name, so a pool shared during an upgrade
// fails such calls instead of doubling a volume.
const nameTargetPrefix = "../volumes/"

// readName reads the id a name reservation holds: "" when there is none or
// it holds no id (a torn write of the old layout), and whether anything
// exists at the path. The caller holds the name's lock.
func readName(path string) (id string, exists bool, err error) {
	target, err := os.Readlink(path)
	switch {
	case err == nil:
		if id, ok := strings.CutPrefix(target, nameTargetPrefix); ok && idRE.MatchString(id) {
			return id, true, nil
		}
		return "", true, nil
	case errors.Is(err, fs.ErrNotExist):
		return "", false, nil
	case !errors.Is(err, unix.EINVAL):
		return "", false, fmt.Errorf("read name reservation: %w", err)
	}
	// Not a link: the layout before links, a file holding the id.
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("read name reservation: %w", err)
	}
	if id := strings.TrimSpace(string(data)); idRE.MatchString(id) {
		return id, true, nil
	}
	return "", true, nil
}

// writeName points the name's reservation at id. It is not synced here:
// syncVolume syncs names/ before anything of the volume. Replacing an
// existing reservation (of an unfinished create, or a file of the old
// layout) goes through a link under a temporary name and a rename, so the
// name never reads as free in between.
func (b *Backend) writeName(path, id string, exists bool) error {
	target := nameTargetPrefix + id
	if !exists {
		err := os.Symlink(target, path)
		if !errors.Is(err, fs.ErrExist) {
			return err
		}
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// discard removes what an unfinished create (or an interrupted delete)
// left under id, durably, so that the name can be reserved anew. Nothing
// under such an id was ever returned to a caller: its metadata is missing.
func (b *Backend) discard(ctx context.Context, id string) error {
	l, err := b.locks.Lock(ctx, "volume "+id)
	if err != nil {
		return fmt.Errorf("lock volume %s: %w", id, err)
	}
	defer l.Close()
	if _, err := b.readMeta(id); !errors.Is(err, backends.ErrNotFound) {
		if err == nil {
			err = fmt.Errorf("volume %s gained metadata while its name was locked", id)
		}
		return err
	}
	if err := b.removeDir(id); err != nil {
		return fmt.Errorf("discard unfinished volume %s: %w", id, err)
	}
	if err := b.volumes.Sync(); err != nil {
		return fmt.Errorf("discard unfinished volume %s: %w", id, err)
	}
	return nil
}

// createMeta writes the metadata of a new volume in place; syncVolume
// makes it durable. A crash before that leaves an empty or missing file,
// which reads as an unfinished create (parseMeta).
func (b *Backend) createMeta(m *meta) error {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.OpenFile(b.metaPath(m.ID), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// syncVolume makes a new volume and its name durable. names/ goes first
// and alone: once it returns the reservation is on disk, so a crash can
// never keep a volume that no name leads to, even on a filesystem that
// does not persist metadata in order. The volume's own fsyncs (its
// metadata, its image's size, its directory's entries, its entry in
// volumes/) are then issued together: on a journaling filesystem the
// names/ fsync already committed them, and concurrent fsyncs share the
// device cache flushes they still cost.
func (b *Backend) syncVolume(id string) error {
	if err := b.names.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", b.names.Path(), err)
	}
	return together(
		func() error { return syncPath(b.metaPath(id)) },
		func() error { return syncPath(b.imagePath(id)) },
		func() error { return syncPath(b.volDir(id)) },
		b.volumes.Sync,
	)
}

// syncRemovals makes the removals of a delete durable, of the name and of
// the volume's directory, in either order: any part a crash keeps is safe
// (see Delete).
func (b *Backend) syncRemovals() error {
	return together(b.names.Sync, b.volumes.Sync)
}

// together runs the fsyncs at once and returns the first error.
func together(fns ...func() error) error {
	errs := make(chan error, len(fns)-1)
	for _, f := range fns[1:] {
		go func() { errs <- f() }()
	}
	err := fns[0]()
	for range fns[1:] {
		if e := <-errs; err == nil {
			err = e
		}
	}
	return err
}

// syncPath fsyncs a file or directory by path.
func syncPath(path string) error {
	fd, err := openRetry(path)
	if err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	defer unix.Close(fd)
	for {
		err = unix.Fsync(fd)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return nil
}

// openRetry opens without os.File, whose set-up costs four fcntl calls per
// open on this path; the runtime's preemption signal can interrupt it.
func openRetry(path string) (int, error) {
	for {
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}
