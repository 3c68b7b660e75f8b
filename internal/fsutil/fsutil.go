// Package fsutil holds the small file-system primitives that keep state
// crash-safe: atomic replacement of a file, and advisory locks that can be
// waited for under a context.
package fsutil

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// WriteFileAtomic replaces path with data so that a crash at any point
// leaves either the old content or the new, never a mix: it writes a
// temporary file in the same directory, syncs it, renames it over path and
// syncs the directory.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(name)
		}
	}()
	if err := tmp.Chmod(perm); err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(name, path); err != nil {
		return err
	}
	ok = true
	return SyncDir(dir)
}

// SyncDir makes a directory's entries (creations, renames, removals)
// durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Flock takes an exclusive advisory lock on the open file f, polling until
// it is free or ctx is done. flock(2) cannot be interrupted by a context, so
// waiting is done with non-blocking attempts.
func Flock(ctx context.Context, f *os.File) error {
	delay := 500 * time.Microsecond
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("lock %s: %w", f.Name(), err)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		if delay < 20*time.Millisecond {
			delay *= 2
		}
	}
}

// LockPath opens path (creating it as a file if create is set) and locks
// it. The lock is released when the returned file is closed. It rechecks
// after locking that path still names the locked inode, so a lock taken on
// a file that another process removed meanwhile is never trusted.
func LockPath(ctx context.Context, path string, create bool) (*os.File, error) {
	for {
		flags := os.O_RDWR
		if create {
			flags |= os.O_CREATE
		}
		f, err := os.OpenFile(path, flags, 0o600)
		if err != nil {
			// A directory can only be opened read-only.
			if errors.Is(err, unix.EISDIR) {
				f, err = os.Open(path)
			}
			if err != nil {
				return nil, err
			}
		}
		if err := Flock(ctx, f); err != nil {
			f.Close()
			return nil, err
		}
		same, err := sameFile(f, path)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			f.Close()
			return nil, err
		}
		if same {
			return f, nil
		}
		f.Close()
		if !create {
			return nil, fmt.Errorf("lock %s: %w", path, os.ErrNotExist)
		}
	}
}

func sameFile(f *os.File, path string) (bool, error) {
	a, err := f.Stat()
	if err != nil {
		return false, err
	}
	b, err := os.Stat(path)
	if err != nil {
		return false, err
	}
	return os.SameFile(a, b), nil
}
