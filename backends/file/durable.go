package file

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/csi-libstorage/csi-libstorage/backends"
)

// readName reads the id a name reservation holds: "" when there is no
// file or it holds no id (a write a crash cut short), and whether a file
// exists at all. The caller holds the name's lock.
func readName(path string) (id string, exists bool, err error) {
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

// syncVolume makes a volume of the directory layout durable: its
// metadata, its image's size, its directory's entries and the directory's
// entry in volumes/. The four
// fsyncs are issued at once: they are independent, and concurrent fsyncs
// share the device cache flushes each would otherwise wait for in turn.
func (b *Backend) syncVolume(id string) error {
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
