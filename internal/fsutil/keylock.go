package fsutil

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// KeyLocks hands out exclusive locks by key. Every key is one byte of one
// regular lock file, locked with an open-file-description (OFD) record lock
// (fcntl F_OFD_SETLK). Record locks on a regular file are what NFS (v4, and
// v3 through NLM) and CephFS carry to the server, so processes on different
// nodes that share the file exclude each other; flock(2) on NFS, and any
// lock on a directory, would be local to one client.
//
// The lock file is permanent: deleting what a key protects never removes
// it, so no lock can be taken on a file that has just been unlinked, and no
// lock file is left behind per key. A lock is owned by the open file
// description, not by the process, so two goroutines of one process
// exclude each other too, and closing the one descriptor releases it.
type KeyLocks struct {
	path string
	// hook, set by tests only, is told of each step a Lock takes:
	// "opened", "busy" (the key is held; waiting) and "replaced" (the file
	// locked is no longer the one at path; retrying).
	hook func(step string)
}

// NewKeyLocks returns the locks kept in the file at path; the file is
// created on first use.
func NewKeyLocks(path string) *KeyLocks { return &KeyLocks{path: path} }

// Path returns the lock file.
func (k *KeyLocks) Path() string { return k.path }

// KeyLock is one held lock.
type KeyLock struct {
	f   *os.File
	off int64
}

// Close releases the lock.
func (l *KeyLock) Close() error { return l.f.Close() }

// keyRange is the byte a key locks. Keys are hashed into 2^40 bytes: two
// keys held at once share a byte with negligible probability, and if they
// did, one would only wait for the other. Offsets stay far below what NLM
// and NFSv4 can express.
func keyRange(key string) int64 {
	sum := sha256.Sum256([]byte(key))
	return int64(binary.BigEndian.Uint64(sum[:8]) >> 24)
}

// Lock takes the lock for key, waiting until it is free or ctx is done.
// Record locks have no timeout and a blocked F_OFD_SETLKW cannot be
// cancelled from another goroutine, so waiting polls F_OFD_SETLK with
// backoff: nothing is left running when ctx ends.
func (k *KeyLocks) Lock(ctx context.Context, key string) (*KeyLock, error) {
	off := keyRange(key)
	for {
		f, err := os.OpenFile(k.path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("lock %s: %w", key, err)
		}
		k.step("opened")
		if err := k.wait(ctx, f, off); err != nil {
			f.Close()
			return nil, err
		}
		// Someone may have removed or replaced the lock file between our
		// open and our lock; a lock on an unlinked inode excludes nobody
		// who opens the path now.
		same, err := sameFile(f, k.path)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", key, err)
		}
		if same {
			return &KeyLock{f: f, off: off}, nil
		}
		k.step("replaced")
		f.Close()
	}
}

func (k *KeyLocks) wait(ctx context.Context, f *os.File, off int64) error {
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: off, Len: 1}
	delay := 500 * time.Microsecond
	for {
		err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.EINVAL):
			return fmt.Errorf("lock %s: the kernel refuses open-file-description locks (Linux 3.15 or later is needed): %w", f.Name(), err)
		case !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EACCES) && !errors.Is(err, unix.EINTR):
			return fmt.Errorf("lock %s: %w", f.Name(), err)
		}
		k.step("busy")
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

func (k *KeyLocks) step(s string) {
	if k.hook != nil {
		k.hook(s)
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
